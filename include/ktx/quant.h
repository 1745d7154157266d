// Reference (scalar, plain C++) implementations of the GGUF block formats: dequantization to
// f32, quantization from f32, and the dot product of a weight row with an activation row in the
// type llama.cpp pairs it with. They are the ground truth that the SIMD and CUDA kernels are
// tested against, so they favour readability over speed. They are validated against the `gguf`
// PyPI package (tests/python/test_quant_reference.py).
#pragma once

#include <cstdint>

#include "ktx/tensor_type.h"

namespace ktx::quant {

// True when `type` can be dequantized by dequantize_row().
bool can_dequantize(TensorType type);

// True when `type` can be produced by quantize_row().
bool can_quantize(TensorType type);

// Converts `n` elements stored as `type` at `src` to f32 at `dst`. `n` must be a multiple of the
// type's block size. Throws ktx::Error (kUnsupported) for a type without a reference, and
// (kInvalidArgument) for a bad `n`.
void dequantize_row(TensorType type, const void* src, float* dst, int64_t n);

// The affine form of a row: element e equals scale[e / 16] * code[e] (+ offset[e / 16]),
// computed in f32 exactly as dequantize_row computes it (a product, then a sum), so the values
// are the same bit for bit. The block formats whose elements are small integers times a scale per
// 16 or 32 elements (plus a minimum) have one: Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, IQ4_NL, Q2_K, Q3_K,
// Q4_K, Q5_K, Q6_K and IQ4_XS. Kernels that decode weights to f32 themselves (MLA's small per-head
// products) keep rows in this form: one byte and a fraction per element instead of four.
constexpr int kAffineGroup = 16;

// True when `type` has an affine form; affine_has_offset: when its form adds an offset (a
// minimum): Q4_1, Q5_1, Q2_K, Q4_K, Q5_K. The others' offsets are zero and never written.
bool has_affine_form(TensorType type);
bool affine_has_offset(TensorType type);

// Writes the affine form of `n` elements of `type` at `src`: `n` codes, n / 16 scales and, when
// affine_has_offset(type), n / 16 offsets (`offset` may be null otherwise). `n` must be a
// multiple of the type's block size. Throws ktx::Error (kUnsupported) for a type without one.
void affine_row(TensorType type, const void* src, int64_t n, int8_t* code, float* scale,
                float* offset);

// Quantizes `n` f32 values at `src` into `type` at `dst` (row_size(type, n) bytes). Follows
// llama.cpp's reference quantizers (quantize_row_*_ref), so outputs match byte for byte where the
// `gguf` package can check them. `n` must be a multiple of the type's block size.
void quantize_row(TensorType type, const float* src, void* dst, int64_t n);

// The activation type a weight row of `type` is multiplied with, as llama.cpp's CPU backend pairs
// them: Q4_0/Q5_0/Q8_0/IQ4_NL -> Q8_0, Q4_1/Q5_1 -> Q8_1, K-quants and IQ4_XS -> Q8_K, and the
// float types with themselves. nullopt when `type` has no reference dot product.
std::optional<TensorType> vec_dot_type(TensorType type);

// Dot product of `n` elements: `x` stored as `type`, `y` stored as vec_dot_type(type). The integer
// part of each block is summed exactly, then scaled, as llama.cpp's scalar paths do.
float vec_dot(TensorType type, int64_t n, const void* x, const void* y);

}  // namespace ktx::quant
