// Bounds-checked little-endian reads over a mapped file. Every read names the field it reads, so
// a refusal says "path: byte N: field: what was expected"; the field text is only built when a
// read fails (absl::FunctionRef), which keeps the hot path of a 100k-token vocabulary cheap.
#pragma once

#include <absl/functional/function_ref.h>
#include <fmt/format.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "ktx/error.h"

namespace ktx::gguf::detail {

using FieldName = absl::FunctionRef<std::string()>;

class Cursor {
 public:
  Cursor(std::string_view path, const uint8_t* data, uint64_t size)
      : path_(path), data_(data), size_(size) {}

  uint64_t offset() const { return offset_; }
  uint64_t size() const { return size_; }
  uint64_t remaining() const { return size_ - offset_; }
  std::string_view path() const { return path_; }

  uint8_t u8(FieldName field) { return static_cast<uint8_t>(read_le(1, "a UINT8", field)); }
  uint16_t u16(FieldName field) { return static_cast<uint16_t>(read_le(2, "a UINT16", field)); }
  uint32_t u32(FieldName field) { return static_cast<uint32_t>(read_le(4, "a UINT32", field)); }
  uint64_t u64(FieldName field) { return read_le(8, "a UINT64", field); }
  int64_t i64(FieldName field) { return static_cast<int64_t>(read_le(8, "an INT64", field)); }

  // `n` raw bytes; refused when fewer remain. `what` describes them ("the 18-byte key").
  const uint8_t* bytes(uint64_t n, std::string_view what, FieldName field) {
    if (n > remaining()) {
      fail(offset_, field(),
           fmt::format("{} runs past the end of the file ({} bytes remain; file is {} bytes)", what,
                       remaining(), size_));
    }
    const uint8_t* p = data_ + offset_;
    offset_ += n;
    return p;
  }

  // A GGUF string: u64 length, then that many bytes (no NUL). The view points into the mapping.
  std::string_view string(FieldName field) {
    const uint64_t at = offset_;
    const uint64_t n = u64([&] { return field() + " length"; });
    if (n > remaining()) {
      fail(at, field(),
           fmt::format("string length {} runs past the end of the file ({} bytes remain; file "
                       "is {} bytes)",
                       n, remaining(), size_));
    }
    const char* p = reinterpret_cast<const char*>(data_ + offset_);
    offset_ += n;
    return {p, static_cast<size_t>(n)};
  }

  // Throws kInvalidFile: "path: byte N: field: problem".
  [[noreturn]] void fail(uint64_t at, std::string_view field, std::string_view problem) const {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: byte {}: {}: {}", path_, at, field, problem));
  }

 private:
  uint64_t read_le(unsigned n, std::string_view expected, FieldName field) {
    if (n > remaining()) {
      fail(offset_, field(),
           fmt::format("expected {} ({} bytes) but the file ends after {} (file is {} bytes)",
                       expected, n, remaining(), size_));
    }
    uint64_t v = 0;
    for (unsigned i = 0; i < n; ++i) v |= static_cast<uint64_t>(data_[offset_ + i]) << (8 * i);
    offset_ += n;
    return v;
  }

  std::string_view path_;
  const uint8_t* data_;
  uint64_t size_;
  uint64_t offset_ = 0;
};

}  // namespace ktx::gguf::detail
