// The rules a GGUF file must follow in ktx, shared by the reader (which refuses a file that breaks
// them) and the writer (which refuses to produce one), so the two can never disagree. Each check
// returns why something is refused, or nothing when it is fine; callers add where it happened.
//
// Decisions where the format leaves room:
//  - A dimension may be 0 (an empty tensor): llama.cpp's gguf.cpp accepts ne >= 0 and computes
//    size 0. Negative dimensions are refused. A tensor has 1..4 dimensions: ggml writes at least
//    one, and 4 is GGML_MAX_DIMS.
//  - The element count must stay below INT64_MAX, the same bound llama.cpp uses.
//  - Keys and tensor names must be non-empty (llama.cpp refuses empty keys), valid UTF-8 (the
//    spec's strings are UTF-8) and NUL-free (they cross the C ABI as C strings). The spec's
//    stricter "ASCII lower_snake_case" for keys is not enforced: llama.cpp does not, and files
//    in the wild do not all follow it. Tensor names longer than ggml's 63 bytes are accepted.
//  - String values are not checked: tokenizer vocabularies are bytes as far as ktx is concerned.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "ktx/gguf.h"
#include "ktx/tensor_type.h"

namespace ktx::gguf::detail {

inline constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
inline constexpr uint32_t kDefaultAlignment = 32;
inline constexpr uint32_t kMaxDims = 4;
inline constexpr std::string_view kAlignmentKey = "general.alignment";
inline constexpr std::string_view kSplitNoKey = "split.no";
inline constexpr std::string_view kSplitCountKey = "split.count";
inline constexpr std::string_view kSplitTensorsCountKey = "split.tensors.count";

// Smallest encodings, used to refuse counts that cannot fit in the bytes left before anything is
// reserved: a key-value pair is key length (8) + a 1-byte key + type (4) + a 1-byte value; a
// tensor info is name length (8) + a 1-byte name + n_dims (4) + one dimension (8) + type (4) +
// offset (8).
inline constexpr uint64_t kMinKeyValueBytes = 8 + 1 + 4 + 1;
inline constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

bool is_valid_utf8(std::string_view s);
bool is_power_of_two(uint64_t x);
bool is_known_value_type(uint32_t id);

// Bytes of one scalar of `type`; 0 for STRING and ARRAY.
uint64_t value_type_size(ValueType type);

std::optional<std::string> key_problem(std::string_view key);
std::optional<std::string> tensor_name_problem(std::string_view name);

// A metadata value the reader would refuse under `key` (general.alignment, split.*).
std::optional<std::string> reserved_key_problem(std::string_view key, const Value& value);

struct TensorSize {
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

// Checks the shape against the type (dimension count, signs, overflow, row length vs block
// size); on success fills `size`.
std::optional<std::string> shape_problem(TensorType type, std::span<const int64_t> shape,
                                         TensorSize& size);

// "[4096, 102400]"
std::string shape_string(std::span<const int64_t> shape);

// `x` rounded up to a multiple of `alignment` (a power of two); the caller keeps x well below
// UINT64_MAX (offsets inside a file always are).
inline uint64_t align_up(uint64_t x, uint32_t alignment) {
  return (x + alignment - 1) & ~static_cast<uint64_t>(alignment - 1);
}

}  // namespace ktx::gguf::detail
