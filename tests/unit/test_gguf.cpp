// GGUF reader and writer: round trips of every value type, versions, alignment, split models,
// tensor views, lookups and their errors, and the writer's refusals.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

#include "gguf_test_helpers.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/tensor_type.h"

using namespace ktx;
using namespace ktx::gguf;
using namespace ktx::gguf::test;

namespace {

template <typename T>
std::vector<uint8_t> le_array(const std::vector<T>& items) {
  std::vector<uint8_t> out(items.size() * sizeof(T));
  if (!items.empty()) std::memcpy(out.data(), items.data(), out.size());  // host is little-endian
  return out;
}

// memcmp, but an empty range (whose pointers may be null) is always equal.
bool same_bytes(const void* a, const void* b, size_t n) {
  return n == 0 || std::memcmp(a, b, n) == 0;
}

std::vector<uint8_t> random_bytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<uint8_t> out(n);
  for (auto& b : out) b = static_cast<uint8_t>(rng());
  return out;
}

// Every scalar type, every array element type, edge values, empty arrays.
std::vector<KeyValue> all_value_kinds() {
  std::vector<KeyValue> kv;
  kv.push_back({"v.uint8", Value::uint8(255)});
  kv.push_back({"v.int8", Value::int8(-128)});
  kv.push_back({"v.uint16", Value::uint16(65535)});
  kv.push_back({"v.int16", Value::int16(-32768)});
  kv.push_back({"v.uint32", Value::uint32(4000000000u)});
  kv.push_back({"v.int32", Value::int32(-2000000000)});
  kv.push_back({"v.float32", Value::float32(-1.5e-7f)});
  kv.push_back({"v.bool_true", Value::boolean(true)});
  kv.push_back({"v.bool_false", Value::boolean(false)});
  kv.push_back({"v.string", Value::string("deepseek2 — ünïcødé")});
  kv.push_back({"v.string_empty", Value::string("")});
  kv.push_back({"v.uint64", Value::uint64(std::numeric_limits<uint64_t>::max())});
  kv.push_back({"v.int64", Value::int64(std::numeric_limits<int64_t>::min())});
  kv.push_back({"v.float64", Value::float64(3.141592653589793)});
  kv.push_back({"v.float32_nan", Value::float32(std::numeric_limits<float>::quiet_NaN())});
  kv.push_back({"a.uint8", Value::array(ValueType::UINT8, {0, 1, 255}, 3)});
  kv.push_back({"a.int8", Value::array(ValueType::INT8, le_array<int8_t>({-1, 0, 127}), 3)});
  kv.push_back({"a.uint16", Value::array(ValueType::UINT16, le_array<uint16_t>({1, 65535}), 2)});
  kv.push_back({"a.int16", Value::array(ValueType::INT16, le_array<int16_t>({-5, 5}), 2)});
  kv.push_back({"a.uint32", Value::array(ValueType::UINT32, le_array<uint32_t>({7, 8, 9}), 3)});
  kv.push_back({"a.int32", Value::int32_array({-1, 2, -3, 4})});
  kv.push_back({"a.float32", Value::float32_array({0.25f, -8.0f, 1e30f})});
  kv.push_back({"a.bool", Value::array(ValueType::BOOL, {1, 0, 1, 1}, 4)});
  kv.push_back({"a.string", Value::string_array({"<s>", "</s>", "", "Ġthe"})});
  kv.push_back({"a.uint64", Value::array(ValueType::UINT64, le_array<uint64_t>({1ull << 63}), 1)});
  kv.push_back({"a.int64", Value::array(ValueType::INT64, le_array<int64_t>({-1, 1ll << 40}), 2)});
  kv.push_back({"a.float64", Value::array(ValueType::FLOAT64, le_array<double>({-0.0, 1e300}), 2)});
  kv.push_back({"a.empty_int32", Value::int32_array({})});
  kv.push_back({"a.empty_string", Value::string_array({})});
  return kv;
}

Writer writer_with(const std::vector<KeyValue>& kvs, uint32_t version = 3) {
  Writer w(version);
  for (const auto& kv : kvs) w.set_metadata(kv.key, kv.value);
  return w;
}

}  // namespace

TEST_CASE("gguf: every value type and array of each round-trips", "[gguf]") {
  TempDir dir;
  const auto kvs = all_value_kinds();
  for (uint32_t version : {2u, 3u}) {
    CAPTURE(version);
    Writer w = writer_with(kvs, version);
    const std::string path = dir.file("values.gguf");
    w.write(path);
    File f = File::open(path);
    CHECK(f.version() == version);
    CHECK(f.alignment() == 32);
    REQUIRE(f.metadata().size() == kvs.size());
    for (size_t i = 0; i < kvs.size(); ++i) {
      CAPTURE(kvs[i].key);
      CHECK(f.metadata()[i].key == kvs[i].key);
      CHECK(f.metadata()[i].value == kvs[i].value);
      REQUIRE(f.find(kvs[i].key) != nullptr);
      CHECK(*f.find(kvs[i].key) == kvs[i].value);
    }
    CHECK(f.tensors().empty());
    // Written back: the same bytes.
    CHECK(Writer::from_file(f).to_bytes() == read_file(path));
  }
}

TEST_CASE("gguf: value conversions", "[gguf]") {
  CHECK(Value::uint8(200).as_int() == 200);
  CHECK(Value::int8(-3).as_int() == -3);
  CHECK(Value::int16(-300).as_int() == -300);
  CHECK(Value::int32(-70000).as_int() == -70000);
  CHECK(Value::uint64(std::numeric_limits<uint64_t>::max()).as_int() == std::nullopt);
  CHECK(Value::uint64(std::numeric_limits<uint64_t>::max()).as_uint() ==
        std::numeric_limits<uint64_t>::max());
  CHECK(Value::int32(-1).as_uint() == std::nullopt);
  CHECK(Value::int64(std::numeric_limits<int64_t>::min()).as_int() ==
        std::numeric_limits<int64_t>::min());
  CHECK(Value::float32(0.5f).as_float() == 0.5);
  CHECK(Value::float64(0.25).as_float() == 0.25);
  CHECK(Value::uint32(1).as_float() == std::nullopt);  // integers are not floats
  CHECK(Value::float32(1.0f).as_int() == std::nullopt);
  CHECK(Value::boolean(true).as_bool() == true);
  CHECK(Value::uint8(1).as_bool() == std::nullopt);
  CHECK(Value::string("x").as_string() != nullptr);
  CHECK(Value::uint8(1).as_string() == nullptr);
  CHECK(Value().as_int() == 0);  // a default Value is UINT8 0 and writes as such

  const Value a = Value::int32_array({5, -6});
  CHECK(a.is_array());
  CHECK(a.array_type() == ValueType::INT32);
  CHECK(a.array_size() == 2);
  CHECK(a.int_at(1) == -6);
  CHECK(a.int_at(2) == std::nullopt);
  CHECK(a.float_at(0) == std::nullopt);
  CHECK(a.as_int() == std::nullopt);
  CHECK(Value::float32_array({1.5f}).float_at(0) == 1.5);
  // UINT64 elements past INT64_MAX: uint_at reads them (int_at cannot); negatives are refused.
  const Value big = Value::uint64_array({1, 0xfedcba9876543210u});
  CHECK(big.array_type() == ValueType::UINT64);
  CHECK(big.uint_at(1) == 0xfedcba9876543210u);
  CHECK(big.int_at(1) == std::nullopt);
  CHECK(big.uint_at(2) == std::nullopt);
  CHECK(a.uint_at(0) == 5u);
  CHECK(a.uint_at(1) == std::nullopt);
  const Value flags = Value::array(ValueType::BOOL, {1, 0}, 2);
  CHECK(flags.bool_at(0) == true);
  CHECK(flags.bool_at(1) == false);
  CHECK(flags.bool_at(2) == std::nullopt);
  CHECK(flags.int_at(0) == std::nullopt);  // BOOL is not an integer type
  CHECK(a.bool_at(0) == std::nullopt);
  CHECK(Value::string_array({"x"}).strings()->at(0) == "x");
  CHECK(a.strings() == nullptr);

  CHECK(Value::uint32(4096).to_display_string() == "4096");
  CHECK(Value::string("deepseek2").to_display_string() == "\"deepseek2\"");
  CHECK(Value::int32_array({1, 2}).to_display_string() == "[1, 2]");
  CHECK(Value::string_array(std::vector<std::string>(102400, "t")).to_display_string() ==
        "[STRING × 102400]");
  CHECK(Value::boolean(false).to_display_string() == "false");
  CHECK(value_type_name(ValueType::FLOAT64) == "FLOAT64");

  // Equality is by stored type and bytes.
  CHECK(Value::uint16(1) != Value::uint32(1));
  CHECK(Value::float32(std::nanf("")) == Value::float32(std::nanf("")));
}

TEST_CASE("gguf: Value::array refuses what cannot be stored", "[gguf]") {
  auto code_of = [](auto&& fn) {
    try {
      fn();
    } catch (const Error& e) {
      return e.code();
    }
    return ErrorCode::kInternal;
  };
  CHECK(code_of([] { Value::array(ValueType::STRING, {}, 0); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] { Value::array(ValueType::ARRAY, {}, 0); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] { Value::array(static_cast<ValueType>(13), {}, 0); }) ==
        ErrorCode::kInvalidArgument);
  CHECK(code_of([] {
          Value::array(ValueType::UINT32, {1, 2, 3}, 1);
        }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] { Value::array(ValueType::BOOL, {2}, 1); }) == ErrorCode::kInvalidArgument);
  CHECK(code_of([] {
          Value::array(ValueType::UINT64, {}, std::numeric_limits<uint64_t>::max() / 4);
        }) == ErrorCode::kInvalidArgument);
}

TEST_CASE("gguf: tensors of several types, views point at their bytes", "[gguf]") {
  TempDir dir;
  struct T {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
  };
  const std::vector<T> specs = {
      {"token_embd.weight", TensorType::F32, {16, 3}},
      {"blk.0.attn_norm.weight", TensorType::F16, {7}},  // 14 bytes: padding follows
      {"blk.0.ffn_gate_exps.weight", TensorType::Q4_K, {256, 2, 3}},
      {"blk.0.ffn_down_exps.weight", TensorType::Q6_K, {512, 1, 2, 1}},
      {"blk.0.attn_kv_b.weight", TensorType::Q8_0, {64, 5}},
      {"output.weight", TensorType::BF16, {3, 3}},
      {"blk.0.exp_probs_b.bias", TensorType::F32, {0}},  // empty: allowed, as in llama.cpp
      {"blk.0.attn_q_a.weight", TensorType::IQ4_XS, {256}},
  };
  std::vector<std::vector<uint8_t>> data;
  Writer w;
  w.set_metadata("general.architecture", Value::string("deepseek2"));
  for (size_t i = 0; i < specs.size(); ++i) {
    int64_t rows = 1;
    for (size_t d = 1; d < specs[i].shape.size(); ++d) rows *= specs[i].shape[d];
    const size_t n = row_size(specs[i].type, specs[i].shape[0]) * static_cast<size_t>(rows);
    data.push_back(random_bytes(n, static_cast<uint32_t>(i + 1)));
    w.add_tensor(specs[i].name, specs[i].type, specs[i].shape, data.back().data(), n);
  }
  const std::string path = dir.file("tensors.gguf");
  w.write(path);
  const auto file_bytes = read_file(path);

  File f = File::open(path);
  REQUIRE(f.tensors().size() == specs.size());
  CHECK(f.data_offset() % 32 == 0);
  CHECK(f.file_size() == file_bytes.size());
  CHECK(file_bytes.size() % 32 == 0);  // each tensor padded, the last one too
  uint64_t expected_offset = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const TensorInfo& t = f.tensors()[i];
    CAPTURE(t.name);
    CHECK(t.name == specs[i].name);
    CHECK(t.type == specs[i].type);
    CHECK(t.shape == specs[i].shape);
    CHECK(t.split == 0);
    CHECK(t.n_bytes == data[i].size());
    CHECK(t.offset == expected_offset);  // canonical layout: directory order, aligned
    expected_offset += (t.n_bytes + 31) / 32 * 32;
    CHECK(&f.tensor(t.name) == &t);
    REQUIRE((t.data != nullptr || t.n_bytes == 0));
    // The view holds exactly the bytes at data_offset + offset of the file.
    CHECK(same_bytes(t.data, file_bytes.data() + f.data_offset() + t.offset, t.n_bytes));
    CHECK(same_bytes(t.data, data[i].data(), t.n_bytes));
    // Views are into the mapping: consecutive tensors are apart by their aligned sizes.
    if (i > 0) {
      CHECK(t.data - f.tensors()[0].data == static_cast<ptrdiff_t>(t.offset));
    }
  }
  CHECK(f.tensors()[0].rows() == 3);
  CHECK(f.tensors()[2].rows() == 6);
  CHECK(f.tensors()[1].rows() == 1);
  CHECK(f.tensors()[6].n_elements == 0);
  CHECK(f.tensors()[2].n_elements == 256 * 6);
  CHECK(Writer::from_file(f).to_bytes() == file_bytes);
}

TEST_CASE("gguf: a hand-assembled canonical file reads and writes back byte for byte", "[gguf]") {
  TempDir dir;
  for (uint32_t version : {2u, 3u}) {
    FileSpec spec = base_spec();
    spec.version = version;
    const Asm a = build(spec);
    const std::string path = dir.file("hand.gguf");
    write_file(path, a.bytes);
    File f = File::open(path);
    CHECK(f.version() == version);
    CHECK(f.get_string("general.architecture") == "deepseek2");
    CHECK(f.get_int("general.alignment") == 32);
    CHECK(f.get_bool("deepseek2.expert_weights_norm"));
    CHECK(f.find("tokenizer.ggml.scores")->float_at(1) == -1.0);
    CHECK(*f.find("tokenizer.ggml.tokens")->strings() == std::vector<std::string>{"a", "bc"});
    CHECK(f.data_offset() == a.offset("data"));
    const TensorInfo& t = f.tensor("blk.0.ffn_down_exps.weight");
    CHECK(t.type == TensorType::Q8_0);
    CHECK(t.n_bytes == 16 * 34);
    CHECK(t.data[0] == pattern_byte(1, 0));
    CHECK(std::memcmp(t.data, a.bytes.data() + a.offset("t1.data"), t.n_bytes) == 0);
    CHECK(Writer::from_file(f).to_bytes() == a.bytes);

    // The writer, given the same content independently, produces the same bytes.
    Writer w(version);
    w.set_metadata("general.architecture", Value::string("deepseek2"));
    w.set_metadata("general.alignment", Value::uint32(32));
    w.set_metadata("tokenizer.ggml.scores", Value::float32_array({0.5f, -1.0f, 2.0f}));
    w.set_metadata("tokenizer.ggml.tokens", Value::string_array({"a", "bc"}));
    w.set_metadata("deepseek2.expert_weights_norm", Value::boolean(true));
    for (const TensorInfo& ti : f.tensors()) {
      w.add_tensor(ti.name, ti.type, ti.shape, ti.data, ti.n_bytes);
    }
    CHECK(w.to_bytes() == a.bytes);
  }
}

TEST_CASE("gguf: custom alignment", "[gguf]") {
  TempDir dir;
  for (uint32_t alignment : {1u, 8u, 64u, 256u, 4096u}) {
    CAPTURE(alignment);
    Writer w;
    w.set_metadata("general.architecture", Value::string("deepseek2"));
    w.set_alignment(alignment);
    const auto a = random_bytes(4 * 5, 1);
    const auto b = random_bytes(34 * 3, 2);
    w.add_tensor("a", TensorType::F32, {5}, a.data(), a.size());
    w.add_tensor("b", TensorType::Q8_0, {96}, b.data(), b.size());
    const std::string path = dir.file("aligned.gguf");
    w.write(path);
    File f = File::open(path);
    CHECK(f.alignment() == alignment);
    CHECK(f.find("general.alignment")->type() == ValueType::UINT32);
    CHECK(f.data_offset() % alignment == 0);
    CHECK(f.tensors()[1].offset % alignment == 0);
    CHECK(std::memcmp(f.tensors()[1].data, b.data(), b.size()) == 0);
    CHECK(reinterpret_cast<uintptr_t>(f.tensors()[1].data) % std::min(alignment, 4096u) == 0);
    CHECK(Writer::from_file(f).to_bytes() == read_file(path));
  }
  // The key and the layout never disagree: 32 needs no key, any other value adds one, and a key
  // already present is updated in place.
  {
    Writer d;
    d.set_alignment(32);
    const std::string dp = dir.file("default.gguf");
    d.write(dp);
    CHECK(File::open(dp).metadata().empty());  // the default needs no key
    Writer c;
    c.set_metadata("general.architecture", Value::string("deepseek2"));
    c.set_alignment(64);
    c.set_metadata("general.name", Value::string("x"));
    c.set_alignment(32);
    const std::string p = dir.file("realigned.gguf");
    c.write(p);
    File f = File::open(p);
    REQUIRE(f.metadata().size() == 3);
    CHECK(f.metadata()[1].key == "general.alignment");
    CHECK(f.metadata()[1].value == Value::uint32(32));
  }
  // Setting the key through set_metadata sets the layout too.
  Writer w;
  w.set_metadata("general.alignment", Value::uint32(128));
  const auto a = random_bytes(4, 3);
  w.add_tensor("a", TensorType::F32, {1}, a.data(), a.size());
  const std::string path = dir.file("aligned_key.gguf");
  w.write(path);
  File f = File::open(path);
  CHECK(f.alignment() == 128);
  CHECK(f.data_offset() == 128);
}

namespace {

// Writes a model split in `n` parts the way gguf-split does: metadata in the first part, split
// keys in every part (split.no u16 0-based, split.count u16, split.tensors.count i32).
std::vector<std::string> write_split(const TempDir& dir, const std::string& prefix, uint32_t n,
                                     const std::vector<std::vector<std::string>>& names,
                                     std::vector<std::vector<uint8_t>>& data) {
  int32_t total = 0;
  for (const auto& part : names) total += static_cast<int32_t>(part.size());
  std::vector<std::string> paths;
  for (uint32_t i = 0; i < n; ++i) {
    Writer w;
    if (i == 0) w.set_metadata("general.architecture", Value::string("deepseek2"));
    w.set_metadata("split.no", Value::uint16(static_cast<uint16_t>(i)));
    w.set_metadata("split.count", Value::uint16(static_cast<uint16_t>(n)));
    w.set_metadata("split.tensors.count", Value::int32(total));
    for (const auto& name : names[i]) {
      data.push_back(random_bytes(34 * 2, static_cast<uint32_t>(data.size() + 7)));
      w.add_tensor(name, TensorType::Q8_0, {32, 2}, data.back().data(), data.back().size());
    }
    paths.push_back(split_path(dir.file(prefix), i, n));
    w.write(paths.back());
  }
  return paths;
}

}  // namespace

TEST_CASE("gguf: split model in 3 parts opens as one", "[gguf]") {
  TempDir dir;
  std::vector<std::vector<uint8_t>> data;
  const auto paths = write_split(dir, "model", 3, {{"a", "b"}, {"c"}, {"d", "e", "f"}}, data);
  CHECK(paths[1] == dir.file("model-00002-of-00003.gguf"));

  for (const auto& open_path : paths) {  // any part's name opens the whole model
    File f = File::open(open_path);
    CHECK(f.paths() == paths);
    CHECK(f.get_string("general.architecture") == "deepseek2");
    REQUIRE(f.tensors().size() == 6);
    const std::vector<uint32_t> expected_split = {0, 0, 1, 2, 2, 2};
    for (size_t i = 0; i < 6; ++i) {
      const TensorInfo& t = f.tensors()[i];
      CHECK(t.name == std::string(1, static_cast<char>('a' + i)));
      CHECK(t.split == expected_split[i]);
      CHECK(std::memcmp(t.data, data[i].data(), t.n_bytes) == 0);
      CHECK(f.find_tensor(t.name) == &t);
    }
    CHECK(f.find_tensor("g") == nullptr);
    CHECK(f.file_size(2) == read_file(paths[2]).size());
    CHECK(f.data_offset(1) % 32 == 0);
    CHECK_THROWS_AS(f.data_offset(3), Error);
  }

  // Written back, the parts merge into one file without split keys.
  File f = File::open(paths[0]);
  const std::string merged = dir.file("merged.gguf");
  Writer::from_file(f).write(merged);
  File m = File::open(merged);
  CHECK(m.paths().size() == 1);
  CHECK(m.find("split.count") == nullptr);
  CHECK(m.find("split.no") == nullptr);
  REQUIRE(m.tensors().size() == 6);
  for (size_t i = 0; i < 6; ++i) {
    CHECK(m.tensors()[i].name == f.tensors()[i].name);
    CHECK(std::memcmp(m.tensors()[i].data, data[i].data(), m.tensors()[i].n_bytes) == 0);
  }
}

TEST_CASE("gguf: a single file named as 1 of 1 and one with split.count 1", "[gguf]") {
  TempDir dir;
  std::vector<std::vector<uint8_t>> data;
  const auto paths = write_split(dir, "one", 1, {{"a", "b"}}, data);
  CHECK(paths[0] == dir.file("one-00001-of-00001.gguf"));
  File f = File::open(paths[0]);
  CHECK(f.tensors().size() == 2);
  // Byte-exact even with split keys: a one-part file is not a merge.
  CHECK(Writer::from_file(f).to_bytes() == read_file(paths[0]));
  // The same bytes under a plain name.
  const std::string plain = dir.file("plain.gguf");
  write_file(plain, read_file(paths[0]));
  CHECK(File::open(plain).tensors().size() == 2);
  // And a file without split keys under a part's name (1 of 2) is a single file too, as
  // llama.cpp reads it: the name alone does not send the reader looking for part 2.
  Writer w;
  const std::vector<uint8_t> zeros(16, 0);
  w.add_tensor("a", TensorType::F32, {4}, zeros.data(), zeros.size());
  const std::string named = dir.file("lone-00001-of-00002.gguf");
  w.write(named);
  CHECK(File::open(named).tensors().size() == 1);
}

TEST_CASE("gguf: lookups and typed getters name the key and the type expected", "[gguf]") {
  TempDir dir;
  Writer w;
  w.set_metadata("general.architecture", Value::string("deepseek2"));
  w.set_metadata("deepseek2.block_count", Value::uint32(27));
  w.set_metadata("deepseek2.rope.freq_base", Value::float32(10000.0f));
  w.set_metadata("deepseek2.expert_weights_norm", Value::boolean(false));
  w.set_metadata("huge", Value::uint64(std::numeric_limits<uint64_t>::max()));
  w.set_metadata("list", Value::int32_array({1, 2, 3}));
  const std::string path = dir.file("getters.gguf");
  w.write(path);
  File f = File::open(path);

  CHECK(f.get_int("deepseek2.block_count") == 27);
  CHECK(f.get_float("deepseek2.rope.freq_base") == 10000.0);
  CHECK(f.get_bool("deepseek2.expert_weights_norm") == false);
  CHECK(f.get_string("general.architecture") == "deepseek2");
  CHECK(f.find("missing") == nullptr);

  auto error_of = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kInvalidFile);
      return e.what();
    }
    FAIL("expected ktx::Error");
    return "";
  };
  using Catch::Matchers::Contains;
  const std::string missing = error_of([&] { f.get_int("deepseek2.expert_count"); });
  CHECK_THAT(missing, Contains(path) && Contains("'deepseek2.expert_count'") &&
                          Contains("missing") && Contains("integer"));
  const std::string wrong = error_of([&] { f.get_int("general.architecture"); });
  CHECK_THAT(wrong, Contains("'general.architecture'") && Contains("STRING") &&
                        Contains("\"deepseek2\"") && Contains("expected an integer"));
  CHECK_THAT(error_of([&] { f.get_int("huge"); }), Contains("'huge'") &&
                                                       Contains("UINT64 18446744073709551615") &&
                                                       Contains("fits int64"));
  CHECK_THAT(error_of([&] { f.get_float("deepseek2.block_count"); }),
             Contains("'deepseek2.block_count'") && Contains("UINT32 27") &&
                 Contains("FLOAT32 or FLOAT64"));
  CHECK_THAT(error_of([&] { f.get_bool("list"); }),
             Contains("'list'") && Contains("an array of INT32 × 3") && Contains("a BOOL"));
  CHECK_THAT(error_of([&] { f.get_string("deepseek2.expert_weights_norm"); }),
             Contains("BOOL false") && Contains("a STRING"));
  CHECK_THAT(error_of([&] { f.tensor("blk.0.attn_q.weight"); }),
             Contains(path) && Contains("'blk.0.attn_q.weight'"));
}

TEST_CASE("gguf: missing or unreadable files are I/O errors", "[gguf]") {
  TempDir dir;
  using Catch::Matchers::Contains;
  const std::string missing = dir.file("nope.gguf");
  try {
    File::open(missing);
    FAIL("opened a missing file");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::kIo);
    CHECK_THAT(e.what(), Contains(missing) && Contains("No such file or directory"));
  }
  const std::string folder = dir.file("folder.gguf");
  std::filesystem::create_directory(folder);
  try {
    File::open(folder);
    FAIL("opened a directory");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::kIo);
    CHECK_THAT(e.what(), Contains(folder) && Contains("Is a directory"));
  }
}

TEST_CASE("gguf: writer refuses what the reader would refuse", "[gguf]") {
  using Catch::Matchers::Contains;
  auto refused = [](auto&& fn) -> std::string {
    try {
      fn();
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kInvalidArgument);
      return e.what();
    }
    FAIL("expected kInvalidArgument");
    return "";
  };
  const auto bytes = random_bytes(4096, 9);
  Writer w;
  w.add_tensor("a", TensorType::F32, {4}, bytes.data(), 16);

  CHECK_THAT(refused([&] { w.add_tensor("a", TensorType::F32, {4}, bytes.data(), 16); }),
             Contains("'a'") && Contains("already added"));
  CHECK_THAT(refused([&] { w.add_tensor("", TensorType::F32, {4}, bytes.data(), 16); }),
             Contains("empty"));
  CHECK_THAT(refused([&] { w.add_tensor("bad\xff", TensorType::F32, {4}, bytes.data(), 16); }),
             Contains("UTF-8"));
  CHECK_THAT(refused([&] {
               w.add_tensor(std::string("nul\0x", 5), TensorType::F32, {4}, bytes.data(), 16);
             }),
             Contains("NUL"));
  CHECK_THAT(refused([&] { w.add_tensor("b", TensorType::F32, {}, bytes.data(), 4); }),
             Contains("0 dimensions"));
  CHECK_THAT(refused([&] {
               w.add_tensor("b", TensorType::F32, {1, 1, 1, 1, 1}, bytes.data(), 4);
             }),
             Contains("5 dimensions"));
  CHECK_THAT(refused([&] {
               w.add_tensor("b", TensorType::F32, {4, -1}, bytes.data(), 16);
             }),
             Contains("dimension 1 is -1"));
  CHECK_THAT(refused([&] { w.add_tensor("b", TensorType::Q4_K, {128}, bytes.data(), 72); }),
             Contains("row length 128") && Contains("block size 256"));
  CHECK_THAT(refused([&] {
               w.add_tensor("b", TensorType::F32, {1ll << 32, 1ll << 32}, bytes.data(), 16);
             }),
             Contains("INT64_MAX"));
  CHECK_THAT(refused([&] { w.add_tensor("b", TensorType::F32, {4}, bytes.data(), 15); }),
             Contains("15 bytes given") && Contains("takes 16"));
  CHECK_THAT(refused([&] { w.add_tensor("b", TensorType::F32, {4}, nullptr, 16); }),
             Contains("null"));
  CHECK_THAT(
      refused([&] { w.add_tensor("b", static_cast<TensorType>(137), {256}, bytes.data(), 16); }),
      Contains("unknown tensor type id 137"));
  CHECK_THAT(refused([&] { w.set_metadata("", Value::uint8(1)); }), Contains("key is empty"));
  CHECK_THAT(refused([&] { w.set_metadata("k\xc3", Value::uint8(1)); }), Contains("UTF-8"));
  CHECK_THAT(refused([&] { w.set_metadata("general.alignment", Value::uint64(32)); }),
             Contains("must be a UINT32"));
  CHECK_THAT(refused([&] { w.set_metadata("general.alignment", Value::uint32(48)); }),
             Contains("48") && Contains("power of two"));
  CHECK_THAT(refused([&] { w.set_alignment(0); }), Contains("power of two"));
  CHECK_THAT(refused([&] { w.set_metadata("split.count", Value::string("3")); }),
             Contains("split.count") && Contains("integer"));
  CHECK_THAT(refused([] { Writer bad(1); }), Contains("version 1"));

  // A part of a split model must be named as one.
  TempDir dir;
  Writer part;
  part.set_metadata("split.no", Value::uint16(1));
  part.set_metadata("split.count", Value::uint16(3));
  part.set_metadata("split.tensors.count", Value::int32(0));
  CHECK_THAT(refused([&] { part.write(dir.file("model.gguf")); }),
             Contains("-00002-of-00003.gguf"));
  CHECK_THAT(refused([&] { part.write(dir.file("model-00001-of-00003.gguf")); }),
             Contains("-00002-of-00003.gguf"));
  part.write(dir.file("model-00002-of-00003.gguf"));  // named right: written
}

TEST_CASE("gguf: write replaces a file atomically and reports I/O failures", "[gguf]") {
  TempDir dir;
  const std::string path = dir.file("out.gguf");
  write_file(path, {1, 2, 3});
  Writer w;
  w.set_metadata("general.architecture", Value::string("deepseek2"));
  const auto data = random_bytes(64, 4);
  w.add_tensor("a", TensorType::F32, {16}, data.data(), data.size(), /*borrow=*/true);
  w.write(path);
  CHECK(read_file(path) == w.to_bytes());
  // No temporary file left behind.
  size_t n_files = 0;
  for (const auto& entry :
       std::filesystem::directory_iterator(std::filesystem::path(path).parent_path())) {
    (void)entry;
    ++n_files;
  }
  CHECK(n_files == 1);

  const std::string nowhere = dir.file("no/such/folder/out.gguf");
  try {
    w.write(nowhere);
    FAIL("wrote into a missing folder");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::kIo);
    CHECK_THAT(e.what(), Catch::Matchers::Contains(nowhere) &&
                             Catch::Matchers::Contains("No such file or directory"));
  }
  CHECK(read_file(path) == w.to_bytes());

  // Replacing keys keeps their first position.
  Writer r;
  r.set_metadata("x", Value::uint8(1));
  r.set_metadata("y", Value::uint8(2));
  r.set_metadata("x", Value::string("again"));
  r.write(path);
  File f = File::open(path);
  REQUIRE(f.metadata().size() == 2);
  CHECK(f.metadata()[0].key == "x");
  CHECK(*f.metadata()[0].value.as_string() == "again");
}

TEST_CASE("gguf: a copied Writer owns its tensor bytes", "[gguf]") {
  std::vector<uint8_t> expected;
  std::optional<Writer> copy;
  {
    Writer original;
    const auto data = random_bytes(64, 5);
    original.add_tensor("a", TensorType::F32, {16}, data.data(), data.size());
    expected = original.to_bytes();
    copy = original;
  }  // the original and its buffers are gone
  CHECK(copy->to_bytes() == expected);
}

TEST_CASE("gguf: split_path names parts as gguf-split does", "[gguf]") {
  CHECK(split_path("dir/DeepSeek-V3-Q4_K_M", 0, 3) == "dir/DeepSeek-V3-Q4_K_M-00001-of-00003.gguf");
  CHECK(split_path("m", 11, 12) == "m-00012-of-00012.gguf");
}
