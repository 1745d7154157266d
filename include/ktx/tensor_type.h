// The element types a GGUF tensor can have, with the ggml ids that files store. Sizes of every id
// ggml assigns are known, so a file holding a type ktx cannot compute with still opens and its
// other tensors stay usable; an id missing from this table (e.g. ik_llama.cpp's private ones) is
// refused by the reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace ktx {

enum class TensorType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  IQ2_XXS = 16,
  IQ2_XS = 17,
  IQ3_XXS = 18,
  IQ1_S = 19,
  IQ4_NL = 20,
  IQ3_S = 21,
  IQ2_S = 22,
  IQ4_XS = 23,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  IQ1_M = 29,
  BF16 = 30,
  TQ1_0 = 34,
  TQ2_0 = 35,
  MXFP4 = 39,
  NVFP4 = 40,
  Q1_0 = 41,
};

// The storage layout of one type: `block_size` elements are stored in `type_size` bytes.
struct TypeTraits {
  TensorType type;
  std::string_view name;  // as llama.cpp and the gguf package spell it: "Q4_K", "BF16" …
  int64_t block_size;
  size_t type_size;
};

// The traits of a stored type id, or nullopt when ggml never assigned that id.
std::optional<TypeTraits> type_traits(uint32_t id);

// Traits of a known type (never fails).
const TypeTraits& traits(TensorType type);

std::string_view type_name(TensorType type);

// The type whose name is `name` ("q4_k" and "Q4_K" both work), or nullopt.
std::optional<TensorType> type_from_name(std::string_view name);

// Bytes of one row of `n` elements; `n` must be a multiple of the block size.
size_t row_size(TensorType type, int64_t n);

}  // namespace ktx
