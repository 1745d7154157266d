// Malformed GGUF files: each case starts from a valid file (hand-assembled, so every field's byte
// offset is known) and breaks one thing; the reader must refuse it with kInvalidFile and a message
// naming the file, the byte offset, the field and what was expected. Then every truncation of a
// valid file, and random corruption: refused cleanly or opened, never a crash or another exception.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <random>

#include "gguf_test_helpers.h"
#include "ktx/error.h"
#include "ktx/gguf.h"

using namespace ktx;
using namespace ktx::gguf;
using namespace ktx::gguf::test;
using Catch::Matchers::Contains;

namespace {

// Refuses `bytes` with kInvalidFile and a message holding the path, "byte <at>" and each part.
void expect_refused(const std::vector<uint8_t>& bytes, uint64_t at,
                    std::initializer_list<std::string> parts) {
  TempDir dir;
  const Error e = open_error(dir, bytes);
  const std::string msg = e.what();
  INFO(msg);
  CHECK(e.code() == ErrorCode::kInvalidFile);
  CHECK_THAT(msg, Contains(dir.file("model.gguf") + ": byte " + std::to_string(at) + ": "));
  for (const auto& part : parts) CHECK_THAT(msg, Contains(part));
}

Asm base() { return build(base_spec()); }

}  // namespace

TEST_CASE("malformed: the base file itself is valid", "[gguf][malformed]") {
  TempDir dir;
  const Asm a = base();
  write_file(dir.file("model.gguf"), a.bytes);
  File f = File::open(dir.file("model.gguf"));
  CHECK(f.tensors().size() == 2);
  CHECK(f.metadata().size() == 5);
  CHECK(a.size() == a.offset("t1.data") + 16 * 34);  // ends where the last tensor ends
}

TEST_CASE("malformed: header", "[gguf][malformed]") {
  SECTION("empty file") { expect_refused({}, 0, {"magic", "empty"}); }
  SECTION("bad magic") {
    Asm a = base();
    a.patch_u8("magic", 'X', 3);
    expect_refused(a.bytes, 0, {"magic", "found 'GGUX'", "expected 'GGUF'"});
  }
  SECTION("magic of another format") {
    expect_refused({0x7f, 'E', 'L', 'F', 2, 1, 1, 0}, 0, {"magic", "expected 'GGUF'"});
  }
  SECTION("version 1") {
    Asm a = base();
    a.patch_u32("version", 1);
    expect_refused(a.bytes, 4, {"version", "version 1 is not supported", "2 and 3"});
  }
  SECTION("version 0") {
    Asm a = base();
    a.patch_u32("version", 0);
    expect_refused(a.bytes, 4, {"version", "unsupported GGUF version 0", "expected 2 or 3"});
  }
  SECTION("version 4") {
    Asm a = base();
    a.patch_u32("version", 4);
    expect_refused(a.bytes, 4, {"version", "unsupported GGUF version 4"});
  }
  SECTION("big-endian file") {
    Asm a = base();
    a.patch_u32("version", 0x03000000);
    expect_refused(a.bytes, 4, {"version", "big-endian"});
  }
  SECTION("truncated in the tensor count") {
    expect_refused(base().prefix(12), 8,
                   {"tensor count", "expected a UINT64 (8 bytes)", "ends after 4", "file is 12"});
  }
  SECTION("key-value count that cannot fit") {
    Asm a = base();
    a.patch_u64("n_kv", 1ull << 62);
    expect_refused(
        a.bytes, 16,
        {"metadata key-value count", "4611686018427387904", "cannot fit", "at least 14 bytes"});
  }
  SECTION("key-value count of UINT64_MAX") {
    Asm a = base();
    a.patch_u64("n_kv", ~0ull);
    expect_refused(a.bytes, 16, {"metadata key-value count", "cannot fit"});
  }
  SECTION("tensor count that cannot fit") {
    Asm a = base();
    a.patch_u64("n_tensors", 1ull << 40);
    expect_refused(a.bytes, 8, {"tensor count", "1099511627776", "cannot fit", "33 bytes"});
  }
  SECTION("tensor count that fits alone but not after the key-value pairs") {
    Asm a = base();
    const uint64_t left = a.size() - 24;
    a.patch_u64("n_kv", left / 14);
    a.patch_u64("n_tensors", 1);
    expect_refused(a.bytes, 8, {"tensor count", "cannot fit", "after"});
  }
}

TEST_CASE("malformed: metadata keys and values", "[gguf][malformed]") {
  SECTION("key length past the end of the file") {
    Asm a = base();
    a.patch_u64("kv0.key", ~0ull);
    expect_refused(
        a.bytes, 24,
        {"metadata key #0: key", "string length 18446744073709551615",
         "runs past the end of the file", "file is " + std::to_string(a.size()) + " bytes"});
  }
  SECTION("empty key") {
    FileSpec s = base_spec();
    s.kvs.insert(s.kvs.begin() + 1, kv_u32("", 7));
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("kv1.key"), {"metadata key #1", "key is empty"});
  }
  SECTION("key that is not UTF-8") {
    Asm a = base();
    a.patch_u8("kv2.key", 0xC0, 8);  // an overlong-form lead byte
    expect_refused(a.bytes, a.offset("kv2.key"), {"metadata key #2", "not valid UTF-8"});
  }
  SECTION("key holding a NUL") {
    Asm a = base();
    a.patch_u8("kv3.key", 0, 8 + 3);
    expect_refused(a.bytes, a.offset("kv3.key"), {"metadata key #3", "NUL"});
  }
  SECTION("duplicate key") {
    FileSpec s = base_spec();
    s.kvs.push_back(kv_u32("general.architecture", 2));
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("kv5.key"),
                   {"metadata key #5 'general.architecture'", "duplicate key", "#0"});
  }
  SECTION("unknown value type") {
    Asm a = base();
    a.patch_u32("kv4.type", 13);
    expect_refused(
        a.bytes, a.offset("kv4.type"),
        {"metadata key #4 'deepseek2.expert_weights_norm'", "unknown value type 13", "0 to 12"});
  }
  SECTION("value type far out of range") {
    Asm a = base();
    a.patch_u32("kv0.type", 0xFFFFFFFF);
    expect_refused(a.bytes, a.offset("kv0.type"), {"unknown value type 4294967295"});
  }
  SECTION("string value length past the end") {
    Asm a = base();
    a.patch_u64("kv0.value", 1ull << 40);
    expect_refused(a.bytes, a.offset("kv0.value"),
                   {"metadata key #0 'general.architecture'", "string length 1099511627776",
                    "runs past the end"});
  }
  SECTION("BOOL other than 0 or 1") {
    Asm a = base();
    a.patch_u8("kv4.value", 2);
    expect_refused(a.bytes, a.offset("kv4.value"),
                   {"'deepseek2.expert_weights_norm'", "BOOL is 2", "expected 0 or 1"});
  }
  SECTION("nested array") {
    Asm a = base();
    a.patch_u32("kv2.elem_type", 9);
    expect_refused(a.bytes, a.offset("kv2.elem_type"),
                   {"'tokenizer.ggml.scores'", "nested arrays"});
  }
  SECTION("invalid array element type") {
    Asm a = base();
    a.patch_u32("kv2.elem_type", 77);
    expect_refused(a.bytes, a.offset("kv2.elem_type"),
                   {"'tokenizer.ggml.scores'", "array element type 77", "0 to 12"});
  }
  SECTION("numeric array length past the end") {
    Asm a = base();
    a.patch_u64("kv2.count", 1ull << 61);
    expect_refused(a.bytes, a.offset("kv2.count"),
                   {"'tokenizer.ggml.scores'", "array of 2305843009213693952 FLOAT32",
                    "runs past the end of the file"});
  }
  SECTION("numeric array length whose byte size overflows") {
    Asm a = base();
    a.patch_u64("kv2.count", ~0ull / 2);  // × 4 bytes wraps around 64 bits
    expect_refused(a.bytes, a.offset("kv2.count"), {"'tokenizer.ggml.scores'", "runs past"});
  }
  SECTION("string array length past the end") {
    Asm a = base();
    a.patch_u64("kv3.count", 1ull << 62);
    expect_refused(
        a.bytes, a.offset("kv3.count"),
        {"'tokenizer.ggml.tokens'", "array of 4611686018427387904 strings", "runs past the end"});
  }
  SECTION("string array element length past the end") {
    Asm a = base();
    a.patch_u64("kv3.data", 1ull << 50);
    expect_refused(a.bytes, a.offset("kv3.data"),
                   {"'tokenizer.ggml.tokens': element 0", "string length 1125899906842624"});
  }
  SECTION("BOOL array element other than 0 or 1") {
    FileSpec s = base_spec();
    s.kvs.push_back({"flags", [](Asm& a, const std::string& p) {
                       a.mark(p + ".type").u32(9).u32(7).u64(3).mark(p + ".data").u8(1).u8(0).u8(5);
                     }});
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("kv5.data") + 2,
                   {"'flags': element 2", "BOOL is 5", "expected 0 or 1"});
  }
  SECTION("alignment not a UINT32") {
    FileSpec s = base_spec();
    s.kvs[1] = kv_u64("general.alignment", 32);
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("kv1.type"),
                   {"'general.alignment'", "must be a UINT32, not UINT64"});
  }
  SECTION("alignment not a power of two") {
    Asm a = base();
    a.patch_u32("kv1.value", 48);
    expect_refused(a.bytes, a.offset("kv1.type"),
                   {"'general.alignment'", "is 48", "expected a power of two"});
  }
  SECTION("alignment 0") {
    Asm a = base();
    a.patch_u32("kv1.value", 0);
    expect_refused(a.bytes, a.offset("kv1.type"), {"'general.alignment'", "is 0", "power of two"});
  }
  SECTION("split key that is not an integer") {
    FileSpec s = base_spec();
    s.kvs.push_back(kv_string("split.count", "3"));
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("kv5.type"), {"'split.count'", "non-negative integer"});
  }
  SECTION("truncated inside a key") {
    const Asm a = base();
    expect_refused(a.prefix(a.offset("kv3.key") + 10), a.offset("kv3.key"),
                   {"metadata key #3: key", "string length 21", "runs past the end"});
  }
  SECTION("truncated inside a value") {
    // So early in the file the counts alone would not fit; with no tensors announced, the key
    // count still does and the reader gets as far as the value.
    Asm a = base();
    a.patch_u64("n_tensors", 0);
    expect_refused(
        a.prefix(a.offset("kv1.value") + 2), a.offset("kv1.value"),
        {"metadata key #1 'general.alignment'", "expected a UINT32 (4 bytes)", "ends after 2"});
  }
}

TEST_CASE("malformed: tensor infos", "[gguf][malformed]") {
  SECTION("empty tensor name") {
    FileSpec s = base_spec();
    s.tensors[1].name = "";
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("t1.name"), {"tensor #1", "tensor name is empty"});
  }
  SECTION("tensor name that is not UTF-8") {
    Asm a = base();
    a.patch_u8("t0.name", 0xFF, 8 + 2);
    expect_refused(a.bytes, a.offset("t0.name"), {"tensor #0", "not valid UTF-8"});
  }
  SECTION("tensor name length past the end") {
    Asm a = base();
    a.patch_u64("t1.name", 1ull << 33);
    expect_refused(a.bytes, a.offset("t1.name"),
                   {"tensor #1: name", "string length 8589934592", "runs past the end"});
  }
  SECTION("duplicate tensor name") {
    FileSpec s = base_spec();
    s.tensors[1].name = s.tensors[0].name;
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("t1.name"),
                   {"tensor #1 'token_embd.weight'", "duplicate tensor name", "#0"});
  }
  SECTION("n_dims 0") {
    Asm a = base();
    a.patch_u32("t0.n_dims", 0);
    expect_refused(a.bytes, a.offset("t0.n_dims"),
                   {"tensor #0 'token_embd.weight'", "n_dims is 0", "expected 1 to 4"});
  }
  SECTION("n_dims 5") {
    Asm a = base();
    a.patch_u32("t1.n_dims", 5);
    expect_refused(a.bytes, a.offset("t1.n_dims"),
                   {"tensor #1 'blk.0.ffn_down_exps.weight'", "n_dims is 5", "expected 1 to 4"});
  }
  SECTION("negative dimension") {
    Asm a = base();
    a.patch_u64("t0.dim1", static_cast<uint64_t>(-2));
    expect_refused(a.bytes, a.offset("t0.n_dims"),
                   {"tensor #0 'token_embd.weight'", "dimension 1 is -2", "expected >= 0"});
  }
  SECTION("element count past INT64_MAX") {
    Asm a = base();
    a.patch_u64("t0.dim0", 1ull << 32);
    a.patch_u64("t0.dim1", 1ull << 32);
    expect_refused(a.bytes, a.offset("t0.n_dims"),
                   {"tensor #0", "shape [4294967296, 4294967296]", "more than INT64_MAX elements"});
  }
  SECTION("element count of exactly INT64_MAX") {
    FileSpec s = base_spec();
    s.tensors[0].dims = {std::numeric_limits<int64_t>::max()};
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("t0.n_dims"), {"tensor #0", "INT64_MAX elements"});
  }
  SECTION("byte count past INT64_MAX") {
    FileSpec s = base_spec();
    s.tensors[0].type = 28;  // F64
    s.tensors[0].dims = {1ll << 60, 4};
    const Asm a = build(s);
    expect_refused(a.bytes, a.offset("t0.n_dims"), {"tensor #0", "F64", "INT64_MAX bytes"});
  }
  SECTION("row length not a multiple of the block size") {
    Asm a = base();
    a.patch_u64("t1.dim0", 48);
    expect_refused(a.bytes, a.offset("t1.n_dims"),
                   {"tensor #1", "row length 48 (shape[0])", "Q8_0's block size 32"});
  }
  SECTION("unknown type id of ik_llama.cpp") {
    Asm a = base();
    a.patch_u32("t1.type", 137);
    expect_refused(a.bytes, a.offset("t1.type"),
                   {"tensor #1 'blk.0.ffn_down_exps.weight'", "unknown tensor type id 137"});
  }
  SECTION("type id ggml removed (Q4_2 = 4)") {
    Asm a = base();
    a.patch_u32("t0.type", 4);
    expect_refused(a.bytes, a.offset("t0.type"), {"tensor #0", "unknown tensor type id 4"});
  }
  SECTION("type id past every table") {
    Asm a = base();
    a.patch_u32("t0.type", 0xFFFFFFFF);
    expect_refused(a.bytes, a.offset("t0.type"), {"unknown tensor type id 4294967295"});
  }
  SECTION("truncated inside a tensor info") {
    const Asm a = base();
    expect_refused(
        a.prefix(a.offset("t1.type") + 2), a.offset("t1.type"),
        {"tensor #1 'blk.0.ffn_down_exps.weight': type", "expected a UINT32", "ends after 2"});
  }
  SECTION("truncated inside a dimension") {
    const Asm a = base();
    expect_refused(a.prefix(a.offset("t0.dim1") + 5), a.offset("t0.dim1"),
                   {"tensor #0 'token_embd.weight': dimension 1", "expected an INT64"});
  }
}

TEST_CASE("malformed: tensor data", "[gguf][malformed]") {
  SECTION("data section missing") {
    const Asm a = base();
    const uint64_t end = a.offset("infos_end");
    expect_refused(a.prefix(end), end, {"data section", "expected it to start at byte", "file is"});
  }
  SECTION("data past the end of the file") {
    Asm a = base();
    a.patch_u64("t1.offset", 4096);
    expect_refused(a.bytes, a.offset("t1.offset"),
                   {"tensor #1 'blk.0.ffn_down_exps.weight'", "offset 4096 (+544 bytes",
                    "past the end of the file"});
  }
  SECTION("offset so large that offset + size wraps") {
    Asm a = base();
    a.patch_u64("t1.offset", ~0ull - 31);
    expect_refused(a.bytes, a.offset("t1.offset"), {"tensor #1", "past the end of the file"});
  }
  SECTION("data section cut short") {
    const Asm a = base();
    expect_refused(a.prefix(a.size() - 10), a.offset("t1.offset"),
                   {"tensor #1", "past the end of the file",
                    "file is " + std::to_string(a.size() - 10) + " bytes"});
  }
  SECTION("offset not a multiple of the alignment") {
    Asm a = base();
    a.patch_u64("t1.offset", 80);
    expect_refused(a.bytes, a.offset("t1.offset"),
                   {"tensor #1", "data offset 80 is not a multiple of the alignment 32"});
  }
  SECTION("offset not a multiple of a custom alignment") {
    FileSpec s = base_spec();
    s.alignment = 64;
    s.kvs[1] = kv_u32("general.alignment", 64);
    Asm a = build(s);
    a.patch_u64("t1.offset", 32);
    expect_refused(a.bytes, a.offset("t1.offset"), {"tensor #1", "alignment 64"});
  }
  SECTION("two tensors overlapping") {
    Asm a = base();
    a.patch_u64("t1.offset", 32);
    expect_refused(a.bytes, a.offset("t1.offset"),
                   {"tensor #1 'blk.0.ffn_down_exps.weight'", "data [32, 576)",
                    "overlaps tensor #0 'token_embd.weight' at [0, 64)"});
  }
  SECTION("two tensors at the same offset") {
    Asm a = base();
    a.patch_u64("t1.offset", 0);
    expect_refused(a.bytes, a.offset("t1.offset"), {"overlaps tensor #0"});
  }
  SECTION("overlap with a tensor listed later") {
    FileSpec s = base_spec();
    s.tensors.push_back({"c", {8}, 0, 32, std::nullopt});
    Asm a = build(s);
    a.patch_u64("t0.offset", 96);  // inside tensor #1's data at [64, 608)
    expect_refused(a.bytes, a.offset("t0.offset"),
                   {"tensor #0 'token_embd.weight'", "overlaps tensor #1"});
  }
}

TEST_CASE("malformed: accepted corner cases", "[gguf][malformed]") {
  TempDir dir;
  SECTION("a zero dimension is an empty tensor, as in llama.cpp") {
    FileSpec s = base_spec();
    s.tensors.push_back({"empty", {0, 4}, 12 /*Q4_K*/, 0, std::nullopt});
    const Asm a = build(s);
    write_file(dir.file("m.gguf"), a.bytes);
    File f = File::open(dir.file("m.gguf"));
    CHECK(f.tensor("empty").n_bytes == 0);
    CHECK(f.tensor("empty").n_elements == 0);
    CHECK(Writer::from_file(f).to_bytes() == a.bytes);
  }
  SECTION("tensors stored out of directory order") {
    FileSpec s = base_spec();
    s.tensors[0].offset = 16 * 34 + 32 * 0;  // 544, after tensor #1
    s.tensors[1].offset = 0;
    const Asm a = build(s);
    write_file(dir.file("m.gguf"), a.bytes);
    File f = File::open(dir.file("m.gguf"));
    CHECK(f.tensors()[0].offset == 544);
    CHECK(f.tensors()[0].data[0] == pattern_byte(0, 0));
  }
  SECTION("no tensors and no padding after the infos") {
    FileSpec s = base_spec();
    s.tensors.clear();
    Asm a = build(s);
    write_file(dir.file("m.gguf"), a.prefix(a.offset("infos_end")));
    CHECK(File::open(dir.file("m.gguf")).tensors().empty());
  }
  SECTION("empty arrays") {
    FileSpec s = base_spec();
    s.kvs.push_back(kv_string_array("empty", {}));
    s.kvs.push_back(kv_f32_array("empty_f", {}));
    write_file(dir.file("m.gguf"), build(s).bytes);
    CHECK(File::open(dir.file("m.gguf")).find("empty")->array_size() == 0);
  }
}

TEST_CASE("malformed: split models", "[gguf][malformed]") {
  TempDir dir;
  const std::string prefix = dir.file("model");
  // Three parts of two tensors each; `tweak` changes a part's spec before it is written.
  auto write_parts = [&](const std::function<void(uint32_t, FileSpec&)>& tweak) {
    for (uint32_t i = 0; i < 3; ++i) {
      FileSpec s;
      if (i == 0) s.kvs.push_back(kv_string("general.architecture", "deepseek2"));
      s.kvs.push_back(kv_u16("split.no", static_cast<uint16_t>(i)));
      s.kvs.push_back(kv_u16("split.count", 3));
      s.kvs.push_back(kv_i32("split.tensors.count", 6));
      for (int k = 0; k < 2; ++k) {
        s.tensors.push_back({"t" + std::to_string(2 * i + k), {8}, 0, 32, std::nullopt});
      }
      tweak(i, s);
      write_file(split_path(prefix, i, 3), build(s).bytes);
    }
  };
  auto refused = [&](ErrorCode code) -> std::string {
    try {
      File::open(split_path(prefix, 0, 3));
    } catch (const Error& e) {
      CHECK(e.code() == code);
      return e.what();
    }
    FAIL("a broken split model was opened");
    return "";
  };

  SECTION("valid") {
    write_parts([](uint32_t, FileSpec&) {});
    CHECK(File::open(split_path(prefix, 2, 3)).tensors().size() == 6);
  }
  SECTION("a part is missing") {
    write_parts([](uint32_t, FileSpec&) {});
    std::filesystem::remove(split_path(prefix, 1, 3));
    CHECK_THAT(refused(ErrorCode::kIo), Contains("part 2 of 3") &&
                                            Contains(split_path(prefix, 1, 3)) &&
                                            Contains("No such file or directory"));
  }
  SECTION("split.count disagrees with the name") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 1) s.kvs[1] = kv_u16("split.count", 2);
    });
    const std::string msg = refused(ErrorCode::kInvalidFile);
    CHECK_THAT(msg, Contains(split_path(prefix, 1, 3) + ": byte ") && Contains("'split.count'") &&
                        Contains("2 parts") && Contains("name says 3"));
  }
  SECTION("split.no disagrees with the name") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 2) s.kvs[0] = kv_u16("split.no", 1);
    });
    CHECK_THAT(refused(ErrorCode::kInvalidFile), Contains(split_path(prefix, 2, 3)) &&
                                                     Contains("'split.no'") &&
                                                     Contains("expected 2"));
  }
  SECTION("split.count missing") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 1) s.kvs.erase(s.kvs.begin() + 1);
    });
    CHECK_THAT(refused(ErrorCode::kInvalidFile),
               Contains(split_path(prefix, 1, 3)) && Contains("'split.count' is missing"));
  }
  SECTION("split.tensors.count disagrees between parts") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 2) s.kvs[2] = kv_i32("split.tensors.count", 7);
    });
    CHECK_THAT(refused(ErrorCode::kInvalidFile),
               Contains("'split.tensors.count'") && Contains("7 tensors") && Contains("says 6"));
  }
  SECTION("total tensor count does not match") {
    write_parts(
        [](uint32_t, FileSpec& s) { s.kvs[s.kvs.size() - 1] = kv_i32("split.tensors.count", 5); });
    CHECK_THAT(refused(ErrorCode::kInvalidFile), Contains(split_path(prefix, 0, 3) + ": byte ") &&
                                                     Contains("5 tensors announced") &&
                                                     Contains("3 parts hold 6"));
  }
  SECTION("a tensor name in two parts") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 2) s.tensors[1].name = "t1";  // part 1 holds t0, t1
    });
    const std::string msg = refused(ErrorCode::kInvalidFile);
    CHECK_THAT(msg, Contains(split_path(prefix, 2, 3) + ": byte ") && Contains("tensor #1 't1'") &&
                        Contains("duplicate tensor name") && Contains("part 1"));
  }
  SECTION("a part is itself malformed") {
    write_parts([](uint32_t i, FileSpec& s) {
      if (i == 1) s.tensors[0].dims = {-1};
    });
    CHECK_THAT(refused(ErrorCode::kInvalidFile),
               Contains(split_path(prefix, 1, 3) + ": byte ") && Contains("dimension 0 is -1"));
  }
  SECTION("a single file that says it is part of a split model") {
    FileSpec s = base_spec();
    s.kvs.push_back(kv_u16("split.count", 3));
    const Asm a = build(s);
    const Error e = open_error(dir, a.bytes, "single.gguf");
    CHECK(e.code() == ErrorCode::kInvalidFile);
    CHECK_THAT(e.what(), Contains("byte " + std::to_string(a.offset("kv5.type"))) &&
                             Contains("one of 3 parts") && Contains("-of-00003.gguf"));
  }
  SECTION("a single file with split.tensors.count that does not match") {
    FileSpec s = base_spec();
    s.kvs.push_back(kv_u16("split.count", 1));
    s.kvs.push_back(kv_i32("split.tensors.count", 3));
    const Asm a = build(s);
    const Error e = open_error(dir, a.bytes, "single.gguf");
    CHECK_THAT(e.what(), Contains("3 tensors announced") && Contains("holds 2"));
  }
}

TEST_CASE("malformed: every truncation of a valid file is refused", "[gguf][malformed]") {
  TempDir dir;
  const Asm a = base();
  const std::string path = dir.file("cut.gguf");
  for (uint64_t n = 0; n < a.size(); ++n) {
    CAPTURE(n);
    write_file(path, a.prefix(n));
    try {
      File f = File::open(path);
      FAIL("a truncated file opened");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kInvalidFile);
      CHECK_THAT(e.what(), Contains(path + ": byte "));
    }
  }
}

TEST_CASE("malformed: random corruption opens or throws ktx::Error, nothing else",
          "[gguf][malformed]") {
  TempDir dir;
  const Asm a = base();
  const std::string path = dir.file("fuzz.gguf");
  std::mt19937_64 rng(0x6b7478);  // fixed seed: failures reproduce
  // Header, key and info fields get most mutations: corrupting tensor data proves nothing.
  std::vector<uint64_t> hot;
  for (const auto& [name, off] : a.at) hot.push_back(off);
  // KTX_GGUF_FUZZ_ITERS runs a longer campaign (e.g. under the sanitizers).
  const char* env = std::getenv("KTX_GGUF_FUZZ_ITERS");
  const int iters = env != nullptr ? std::atoi(env) : 4000;
  int opened = 0, refused = 0;
  for (int iter = 0; iter < iters; ++iter) {
    std::vector<uint8_t> bytes = a.bytes;
    const int n_mut = 1 + static_cast<int>(rng() % 4);
    for (int m = 0; m < n_mut; ++m) {
      uint64_t pos;
      if (rng() % 4 != 0) {
        pos = hot[rng() % hot.size()] + rng() % 8;
      } else {
        pos = rng() % bytes.size();
      }
      if (pos >= bytes.size()) continue;
      switch (rng() % 4) {
        case 0:
          bytes[pos] = static_cast<uint8_t>(rng());
          break;
        case 1:
          bytes[pos] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          bytes[pos] = 0xFF;
          break;
        default:
          bytes[pos] = 0;
          break;
      }
    }
    if (rng() % 8 == 0) bytes.resize(rng() % bytes.size());
    write_file(path, bytes);
    try {
      File f = File::open(path);
      // What opens must be internally consistent: every view inside the file.
      for (const TensorInfo& t : f.tensors()) {
        REQUIRE(f.data_offset() + t.offset + t.n_bytes <= f.file_size());
      }
      (void)Writer::from_file(f).to_bytes();
      ++opened;
    } catch (const Error& e) {
      if (e.code() != ErrorCode::kInvalidFile) FAIL("unexpected code: " << e.what());
      ++refused;
    } catch (const std::exception& e) {
      FAIL("iteration " << iter << ": non-ktx exception " << typeid(e).name() << ": " << e.what());
    }
  }
  CHECK(opened > 0);
  CHECK(refused > 0);
}
