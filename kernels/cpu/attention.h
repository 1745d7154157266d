// f32 kernels for MLA's absorbed attention (lib/ops/cpu/mla_attention.cpp): the two products that
// read the latent cache, shaped as small GEMMs so that each cache row is loaded once for a block
// of heads instead of once per head. Decode at ~576 positions does ~11.5 M multiply-adds per
// layer here; code outside kernels/cpu is built without -m flags (4-wide SSE), so these run the
// tier's vectors (16 lanes on AVX-512, 8 on AVX2). Chosen once per process like vec_dot.h.
// Grouped-query attention (lib/ops/cpu/gqa_attention.cpp) uses the same two products: a block of
// tokens, or a K/V head's query heads, against the K and V cache rows.
//
// What the results promise: each output is an f32 sum of the same products as the scalar
// reference (mla_scores_ref / mla_weighted_sum_ref), added in another order and with fused
// multiply-adds, so they differ by float summation error only; the tests
// (tests/unit/test_cpu_attention_kernels.cpp) bound it by (n/16 + 16) · 2^-24 · Σ|products|.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"

namespace ktx::kernels::cpu {

// Scores of `heads` queries against `positions` cache rows, in two parts (MLA's latent and rope
// parts; either width may be 0):
//   s[h * lds + p] = scale · (qa[h * lda + 0..wa) · ka[p * ldka + 0..wa)
//                           + qb[h * ldb + 0..wb) · kb[p * ldkb + 0..wb))
// for h < heads, p < positions. Strides are in floats. Writes nothing else of `s`.
using MlaScoresFn = void (*)(int64_t heads, int64_t positions, const float* qa, size_t lda,
                             const float* ka, size_t ldka, int64_t wa, const float* qb, size_t ldb,
                             const float* kb, size_t ldkb, int64_t wb, float scale, float* s,
                             size_t lds);

// The weighted sum of cache rows per head, overwriting o:
//   o[h * ldo + c] = Σ_p w[h * ldw + p] · v[p * ldv + c]    for h < heads, c < width
// (p ascending in the reference). Writes nothing else of `o`. A caller splits the work over
// threads by slices of the width (v and o offset by the slice's start) or by runs of positions
// (w and v offset, the runs' sums added afterwards).
using MlaWeightedSumFn = void (*)(int64_t heads, int64_t positions, const float* w, size_t ldw,
                                  const float* v, size_t ldv, int64_t width, float* o, size_t ldo);

// MLA's per-head matrices (W_UK, W_UV) kept in the affine form of their quantized type
// (ktx/quant.h, affine_row): element (r, c) = scale[r·lds + c/16] · code[r·ldc + c], plus
// offset[r·lds + c/16] when `offset` is not null, decoded in f32 as a product then a sum, which
// are dequantize_row's values bit for bit. 1.25-1.5 bytes an element instead of f32's 4: decode
// reads these matrices for every token.
struct AffineRows {
  const int8_t* code;
  size_t ldc;
  const float* scale;
  const float* offset;  // null: no offsets
  size_t lds;
};

// q_lat = W_UKᵀ q_nope:  o[c] = Σ_r w[r] · A(r, c)  for c < width (a multiple of 16), r ascending.
// The same sums as mla_weighted_sum with one head over A's decoded rows, bit for bit.
using MlaAffineWeightedSumFn = void (*)(int64_t rows, const float* w, const AffineRows& a,
                                        int64_t width, float* o);

// o = W_UV o_lat:  s[r] = Σ_c x[c] · A(r, c)  for r < rows, c < width (a multiple of 16). The
// same sums as mla_scores with one head, scale 1 and no second part, bit for bit.
using MlaAffineScoresFn = void (*)(int64_t rows, const float* x, const AffineRows& a, int64_t width,
                                   float* s);

// The fastest implementation for this CPU (KTX_CPU_ISA caps it like vec_dot_fn); never null.
MlaScoresFn mla_scores_fn();
MlaWeightedSumFn mla_weighted_sum_fn();
MlaAffineWeightedSumFn mla_affine_weighted_sum_fn();
MlaAffineScoresFn mla_affine_scores_fn();

// One tier's own kernel (for tests and benchmarks): null when this build or CPU cannot run it.
// Isa::kScalar gives the references.
MlaScoresFn isa_mla_scores(Isa isa);
MlaWeightedSumFn isa_mla_weighted_sum(Isa isa);
MlaAffineWeightedSumFn isa_mla_affine_weighted_sum(Isa isa);
MlaAffineScoresFn isa_mla_affine_scores(Isa isa);

}  // namespace ktx::kernels::cpu
