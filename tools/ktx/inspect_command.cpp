// `ktx inspect FILE [--json]`: what a GGUF file holds — metadata, the tensor table and totals per
// type — for people (aligned text) or machines (one JSON document).
#include <fmt/format.h>

#include <algorithm>
#include <cstdio>
#include <map>

#include "args.h"
#include "commands.h"
#include "json_writer.h"
#include "ktx/gguf.h"

namespace ktx::cli {
namespace {

// Arrays longer than this are summarised in JSON (a tokenizer's vocabulary has 100k+ entries).
constexpr uint64_t kJsonArrayLimit = 64;

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string s;
  for (size_t i = 0; i < shape.size(); ++i) s += fmt::format("{}{}", i ? " x " : "", shape[i]);
  return s;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{} B", n) : fmt::format("{:.2f} {}", v, units[u]);
}

struct TypeTotal {
  uint64_t tensors = 0, elements = 0, bytes = 0;
};

std::map<std::string, TypeTotal> totals_by_type(const gguf::File& file) {
  std::map<std::string, TypeTotal> totals;
  for (const gguf::TensorInfo& t : file.tensors()) {
    TypeTotal& tt = totals[std::string(type_name(t.type))];
    tt.tensors += 1;
    tt.elements += t.n_elements;
    tt.bytes += t.n_bytes;
  }
  return totals;
}

void json_value(JsonWriter& json, const gguf::Value& v) {
  using gguf::ValueType;
  auto scalar = [&](ValueType type, const gguf::Value& s, uint64_t i, bool array) {
    switch (type) {
      case ValueType::FLOAT32:
      case ValueType::FLOAT64:
        json.value(*(array ? s.float_at(i) : s.as_float()));
        break;
      case ValueType::BOOL:
        json.value(array ? *s.bool_at(i) : *s.as_bool());
        break;
      case ValueType::STRING:
        json.value(array ? (*s.strings())[i] : *s.as_string());
        break;
      case ValueType::UINT64:
        if (!array) {
          json.value(*s.as_uint());
          break;
        }
        [[fallthrough]];
      default:
        json.value(*(array ? s.int_at(i) : s.as_int()));
    }
  };
  if (!v.is_array()) {
    scalar(v.type(), v, 0, false);
    return;
  }
  if (v.array_size() > kJsonArrayLimit) {
    json.begin_object();
    json.field("array_of", gguf::value_type_name(v.array_type()));
    json.field("length", v.array_size());
    json.end_object();
    return;
  }
  json.begin_array();
  for (uint64_t i = 0; i < v.array_size(); ++i) scalar(v.array_type(), v, i, true);
  json.end_array();
}

void print_json(const gguf::File& file) {
  JsonWriter json(stdout);
  json.begin_object();
  json.key("files");
  json.begin_array();
  for (const std::string& p : file.paths()) json.value(p);
  json.end_array();
  json.field("version", static_cast<uint64_t>(file.version()));
  json.field("alignment", static_cast<uint64_t>(file.alignment()));
  json.key("metadata");
  json.begin_object();
  for (const gguf::KeyValue& kv : file.metadata()) {
    json.key(kv.key);
    json_value(json, kv.value);
  }
  json.end_object();
  json.key("tensors");
  json.begin_array();
  for (const gguf::TensorInfo& t : file.tensors()) {
    json.begin_object();
    json.field("name", t.name);
    json.field("type", type_name(t.type));
    json.key("shape");
    json.begin_array();
    for (int64_t d : t.shape) json.value(d);
    json.end_array();
    json.field("n_elements", t.n_elements);
    json.field("n_bytes", t.n_bytes);
    json.field("offset", t.offset);
    json.field("split", static_cast<uint64_t>(t.split));
    json.end_object();
  }
  json.end_array();
  json.key("totals_by_type");
  json.begin_object();
  uint64_t all_bytes = 0, all_elements = 0;
  for (const auto& [name, tt] : totals_by_type(file)) {
    json.key(name);
    json.begin_object();
    json.field("tensors", tt.tensors);
    json.field("n_elements", tt.elements);
    json.field("n_bytes", tt.bytes);
    json.end_object();
    all_bytes += tt.bytes;
    all_elements += tt.elements;
  }
  json.end_object();
  json.field("total_n_elements", all_elements);
  json.field("total_n_bytes", all_bytes);
  json.end_object();
  std::fputc('\n', stdout);
}

// Names as the terminal should show them: control bytes (and DEL) as \xNN, so a file cannot
// move the cursor or change colours.
std::string printable(std::string_view name) {
  std::string out;
  for (const char c : name) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\\') {
      out += c == '\\' ? std::string("\\\\") : fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out;
}

void print_text(const gguf::File& file) {
  for (size_t i = 0; i < file.paths().size(); ++i) {
    fmt::print("file {}: {} ({}, data at byte {})\n", i, file.paths()[i],
               human_bytes(file.file_size(static_cast<uint32_t>(i))),
               file.data_offset(static_cast<uint32_t>(i)));
  }
  fmt::print("GGUF version {}, alignment {}, {} metadata keys, {} tensors\n\n", file.version(),
             file.alignment(), file.metadata().size(), file.tensors().size());

  size_t key_width = 3;
  for (const gguf::KeyValue& kv : file.metadata()) {
    key_width = std::max(key_width, printable(kv.key).size());
  }
  fmt::print("metadata:\n");
  for (const gguf::KeyValue& kv : file.metadata()) {
    const std::string type = kv.value.is_array()
                                 ? fmt::format("{}[]", gguf::value_type_name(kv.value.array_type()))
                                 : std::string(gguf::value_type_name(kv.value.type()));
    fmt::print("  {:<{}}  {:<9} {}\n", printable(kv.key), key_width, type,
               kv.value.to_display_string());
  }

  size_t name_width = 4;
  for (const gguf::TensorInfo& t : file.tensors()) {
    name_width = std::max(name_width, printable(t.name).size());
  }
  fmt::print("\ntensors:\n  {:<{}}  {:<7} {:<28} {:>14} {:>14}\n", "name", name_width, "type",
             "shape", "bytes", "offset");
  for (const gguf::TensorInfo& t : file.tensors()) {
    fmt::print("  {:<{}}  {:<7} {:<28} {:>14} {:>14}{}\n", printable(t.name), name_width,
               type_name(t.type), shape_string(t.shape), t.n_bytes, t.offset,
               file.paths().size() > 1 ? fmt::format("  (part {})", t.split + 1) : "");
  }

  fmt::print("\ntotals by type:\n");
  uint64_t all_bytes = 0, all_elements = 0, all_tensors = 0;
  for (const auto& [name, tt] : totals_by_type(file)) {
    fmt::print("  {:<8} {:>6} tensors {:>16} elements {:>12}  {:5.2f} bits/weight\n", name,
               tt.tensors, tt.elements, human_bytes(tt.bytes),
               tt.elements ? 8.0 * static_cast<double>(tt.bytes) / static_cast<double>(tt.elements)
                           : 0.0);
    all_bytes += tt.bytes;
    all_elements += tt.elements;
    all_tensors += tt.tensors;
  }
  fmt::print("  {:<8} {:>6} tensors {:>16} elements {:>12}\n", "all", all_tensors, all_elements,
             human_bytes(all_bytes));
}

}  // namespace

int run_inspect(const std::vector<std::string>& argv) {
  Args args("inspect", argv, {"json"}, {});
  const std::string& path = args.positional({"FILE"})[0];
  const gguf::File file = gguf::File::open(path);
  if (args.flag("json")) {
    print_json(file);
  } else {
    print_text(file);
  }
  return 0;
}

}  // namespace ktx::cli
