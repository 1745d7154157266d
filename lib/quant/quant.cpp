// include/ktx/quant.h: one table row per tensor type with a reference, naming its row functions
// (formats.h, k_quantize.h). The public entry points only validate arguments and dispatch; the
// row functions trust them.
#include "ktx/quant.h"

#include <fmt/format.h>

#include <array>
#include <initializer_list>
#include <string>

#include "ktx/error.h"
#include "quant/formats.h"
#include "quant/k_quantize.h"

namespace ktx::quant {
namespace {

using DequantizeFn = void (*)(const void* src, float* dst, int64_t n);
using QuantizeFn = void (*)(const float* src, void* dst, int64_t n);
using VecDotFn = float (*)(int64_t n, const void* x, const void* y);

// Type-erasing adapters from the typed row functions to the table's void* signatures.
template <typename Block, void (*F)(const Block*, float*, int64_t)>
void dequantize_as(const void* src, float* dst, int64_t n) {
  F(static_cast<const Block*>(src), dst, n);
}

template <typename Block, void (*F)(const float*, Block*, int64_t)>
void quantize_as(const float* src, void* dst, int64_t n) {
  F(src, static_cast<Block*>(dst), n);
}

template <typename X, typename Y, float (*F)(int64_t, const X*, const Y*)>
float vec_dot_as(int64_t n, const void* x, const void* y) {
  return F(n, static_cast<const X*>(x), static_cast<const Y*>(y));
}

struct FormatOps {
  TensorType type;
  DequantizeFn dequantize;  // never null in the table
  QuantizeFn quantize;      // null: no reference quantizer
  TensorType dot_type;      // the activation type vec_dot expects (meaningless without vec_dot)
  VecDotFn vec_dot;         // null: no reference dot product
};

using T = TensorType;

constexpr std::array kFormats = {
    FormatOps{T::F32, dequantize_as<float, dequantize_row_f32>,
              quantize_as<float, quantize_row_f32>, T::F32, vec_dot_as<float, float, vec_dot_f32>},
    FormatOps{T::F16, dequantize_as<uint16_t, dequantize_row_f16>,
              quantize_as<uint16_t, quantize_row_f16>, T::F16,
              vec_dot_as<uint16_t, uint16_t, vec_dot_f16>},
    FormatOps{T::BF16, dequantize_as<uint16_t, dequantize_row_bf16>,
              quantize_as<uint16_t, quantize_row_bf16>, T::BF16,
              vec_dot_as<uint16_t, uint16_t, vec_dot_bf16>},
    FormatOps{T::Q4_0, dequantize_as<BlockQ4_0, dequantize_row_q4_0>,
              quantize_as<BlockQ4_0, quantize_row_q4_0_ref>, T::Q8_0,
              vec_dot_as<BlockQ4_0, BlockQ8_0, vec_dot_q4_0_q8_0>},
    FormatOps{T::Q4_1, dequantize_as<BlockQ4_1, dequantize_row_q4_1>,
              quantize_as<BlockQ4_1, quantize_row_q4_1_ref>, T::Q8_1,
              vec_dot_as<BlockQ4_1, BlockQ8_1, vec_dot_q4_1_q8_1>},
    FormatOps{T::Q5_0, dequantize_as<BlockQ5_0, dequantize_row_q5_0>,
              quantize_as<BlockQ5_0, quantize_row_q5_0_ref>, T::Q8_0,
              vec_dot_as<BlockQ5_0, BlockQ8_0, vec_dot_q5_0_q8_0>},
    FormatOps{T::Q5_1, dequantize_as<BlockQ5_1, dequantize_row_q5_1>,
              quantize_as<BlockQ5_1, quantize_row_q5_1_ref>, T::Q8_1,
              vec_dot_as<BlockQ5_1, BlockQ8_1, vec_dot_q5_1_q8_1>},
    FormatOps{T::Q8_0, dequantize_as<BlockQ8_0, dequantize_row_q8_0>,
              quantize_as<BlockQ8_0, quantize_row_q8_0_ref>, T::Q8_0,
              vec_dot_as<BlockQ8_0, BlockQ8_0, vec_dot_q8_0_q8_0>},
    // Q8_1 and Q8_K are activation types: quantized on the fly, never multiplied as weights.
    FormatOps{T::Q8_1, dequantize_as<BlockQ8_1, dequantize_row_q8_1>,
              quantize_as<BlockQ8_1, quantize_row_q8_1_ref>, T::Q8_1, nullptr},
    FormatOps{T::Q2_K, dequantize_as<BlockQ2_K, dequantize_row_q2_K>,
              quantize_as<BlockQ2_K, quantize_row_q2_K_ref>, T::Q8_K,
              vec_dot_as<BlockQ2_K, BlockQ8_K, vec_dot_q2_K_q8_K>},
    FormatOps{T::Q3_K, dequantize_as<BlockQ3_K, dequantize_row_q3_K>,
              quantize_as<BlockQ3_K, quantize_row_q3_K_ref>, T::Q8_K,
              vec_dot_as<BlockQ3_K, BlockQ8_K, vec_dot_q3_K_q8_K>},
    FormatOps{T::Q4_K, dequantize_as<BlockQ4_K, dequantize_row_q4_K>,
              quantize_as<BlockQ4_K, quantize_row_q4_K_ref>, T::Q8_K,
              vec_dot_as<BlockQ4_K, BlockQ8_K, vec_dot_q4_K_q8_K>},
    FormatOps{T::Q5_K, dequantize_as<BlockQ5_K, dequantize_row_q5_K>,
              quantize_as<BlockQ5_K, quantize_row_q5_K_ref>, T::Q8_K,
              vec_dot_as<BlockQ5_K, BlockQ8_K, vec_dot_q5_K_q8_K>},
    FormatOps{T::Q6_K, dequantize_as<BlockQ6_K, dequantize_row_q6_K>,
              quantize_as<BlockQ6_K, quantize_row_q6_K_ref>, T::Q8_K,
              vec_dot_as<BlockQ6_K, BlockQ8_K, vec_dot_q6_K_q8_K>},
    FormatOps{T::Q8_K, dequantize_as<BlockQ8_K, dequantize_row_q8_K>,
              quantize_as<BlockQ8_K, quantize_row_q8_K_ref>, T::Q8_K, nullptr},
    FormatOps{T::IQ4_NL, dequantize_as<BlockIQ4_NL, dequantize_row_iq4_nl>,
              quantize_as<BlockIQ4_NL, quantize_row_iq4_nl_ref>, T::Q8_0,
              vec_dot_as<BlockIQ4_NL, BlockQ8_0, vec_dot_iq4_nl_q8_0>},
    FormatOps{T::IQ4_XS, dequantize_as<BlockIQ4_XS, dequantize_row_iq4_xs>,
              quantize_as<BlockIQ4_XS, quantize_row_iq4_xs_ref>, T::Q8_K,
              vec_dot_as<BlockIQ4_XS, BlockQ8_K, vec_dot_iq4_xs_q8_K>},
};

const FormatOps* find_format(TensorType type) {
  for (const FormatOps& f : kFormats) {
    if (f.type == type) return &f;
  }
  return nullptr;
}

// A printable name even for an id outside ggml's table (a caller may cast any integer).
std::string name_of(TensorType type) {
  const auto t = type_traits(static_cast<uint32_t>(type));
  return t ? std::string(t->name) : fmt::format("type id {}", static_cast<uint32_t>(type));
}

[[noreturn]] void throw_unsupported(TensorType type, const char* what) {
  throw Error(ErrorCode::kUnsupported,
              fmt::format("{}: ktx has no reference implementation for tensor type {}", what,
                          name_of(type)));
}

// `n` must be a non-negative multiple of the block size; pointers must be non-null when n > 0.
void check_row(const char* what, TensorType type, int64_t n,
               std::initializer_list<const void*> pointers) {
  const TypeTraits& t = traits(type);
  if (n < 0 || n % t.block_size != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: n = {} is not a valid row length for {}: it must be a "
                            "non-negative multiple of the block size {}",
                            what, n, t.name, t.block_size));
  }
  if (n == 0) return;
  for (const void* p : pointers) {
    if (p == nullptr) {
      throw Error(
          ErrorCode::kInvalidArgument,
          fmt::format("{}: null data pointer for a {} row of {} elements", what, t.name, n));
    }
  }
}

using AffineFn = void (*)(const void* src, int8_t* code, float* scale, float* offset, int64_t n);

template <typename Block, void (*F)(const Block*, int8_t*, float*, float*, int64_t)>
void affine_as(const void* src, int8_t* code, float* scale, float* offset, int64_t n) {
  F(static_cast<const Block*>(src), code, scale, offset, n);
}

struct AffineOps {
  TensorType type;
  AffineFn affine;
  bool has_offset;
};

constexpr std::array kAffineFormats = {
    AffineOps{T::Q4_0, affine_as<BlockQ4_0, affine_row_q4_0>, false},
    AffineOps{T::Q4_1, affine_as<BlockQ4_1, affine_row_q4_1>, true},
    AffineOps{T::Q5_0, affine_as<BlockQ5_0, affine_row_q5_0>, false},
    AffineOps{T::Q5_1, affine_as<BlockQ5_1, affine_row_q5_1>, true},
    AffineOps{T::Q8_0, affine_as<BlockQ8_0, affine_row_q8_0>, false},
    AffineOps{T::IQ4_NL, affine_as<BlockIQ4_NL, affine_row_iq4_nl>, false},
    AffineOps{T::Q2_K, affine_as<BlockQ2_K, affine_row_q2_K>, true},
    AffineOps{T::Q3_K, affine_as<BlockQ3_K, affine_row_q3_K>, false},
    AffineOps{T::Q4_K, affine_as<BlockQ4_K, affine_row_q4_K>, true},
    AffineOps{T::Q5_K, affine_as<BlockQ5_K, affine_row_q5_K>, true},
    AffineOps{T::Q6_K, affine_as<BlockQ6_K, affine_row_q6_K>, false},
    AffineOps{T::IQ4_XS, affine_as<BlockIQ4_XS, affine_row_iq4_xs>, false},
};

const AffineOps* find_affine(TensorType type) {
  for (const AffineOps& f : kAffineFormats) {
    if (f.type == type) return &f;
  }
  return nullptr;
}
}  // namespace

bool can_dequantize(TensorType type) { return find_format(type) != nullptr; }

bool can_quantize(TensorType type) {
  const FormatOps* f = find_format(type);
  return f != nullptr && f->quantize != nullptr;
}

std::optional<TensorType> vec_dot_type(TensorType type) {
  const FormatOps* f = find_format(type);
  if (f == nullptr || f->vec_dot == nullptr) return std::nullopt;
  return f->dot_type;
}

void dequantize_row(TensorType type, const void* src, float* dst, int64_t n) {
  const FormatOps* f = find_format(type);
  if (f == nullptr) throw_unsupported(type, "dequantize_row");
  check_row("dequantize_row", type, n, {src, dst});
  if (n > 0) f->dequantize(src, dst, n);
}

void quantize_row(TensorType type, const float* src, void* dst, int64_t n) {
  const FormatOps* f = find_format(type);
  if (f == nullptr || f->quantize == nullptr) throw_unsupported(type, "quantize_row");
  check_row("quantize_row", type, n, {src, dst});
  if (n > 0) f->quantize(src, dst, n);
}

bool has_affine_form(TensorType type) { return find_affine(type) != nullptr; }

bool affine_has_offset(TensorType type) {
  const AffineOps* f = find_affine(type);
  return f != nullptr && f->has_offset;
}

void affine_row(TensorType type, const void* src, int64_t n, int8_t* code, float* scale,
                float* offset) {
  const AffineOps* f = find_affine(type);
  if (f == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("affine_row: tensor type {} has no affine form (small integer codes "
                            "times a scale per 16 elements)",
                            name_of(type)));
  }
  if (f->has_offset) {
    if (offset == nullptr && n > 0) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("affine_row: {} has minimums, so its affine form needs offsets "
                              "(offset is null)",
                              name_of(type)));
    }
    check_row("affine_row", type, n, {src, code, scale, offset});
  } else {
    check_row("affine_row", type, n, {src, code, scale});
  }
  if (n > 0) f->affine(src, code, scale, offset, n);
}

float vec_dot(TensorType type, int64_t n, const void* x, const void* y) {
  const FormatOps* f = find_format(type);
  if (f == nullptr || f->vec_dot == nullptr) throw_unsupported(type, "vec_dot");
  check_row("vec_dot", type, n, {x, y});
  // The activation row has the same length; every pairing has equal or compatible block sizes
  // (32 with 32, 256 with 256, 1 with 1), so one check covers both rows.
  if (n == 0) return 0.0f;
  return f->vec_dot(n, x, y);
}

}  // namespace ktx::quant
