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

// The weighted sum of cache rows per head, overwriting o (or, with `accumulate`, added to it):
//   o[h * ldo + c] = [o[h * ldo + c] +] Σ_p w[h * ldw + p] · v[p * ldv + c]
// for h < heads, c < width (p ascending in the reference). Writes nothing else of `o`. Each
// output is one running sum over the positions in ascending order, in every tier; with
// `accumulate` it continues from o's value, so a run of positions split over several calls at
// any place gives exactly the numbers of one call (prefill's causal blocks rely on this: a token
// gets the same numbers whatever batch it is in). A caller splits the work over threads by
// slices of the width (v and o offset by the slice's start) or by runs of positions (w and v
// offset, the runs' sums added afterwards).
using MlaWeightedSumFn = void (*)(int64_t heads, int64_t positions, const float* w, size_t ldw,
                                  const float* v, size_t ldv, int64_t width, float* o, size_t ldo,
                                  bool accumulate);

// MLA's per-head matrices (W_UK, W_UV) kept in the affine form of their quantized type
// (ktx/quant.h, affine_row): element (r, c) = scale[r·lds + c/group] · code(r, c), plus
// offset[r·lds + c/group] when `offset` is not null: dequantize_row's values bit for bit when
// computed in f32 as a product then a sum. decode reads these matrices for every token, so they
// are kept as small as the type allows: one scale (and offset) per 32 elements where the type's
// blocks have them (Q4_0, Q4_K, Q8_0, ...), per 16 otherwise (Q6_K, Q3_K, Q2_K); codes of 4 bits
// (Q4_0, Q4_1, Q4_K) two to a byte. Q4_K: 0.75 bytes an element, Q6_K: 1.25, f32: 4.
enum class AffineCodes {
  kInt8,     // code(r, c) = code[r·ldc + c] (as int8)
  kNibbles,  // per 32 elements 16 bytes: byte j holds element j in its low 4 bits and element
             // j + 16 in its high ones, each plus bias. group must be 32.
};

struct AffineRows {
  const int8_t* code;
  size_t ldc;  // bytes from one row's codes to the next's
  const float* scale;
  const float* offset;  // null: no offsets
  size_t lds;
  int group = 16;  // elements per scale: 16 or 32
  AffineCodes codes = AffineCodes::kInt8;
  int bias = 0;  // kNibbles: 0 (codes 0..15) or 8 (codes -8..7)
};

// code(r, c) and A(r, c) of `a`, one element at a time (the references; attention_dispatch.cpp,
// which is built without -m flags).
int affine_code(const AffineRows& a, int64_t r, int64_t c);
float affine_element(const AffineRows& a, int64_t r, int64_t c);
// out[r · width + c] = A(r, c) for r < rows, c < width: affine_element row by row, in its
// translation unit (MLA prefill decodes every head's W_UK / W_UV this way per batch: one call
// per element from outside took 2-3% of a 512-token prefill).
void affine_decode_rows(const AffineRows& a, int64_t rows, int64_t width, float* out);

// q_lat = W_UKᵀ q_nope:  o[c] = Σ_r w[r] · A(r, c)  for c < width (a multiple of `group`).
// The SIMD tiers take each scale out of its group's sum (Σ_r (w[r]·scale)·code + Σ_r
// w[r]·offset): the same products, grouped otherwise, so the result differs from the f32 kernels
// over the decoded rows by float rounding only; the tests bound it by
// (rows + 32) · 2^-24 · Σ_r |w[r]| · (|scale·code| + |offset|).
using MlaAffineWeightedSumFn = void (*)(int64_t rows, const float* w, const AffineRows& a,
                                        int64_t width, float* o);

// o = W_UV o_lat:  s[r] = Σ_c x[c] · A(r, c)  for r < rows, c < width (a multiple of `group`).
// Likewise per group: scale · Σ x·code + offset · Σ x, within
// (width / lanes + group + 32) · 2^-24 · Σ_c |x[c]| · (|scale·code| + |offset|).
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
