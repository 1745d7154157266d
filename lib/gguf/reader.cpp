// Parsing one GGUF file: header, key-value pairs, tensor directory, then the checks that need the
// whole directory (data inside the file, aligned, not overlapping). Every count is checked
// against the bytes left before anything is reserved, so a hostile count cannot allocate.
#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <numeric>

#include "gguf/cursor.h"
#include "gguf/file_impl.h"
#include "gguf/rules.h"

namespace ktx::gguf::detail {
namespace {

std::string kv_field(uint64_t index) { return fmt::format("metadata key #{}", index); }

std::string kv_field(uint64_t index, std::string_view key) {
  return fmt::format("metadata key #{} '{}'", index, key);
}

std::string tensor_field(uint64_t index, std::string_view name) {
  return fmt::format("tensor #{} '{}'", index, name);
}

void check_version(Cursor& cur, uint32_t version) {
  const uint64_t at = cur.offset() - 4;
  if (version == 2 || version == 3) return;
  if (version == 1) {
    cur.fail(at, "version",
             "GGUF version 1 is not supported (ktx reads versions 2 and 3; convert the file with a "
             "current llama.cpp)");
  }
  const uint32_t swapped = __builtin_bswap32(version);
  if ((version & 0xFFFF) == 0 && (swapped == 2 || swapped == 3)) {
    cur.fail(at, "version",
             fmt::format("version {} reads as {} byte-swapped: this is a big-endian GGUF file, "
                         "ktx reads little-endian files only",
                         version, swapped));
  }
  cur.fail(at, "version", fmt::format("unsupported GGUF version {}, expected 2 or 3", version));
}

// Reads one value of scalar type `type` into a Value, checking BOOL bytes.
Value read_scalar(Cursor& cur, ValueType type, FieldName field) {
  switch (type) {
    case ValueType::UINT8:
      return Value::uint8(cur.u8(field));
    case ValueType::INT8:
      return Value::int8(static_cast<int8_t>(cur.u8(field)));
    case ValueType::UINT16:
      return Value::uint16(cur.u16(field));
    case ValueType::INT16:
      return Value::int16(static_cast<int16_t>(cur.u16(field)));
    case ValueType::UINT32:
      return Value::uint32(cur.u32(field));
    case ValueType::INT32:
      return Value::int32(static_cast<int32_t>(cur.u32(field)));
    case ValueType::FLOAT32:
      return Value::float32(std::bit_cast<float>(cur.u32(field)));
    case ValueType::UINT64:
      return Value::uint64(cur.u64(field));
    case ValueType::INT64:
      return Value::int64(cur.i64(field));
    case ValueType::FLOAT64:
      return Value::float64(std::bit_cast<double>(cur.u64(field)));
    case ValueType::BOOL: {
      const uint64_t at = cur.offset();
      const uint8_t b = cur.u8(field);
      if (b > 1) cur.fail(at, field(), fmt::format("BOOL is {}, expected 0 or 1", b));
      return Value::boolean(b != 0);
    }
    case ValueType::STRING:
      return Value::string(std::string(cur.string(field)));
    case ValueType::ARRAY:
      break;
  }
  throw Error(ErrorCode::kInternal, "read_scalar called for an ARRAY");
}

Value read_array(Cursor& cur, FieldName field) {
  const uint64_t type_at = cur.offset();
  const uint32_t type_id = cur.u32([&] { return field() + ": array element type"; });
  if (type_id == static_cast<uint32_t>(ValueType::ARRAY)) {
    cur.fail(type_at, field(), "nested arrays (an ARRAY of ARRAY) are not supported");
  }
  if (!is_known_value_type(type_id)) {
    cur.fail(
        type_at, field(),
        fmt::format("array element type {} is not a GGUF value type (expected 0 to 12)", type_id));
  }
  const auto type = static_cast<ValueType>(type_id);
  const uint64_t count_at = cur.offset();
  const uint64_t count = cur.u64([&] { return field() + ": array length"; });

  if (type == ValueType::STRING) {
    // Each string takes at least its 8-byte length.
    if (count > cur.remaining() / 8) {
      cur.fail(count_at, field(),
               fmt::format("array of {} strings runs past the end of the file (each needs at "
                           "least 8 bytes; {} bytes remain; file is {} bytes)",
                           count, cur.remaining(), cur.size()));
    }
    std::vector<std::string> items;
    items.reserve(static_cast<size_t>(count));
    for (uint64_t i = 0; i < count; ++i) {
      items.emplace_back(cur.string([&] { return fmt::format("{}: element {}", field(), i); }));
    }
    return Value::string_array(std::move(items));
  }

  const uint64_t size = value_type_size(type);
  if (count > cur.remaining() / size) {
    cur.fail(count_at, field(),
             fmt::format("array of {} {} ({} bytes each) runs past the end of the file ({} bytes "
                         "remain; file is {} bytes)",
                         count, value_type_name(type), size, cur.remaining(), cur.size()));
  }
  const uint64_t data_at = cur.offset();
  const uint8_t* p = cur.bytes(count * size, "array data", field);
  if (type == ValueType::BOOL) {
    for (uint64_t i = 0; i < count; ++i) {
      if (p[i] > 1) {
        cur.fail(data_at + i, fmt::format("{}: element {}", field(), i),
                 fmt::format("BOOL is {}, expected 0 or 1", p[i]));
      }
    }
  }
  return Value::array(type, std::vector<uint8_t>(p, p + count * size), count);
}

void read_metadata(Cursor& cur, uint64_t n_kv, Part& part) {
  absl::flat_hash_map<std::string_view, uint64_t> seen;  // key -> index; views into the mapping
  seen.reserve(static_cast<size_t>(n_kv));
  part.metadata.reserve(static_cast<size_t>(n_kv));
  part.value_offsets.reserve(static_cast<size_t>(n_kv));

  for (uint64_t i = 0; i < n_kv; ++i) {
    const uint64_t key_at = cur.offset();
    const std::string_view key = cur.string([&] { return kv_field(i) + ": key"; });
    if (auto problem = key_problem(key)) cur.fail(key_at, kv_field(i), *problem);
    if (auto [it, inserted] = seen.emplace(key, i); !inserted) {
      cur.fail(key_at, kv_field(i, key),
               fmt::format("duplicate key: metadata key #{} has the same name", it->second));
    }
    auto field = [&] { return kv_field(i, key); };

    const uint64_t type_at = cur.offset();
    const uint32_t type_id = cur.u32([&] { return field() + ": value type"; });
    if (!is_known_value_type(type_id)) {
      cur.fail(type_at, field(), fmt::format("unknown value type {} (expected 0 to 12)", type_id));
    }
    const auto type = static_cast<ValueType>(type_id);
    Value value = type == ValueType::ARRAY ? read_array(cur, field) : read_scalar(cur, type, field);
    if (auto problem = reserved_key_problem(key, value)) cur.fail(type_at, field(), *problem);

    part.metadata.push_back(KeyValue{std::string(key), std::move(value)});
    part.value_offsets.push_back(type_at);
  }
}

void read_tensor_infos(Cursor& cur, uint64_t n_tensors, Part& part,
                       std::vector<uint64_t>& offset_field_at) {
  absl::flat_hash_map<std::string_view, uint64_t> seen;
  seen.reserve(static_cast<size_t>(n_tensors));
  part.tensors.reserve(static_cast<size_t>(n_tensors));
  part.name_offsets.reserve(static_cast<size_t>(n_tensors));
  offset_field_at.reserve(static_cast<size_t>(n_tensors));

  for (uint64_t i = 0; i < n_tensors; ++i) {
    const uint64_t name_at = cur.offset();
    const std::string_view name = cur.string([&] { return fmt::format("tensor #{}: name", i); });
    if (auto problem = tensor_name_problem(name)) {
      cur.fail(name_at, fmt::format("tensor #{}", i), *problem);
    }
    if (auto [it, inserted] = seen.emplace(name, i); !inserted) {
      cur.fail(name_at, tensor_field(i, name),
               fmt::format("duplicate tensor name: tensor #{} has the same name", it->second));
    }
    auto field = [&] { return tensor_field(i, name); };

    const uint64_t dims_at = cur.offset();
    const uint32_t n_dims = cur.u32([&] { return field() + ": n_dims"; });
    if (n_dims == 0 || n_dims > kMaxDims) {
      cur.fail(dims_at, field(), fmt::format("n_dims is {}, expected 1 to {}", n_dims, kMaxDims));
    }
    std::vector<int64_t> shape(n_dims);
    for (uint32_t d = 0; d < n_dims; ++d) {
      shape[d] = cur.i64([&] { return fmt::format("{}: dimension {}", field(), d); });
    }

    const uint64_t type_at = cur.offset();
    const uint32_t type_id = cur.u32([&] { return field() + ": type"; });
    const auto traits = type_traits(type_id);
    if (!traits) {
      cur.fail(type_at, field(),
               fmt::format("unknown tensor type id {} (not a ggml type ktx knows; private ids "
                           "of forks such as ik_llama.cpp are not supported)",
                           type_id));
    }
    TensorSize size;
    if (auto problem = shape_problem(traits->type, shape, size)) {
      cur.fail(dims_at, field(), *problem);
    }

    offset_field_at.push_back(cur.offset());
    const uint64_t offset = cur.u64([&] { return field() + ": data offset"; });

    TensorInfo info;
    info.name = std::string(name);
    info.type = traits->type;
    info.shape = std::move(shape);
    info.offset = offset;
    info.n_elements = size.n_elements;
    info.n_bytes = size.n_bytes;
    part.tensors.push_back(std::move(info));
    part.name_offsets.push_back(name_at);
  }
}

// Data placement: aligned, inside the file, no two tensors sharing a byte.
void check_tensor_data(const Cursor& cur, Part& part,
                       const std::vector<uint64_t>& offset_field_at) {
  const uint64_t file_size = cur.size();
  const uint64_t data_size = file_size - part.data_offset;  // caller checked data_offset <= size
  for (size_t i = 0; i < part.tensors.size(); ++i) {
    TensorInfo& t = part.tensors[i];
    const auto field = tensor_field(i, t.name);
    if (t.offset % part.alignment != 0) {
      cur.fail(offset_field_at[i], field,
               fmt::format("data offset {} is not a multiple of the alignment {}", t.offset,
                           part.alignment));
    }
    if (t.offset > data_size || t.n_bytes > data_size - t.offset) {
      cur.fail(offset_field_at[i], field,
               fmt::format("data at offset {} (+{} bytes, from byte {} of the file) ends past the "
                           "end of the file (data section starts at byte {}; file is {} bytes)",
                           t.offset, t.n_bytes, part.data_offset + t.offset, part.data_offset,
                           file_size));
    }
    t.data = cur.size() == 0 ? nullptr : part.map.data() + part.data_offset + t.offset;
  }

  std::vector<size_t> order(part.tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return part.tensors[a].offset < part.tensors[b].offset; });
  const TensorInfo* prev = nullptr;
  size_t prev_index = 0;
  for (size_t idx : order) {
    const TensorInfo& t = part.tensors[idx];
    if (t.n_bytes == 0) continue;  // an empty tensor occupies no byte
    if (prev != nullptr && prev->offset + prev->n_bytes > t.offset) {
      cur.fail(offset_field_at[idx], tensor_field(idx, t.name),
               fmt::format("data [{}, {}) overlaps tensor #{} '{}' at [{}, {}) (offsets relative "
                           "to the data section)",
                           t.offset, t.offset + t.n_bytes, prev_index, prev->name, prev->offset,
                           prev->offset + prev->n_bytes));
    }
    if (prev == nullptr || t.offset + t.n_bytes > prev->offset + prev->n_bytes) {
      prev = &t;
      prev_index = idx;
    }
  }
}

}  // namespace

int64_t Part::find(std::string_view key) const {
  for (size_t i = 0; i < metadata.size(); ++i) {
    if (metadata[i].key == key) return static_cast<int64_t>(i);
  }
  return -1;
}

Part read_part(MappedFile map) {
  Part part;
  part.map = std::move(map);
  Cursor cur(part.map.path(), part.map.data(), part.map.size());

  if (cur.size() == 0) cur.fail(0, "magic", "the file is empty (0 bytes), expected a GGUF header");
  const uint32_t magic = cur.u32([] { return std::string("magic"); });
  if (magic != kMagic) {
    std::string shown;
    for (int i = 0; i < 4; ++i) {
      const auto c = static_cast<char>(magic >> (8 * i));
      shown += (c >= 0x20 && c < 0x7F) ? c : '?';
    }
    cur.fail(0, "magic",
             fmt::format("found '{}' (0x{:08x}), expected 'GGUF': not a GGUF file", shown,
                         __builtin_bswap32(magic)));
  }
  part.version = cur.u32([] { return std::string("version"); });
  check_version(cur, part.version);

  const uint64_t n_tensors_at = cur.offset();
  const uint64_t n_tensors = cur.u64([] { return std::string("tensor count"); });
  const uint64_t n_kv_at = cur.offset();
  const uint64_t n_kv = cur.u64([] { return std::string("metadata key-value count"); });
  // Both counts must fit in what is left, at their smallest encodings, before any reserve().
  if (n_kv > cur.remaining() / kMinKeyValueBytes) {
    cur.fail(n_kv_at, "metadata key-value count",
             fmt::format("{} key-value pairs cannot fit in the {} bytes that remain (each takes "
                         "at least {} bytes; file is {} bytes)",
                         n_kv, cur.remaining(), kMinKeyValueBytes, cur.size()));
  }
  if (n_tensors > (cur.remaining() - n_kv * kMinKeyValueBytes) / kMinTensorInfoBytes) {
    cur.fail(n_tensors_at, "tensor count",
             fmt::format("{} tensor infos cannot fit in the {} bytes that remain after {} "
                         "key-value pairs (each takes at least {} bytes; file is {} bytes)",
                         n_tensors, cur.remaining(), n_kv, kMinTensorInfoBytes, cur.size()));
  }

  read_metadata(cur, n_kv, part);
  if (const int64_t k = part.find(kAlignmentKey); k >= 0) {
    part.alignment = static_cast<uint32_t>(*part.metadata[static_cast<size_t>(k)].value.as_uint());
  }

  std::vector<uint64_t> offset_field_at;
  read_tensor_infos(cur, n_tensors, part, offset_field_at);

  const uint64_t infos_end = cur.offset();
  part.data_offset = align_up(infos_end, part.alignment);
  // llama.cpp does not look for the data section of a file without tensors, so such a file may
  // end before the padding; one with tensors must reach it.
  if (n_tensors > 0 && part.data_offset > cur.size()) {
    cur.fail(infos_end, "data section",
             fmt::format("expected it to start at byte {} (tensor infos end at byte {}, aligned "
                         "to {}) but the file is {} bytes",
                         part.data_offset, infos_end, part.alignment, cur.size()));
  }
  if (n_tensors > 0) check_tensor_data(cur, part, offset_field_at);
  return part;
}

}  // namespace ktx::gguf::detail
