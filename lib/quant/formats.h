// The per-type row functions behind include/ktx/quant.h, declared with their block types so that
// SIMD and CUDA kernels can test against them directly. Callers have already checked that `n` is a
// multiple of the block size; quant.cpp's table is the only place that does the checking.
//
// Floating-point order matters: dequantization matches the gguf package bit for bit, quantization
// matches llama.cpp byte for byte. Build these files without FMA contraction (-ffp-contract=off)
// or a fused a*b+c rounds once where the reference rounds twice.
#pragma once

#include <cmath>
#include <cstdint>

#include "quant/blocks.h"

namespace ktx::quant {

// Round to nearest, ties to even, in the default FP environment: the same integers as llama.cpp's
// nearest_int (which adds 1.5 * 2^23 and reads the mantissa) for every |x| < 2^22.
inline int nearest_int(float x) { return static_cast<int>(std::nearbyint(x)); }

// --- float types (float_types.cpp); F16 and BF16 elements are raw uint16_t bits ----------------
void dequantize_row_f32(const float* x, float* y, int64_t n);
void dequantize_row_f16(const uint16_t* x, float* y, int64_t n);
void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n);
void quantize_row_f32(const float* x, float* y, int64_t n);
void quantize_row_f16(const float* x, uint16_t* y, int64_t n);
void quantize_row_bf16(const float* x, uint16_t* y, int64_t n);
// These accumulate in double and round once at the end (as ggml's scalar ggml_float path).
float vec_dot_f32(int64_t n, const float* x, const float* y);
float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y);
float vec_dot_bf16(int64_t n, const uint16_t* x, const uint16_t* y);

// --- legacy block quants, 32 elements a block (legacy_quants.cpp) ------------------------------
void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n);
void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n);
void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n);
void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n);
void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n);
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n);
void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n);
void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n);
void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n);
void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n);
void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n);
void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n);
float vec_dot_q4_0_q8_0(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y);
float vec_dot_q4_1_q8_1(int64_t n, const BlockQ4_1* x, const BlockQ8_1* y);
float vec_dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y);
float vec_dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y);
float vec_dot_q8_0_q8_0(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y);
// The affine form (ktx/quant.h: affine_row): codes, one scale (and offset) per 16 elements.
void affine_row_q4_0(const BlockQ4_0* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q4_1(const BlockQ4_1* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q5_0(const BlockQ5_0* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q5_1(const BlockQ5_1* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q8_0(const BlockQ8_0* x, int8_t* code, float* scale, float* offset, int64_t n);

// --- K-quants, 256 elements a super-block (k_quants.cpp; their quantizers: k_quantize.h) -------
void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t n);
void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t n);
void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n);
void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t n);
void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n);
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n);
void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n);
float vec_dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y);
float vec_dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y);
float vec_dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y);
float vec_dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y);
float vec_dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y);
void affine_row_q2_K(const BlockQ2_K* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q3_K(const BlockQ3_K* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q4_K(const BlockQ4_K* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q5_K(const BlockQ5_K* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_q6_K(const BlockQ6_K* x, int8_t* code, float* scale, float* offset, int64_t n);

// --- non-linear 4-bit (iq4.cpp; the IQ4_XS quantizer lives in k_quantize.h) ---------------------
void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n);
void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n);
void quantize_row_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t n);
float vec_dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y);
float vec_dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y);
void affine_row_iq4_nl(const BlockIQ4_NL* x, int8_t* code, float* scale, float* offset, int64_t n);
void affine_row_iq4_xs(const BlockIQ4_XS* x, int8_t* code, float* scale, float* offset, int64_t n);

}  // namespace ktx::quant
