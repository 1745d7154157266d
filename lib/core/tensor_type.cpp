// The table of GGUF element types: name, block size and bytes per block for every id ggml has
// assigned (the same numbers as the gguf package's GGML_QUANT_SIZES).
#include "ktx/tensor_type.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>

#include "ktx/error.h"

namespace ktx {
namespace {

constexpr int64_t QK_K = 256;

constexpr std::array kTypes = {
    TypeTraits{TensorType::F32, "F32", 1, 4},
    TypeTraits{TensorType::F16, "F16", 1, 2},
    TypeTraits{TensorType::Q4_0, "Q4_0", 32, 2 + 16},
    TypeTraits{TensorType::Q4_1, "Q4_1", 32, 2 + 2 + 16},
    TypeTraits{TensorType::Q5_0, "Q5_0", 32, 2 + 4 + 16},
    TypeTraits{TensorType::Q5_1, "Q5_1", 32, 2 + 2 + 4 + 16},
    TypeTraits{TensorType::Q8_0, "Q8_0", 32, 2 + 32},
    TypeTraits{TensorType::Q8_1, "Q8_1", 32, 4 + 32},
    TypeTraits{TensorType::Q2_K, "Q2_K", QK_K, 2 + 2 + QK_K / 16 + QK_K / 4},
    TypeTraits{TensorType::Q3_K, "Q3_K", QK_K, 2 + QK_K / 4 + QK_K / 8 + 12},
    TypeTraits{TensorType::Q4_K, "Q4_K", QK_K, 2 + 2 + QK_K / 2 + 12},
    TypeTraits{TensorType::Q5_K, "Q5_K", QK_K, 2 + 2 + QK_K / 2 + QK_K / 8 + 12},
    TypeTraits{TensorType::Q6_K, "Q6_K", QK_K, 2 + QK_K / 2 + QK_K / 4 + QK_K / 16},
    TypeTraits{TensorType::Q8_K, "Q8_K", QK_K, 4 + QK_K + QK_K / 8},
    TypeTraits{TensorType::IQ2_XXS, "IQ2_XXS", QK_K, 2 + QK_K / 4},
    TypeTraits{TensorType::IQ2_XS, "IQ2_XS", QK_K, 2 + QK_K / 4 + QK_K / 32},
    TypeTraits{TensorType::IQ3_XXS, "IQ3_XXS", QK_K, 2 + QK_K / 4 + QK_K / 8},
    TypeTraits{TensorType::IQ1_S, "IQ1_S", QK_K, 2 + QK_K / 8 + QK_K / 16},
    TypeTraits{TensorType::IQ4_NL, "IQ4_NL", 32, 2 + 16},
    TypeTraits{TensorType::IQ3_S, "IQ3_S", QK_K, 2 + QK_K / 4 + QK_K / 8 + QK_K / 32 + 4},
    TypeTraits{TensorType::IQ2_S, "IQ2_S", QK_K, 2 + QK_K / 4 + QK_K / 16},
    TypeTraits{TensorType::IQ4_XS, "IQ4_XS", QK_K, 2 + 2 + QK_K / 2 + QK_K / 64},
    TypeTraits{TensorType::I8, "I8", 1, 1},
    TypeTraits{TensorType::I16, "I16", 1, 2},
    TypeTraits{TensorType::I32, "I32", 1, 4},
    TypeTraits{TensorType::I64, "I64", 1, 8},
    TypeTraits{TensorType::F64, "F64", 1, 8},
    TypeTraits{TensorType::IQ1_M, "IQ1_M", QK_K, QK_K / 8 + QK_K / 16 + QK_K / 32},
    TypeTraits{TensorType::BF16, "BF16", 1, 2},
    TypeTraits{TensorType::TQ1_0, "TQ1_0", QK_K, 2 + 4 * 13},
    TypeTraits{TensorType::TQ2_0, "TQ2_0", QK_K, 2 + 64},
    TypeTraits{TensorType::MXFP4, "MXFP4", 32, 1 + 16},
    TypeTraits{TensorType::NVFP4, "NVFP4", 64, 4 + 32},
    TypeTraits{TensorType::Q1_0, "Q1_0", 128, 2 + 16},
};

}  // namespace

std::optional<TypeTraits> type_traits(uint32_t id) {
  for (const TypeTraits& t : kTypes) {
    if (static_cast<uint32_t>(t.type) == id) return t;
  }
  return std::nullopt;
}

const TypeTraits& traits(TensorType type) {
  for (const TypeTraits& t : kTypes) {
    if (t.type == type) return t;
  }
  throw Error(ErrorCode::kInternal,
              fmt::format("tensor type id {} is not in ktx's type table",
                          static_cast<uint32_t>(type)));
}

std::string_view type_name(TensorType type) { return traits(type).name; }

std::optional<TensorType> type_from_name(std::string_view name) {
  for (const TypeTraits& t : kTypes) {
    if (t.name.size() == name.size() &&
        std::equal(name.begin(), name.end(), t.name.begin(), [](char a, char b) {
          return std::toupper(static_cast<unsigned char>(a)) == b;
        })) {
      return t.type;
    }
  }
  return std::nullopt;
}

size_t row_size(TensorType type, int64_t n) {
  const TypeTraits& t = traits(type);
  if (n < 0 || n % t.block_size != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("a row of {} elements cannot be stored as {}: the length must be a "
                            "multiple of its block size {}",
                            n, t.name, t.block_size));
  }
  return static_cast<size_t>(n / t.block_size) * t.type_size;
}

}  // namespace ktx
