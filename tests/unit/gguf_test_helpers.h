// Shared by the GGUF unit tests: a temporary folder, a byte assembler that remembers where each
// field starts (so a test can corrupt exactly one field and expect that byte offset in the
// error), and a canonical small file built by hand, independent of ktx's writer.
#pragma once

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::gguf::test {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "ktx_gguf_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

inline std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Little-endian byte assembly with named field offsets.
struct Asm {
  std::vector<uint8_t> bytes;
  std::map<std::string, uint64_t> at;

  uint64_t size() const { return bytes.size(); }
  Asm& mark(const std::string& name) {
    at[name] = bytes.size();
    return *this;
  }
  Asm& le(uint64_t v, int n) {
    for (int i = 0; i < n; ++i) bytes.push_back(static_cast<uint8_t>(v >> (8 * i)));
    return *this;
  }
  Asm& u8(uint8_t v) { return le(v, 1); }
  Asm& u16(uint16_t v) { return le(v, 2); }
  Asm& u32(uint32_t v) { return le(v, 4); }
  Asm& u64(uint64_t v) { return le(v, 8); }
  Asm& i64(int64_t v) { return le(static_cast<uint64_t>(v), 8); }
  Asm& f32(float v) {
    uint32_t b;
    std::memcpy(&b, &v, 4);
    return u32(b);
  }
  Asm& str(const std::string& s) {
    u64(s.size());
    bytes.insert(bytes.end(), s.begin(), s.end());
    return *this;
  }
  Asm& pad_to(uint64_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    return *this;
  }
  uint64_t offset(const std::string& name) const {
    auto it = at.find(name);
    if (it == at.end()) throw std::runtime_error("no field mark " + name);
    return it->second;
  }
  void patch(const std::string& name, uint64_t v, int n, uint64_t delta = 0) {
    const uint64_t o = offset(name) + delta;
    for (int i = 0; i < n; ++i) bytes.at(o + i) = static_cast<uint8_t>(v >> (8 * i));
  }
  void patch_u8(const std::string& name, uint8_t v, uint64_t delta = 0) {
    patch(name, v, 1, delta);
  }
  void patch_u32(const std::string& name, uint32_t v) { patch(name, v, 4); }
  void patch_u64(const std::string& name, uint64_t v) { patch(name, v, 8); }
  std::vector<uint8_t> prefix(uint64_t n) const {
    return {bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n)};
  }
};

// A metadata entry: its key and a writer of "type + value" that marks its own fields under
// `prefix` ("kv2.type", "kv2.value", "kv2.elem_type", "kv2.count", "kv2.data").
struct KVSpec {
  std::string key;
  std::function<void(Asm&, const std::string& prefix)> write;
};

struct TensorSpec {
  std::string name;
  std::vector<int64_t> dims;  // GGUF order, as stored
  uint32_t type;
  uint64_t n_bytes;                // bytes of data laid out for it
  std::optional<uint64_t> offset;  // default: the canonical running offset
};

struct FileSpec {
  uint32_t version = 3;
  uint32_t alignment = 32;  // used for layout; the key must be in kvs to be stored
  std::vector<KVSpec> kvs;
  std::vector<TensorSpec> tensors;
};

inline KVSpec kv_string(std::string key, std::string value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(8).mark(p + ".value").str(value);
          }};
}
inline KVSpec kv_u32(std::string key, uint32_t value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(4).mark(p + ".value").u32(value);
          }};
}
inline KVSpec kv_u16(std::string key, uint16_t value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(2).mark(p + ".value").u16(value);
          }};
}
inline KVSpec kv_i32(std::string key, int32_t value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(5).mark(p + ".value").u32(static_cast<uint32_t>(value));
          }};
}
inline KVSpec kv_u64(std::string key, uint64_t value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(10).mark(p + ".value").u64(value);
          }};
}
inline KVSpec kv_bool(std::string key, bool value) {
  return {std::move(key), [value](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(7).mark(p + ".value").u8(value ? 1 : 0);
          }};
}
inline KVSpec kv_f32_array(std::string key, std::vector<float> values) {
  return {std::move(key), [values](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(9).mark(p + ".elem_type").u32(6);
            a.mark(p + ".count").u64(values.size()).mark(p + ".data");
            for (float v : values) a.f32(v);
          }};
}
inline KVSpec kv_string_array(std::string key, std::vector<std::string> values) {
  return {std::move(key), [values](Asm& a, const std::string& p) {
            a.mark(p + ".type").u32(9).mark(p + ".elem_type").u32(8);
            a.mark(p + ".count").u64(values.size()).mark(p + ".data");
            for (const auto& v : values) a.str(v);
          }};
}

// Deterministic, non-zero tensor bytes: tensor `t`, byte `i`.
inline uint8_t pattern_byte(size_t t, uint64_t i) {
  return static_cast<uint8_t>((i * 131 + t * 71 + 17) ^ (i >> 8));
}

// Lays out a file the way llama.cpp and gguf-py do: header, KVs, infos, zero padding to the
// alignment, then each tensor at its offset, padded with zeros to the alignment.
inline Asm build(const FileSpec& spec) {
  Asm a;
  a.mark("magic").u32(0x46554747).mark("version").u32(spec.version);
  a.mark("n_tensors").u64(spec.tensors.size()).mark("n_kv").u64(spec.kvs.size());
  for (size_t i = 0; i < spec.kvs.size(); ++i) {
    const std::string p = "kv" + std::to_string(i);
    a.mark(p + ".key").str(spec.kvs[i].key);
    spec.kvs[i].write(a, p);
  }
  std::vector<uint64_t> offsets;
  uint64_t running = 0;
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec& t = spec.tensors[i];
    const std::string p = "t" + std::to_string(i);
    const uint64_t off = t.offset.value_or(running);
    offsets.push_back(off);
    running = off + (t.n_bytes + spec.alignment - 1) / spec.alignment * spec.alignment;
    a.mark(p + ".name").str(t.name).mark(p + ".n_dims").u32(static_cast<uint32_t>(t.dims.size()));
    for (size_t d = 0; d < t.dims.size(); ++d)
      a.mark(p + ".dim" + std::to_string(d)).i64(t.dims[d]);
    a.mark(p + ".type").u32(t.type).mark(p + ".offset").u64(off);
  }
  a.mark("infos_end").pad_to(spec.alignment).mark("data");
  const uint64_t data = a.size();
  for (size_t i = 0; i < spec.tensors.size(); ++i) {
    const TensorSpec& t = spec.tensors[i];
    const uint64_t start = data + offsets[i];
    const uint64_t end = start + (t.n_bytes + spec.alignment - 1) / spec.alignment * spec.alignment;
    if (a.bytes.size() < end) a.bytes.resize(end, 0);
    a.at["t" + std::to_string(i) + ".data"] = start;
    for (uint64_t k = 0; k < t.n_bytes; ++k) a.bytes[start + k] = pattern_byte(i, k);
  }
  return a;
}

// The small valid file most malformed cases start from. Its last tensor's size is a multiple of
// the alignment, so the file ends exactly where the data ends: every shorter prefix is truncated.
inline FileSpec base_spec() {
  FileSpec s;
  s.kvs = {
      kv_string("general.architecture", "deepseek2"),
      kv_u32("general.alignment", 32),
      kv_f32_array("tokenizer.ggml.scores", {0.5f, -1.0f, 2.0f}),
      kv_string_array("tokenizer.ggml.tokens", {"a", "bc"}),
      kv_bool("deepseek2.expert_weights_norm", true),
  };
  s.tensors = {
      {"token_embd.weight", {8, 2}, 0 /*F32*/, 64, std::nullopt},
      {"blk.0.ffn_down_exps.weight", {32, 16}, 8 /*Q8_0*/, 16 * 34, std::nullopt},
  };
  return s;
}

// Opens `bytes` written to a file and returns the ktx::Error it must throw.
inline ktx::Error open_error(const TempDir& dir, const std::vector<uint8_t>& bytes,
                             const std::string& name = "model.gguf") {
  const std::string path = dir.file(name);
  write_file(path, bytes);
  try {
    File f = File::open(path);
  } catch (const ktx::Error& e) {
    return e;
  }
  FAIL("File::open accepted a malformed file");
  return ktx::Error(ErrorCode::kInternal, "unreachable");
}

}  // namespace ktx::gguf::test
