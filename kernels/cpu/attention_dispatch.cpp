// attention.h's dispatch and the scalar references the SIMD tiers are tested against. Compiled
// without -m flags.
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu {
namespace {

// The references: one f32 running sum per output, positions / elements in ascending order.
void mla_scores_ref(int64_t heads, int64_t positions, const float* qa, size_t lda, const float* ka,
                    size_t ldka, int64_t wa, const float* qb, size_t ldb, const float* kb,
                    size_t ldkb, int64_t wb, float scale, float* s, size_t lds) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t p = 0; p < positions; ++p) {
      float a = 0.0f, b = 0.0f;
      for (int64_t i = 0; i < wa; ++i) a += qa[h * lda + i] * ka[p * ldka + i];
      for (int64_t i = 0; i < wb; ++i) b += qb[h * ldb + i] * kb[p * ldkb + i];
      s[h * lds + p] = scale * (a + b);
    }
  }
}

void mla_weighted_sum_ref(int64_t heads, int64_t positions, const float* w, size_t ldw,
                          const float* v, size_t ldv, int64_t width, float* o, size_t ldo,
                          bool accumulate) {
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t c = 0; c < width; ++c) {
      float acc = accumulate ? o[h * ldo + c] : 0.0f;
      for (int64_t p = 0; p < positions; ++p) acc += w[h * ldw + p] * v[p * ldv + c];
      o[h * ldo + c] = acc;
    }
  }
}

void mla_affine_weighted_sum_ref(int64_t rows, const float* w, const AffineRows& a, int64_t width,
                                 float* o) {
  for (int64_t c = 0; c < width; ++c) {
    float acc = 0.0f;
    for (int64_t r = 0; r < rows; ++r) acc += w[r] * affine_element(a, r, c);
    o[c] = acc;
  }
}

void mla_affine_scores_ref(int64_t rows, const float* x, const AffineRows& a, int64_t width,
                           float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc = 0.0f;
    for (int64_t c = 0; c < width; ++c) acc += x[c] * affine_element(a, r, c);
    s[r] = 1.0f * (acc + 0.0f);  // mla_scores_ref with no second part
  }
}

}  // namespace

int affine_code(const AffineRows& a, int64_t r, int64_t c) {
  const int8_t* row = a.code + static_cast<size_t>(r) * a.ldc;
  if (a.codes == AffineCodes::kInt8) return row[c];
  const auto byte = static_cast<uint8_t>(row[c / 32 * 16 + c % 16]);
  return (c % 32 < 16 ? byte & 15 : byte >> 4) - a.bias;
}

// A(r, c) as dequantize_row computes it: a rounded product, then a rounded sum.
float affine_element(const AffineRows& a, int64_t r, int64_t c) {
  const size_t g = static_cast<size_t>(r) * a.lds + static_cast<size_t>(c / a.group);
  const float v = a.scale[g] * static_cast<float>(affine_code(a, r, c));
  return a.offset != nullptr ? v + a.offset[g] : v;
}

MlaScoresFn isa_mla_scores(Isa isa) {
  return tier_kernel<MlaScoresFn>(isa, mla_scores_ref, KTX_AVX2_KERNEL(avx2::mla_scores),
                                  KTX_AVX512_KERNEL(avx512::mla_scores));
}

MlaWeightedSumFn isa_mla_weighted_sum(Isa isa) {
  return tier_kernel<MlaWeightedSumFn>(isa, mla_weighted_sum_ref,
                                       KTX_AVX2_KERNEL(avx2::mla_weighted_sum),
                                       KTX_AVX512_KERNEL(avx512::mla_weighted_sum));
}

MlaAffineWeightedSumFn isa_mla_affine_weighted_sum(Isa isa) {
  return tier_kernel<MlaAffineWeightedSumFn>(isa, mla_affine_weighted_sum_ref,
                                             KTX_AVX2_KERNEL(avx2::mla_affine_weighted_sum),
                                             KTX_AVX512_KERNEL(avx512::mla_affine_weighted_sum));
}

MlaAffineScoresFn isa_mla_affine_scores(Isa isa) {
  return tier_kernel<MlaAffineScoresFn>(isa, mla_affine_scores_ref,
                                        KTX_AVX2_KERNEL(avx2::mla_affine_scores),
                                        KTX_AVX512_KERNEL(avx512::mla_affine_scores));
}

MlaScoresFn mla_scores_fn() {
  static const MlaScoresFn fn = pick_kernel(isa_mla_scores);
  return fn;
}

MlaWeightedSumFn mla_weighted_sum_fn() {
  static const MlaWeightedSumFn fn = pick_kernel(isa_mla_weighted_sum);
  return fn;
}

MlaAffineWeightedSumFn mla_affine_weighted_sum_fn() {
  static const MlaAffineWeightedSumFn fn = pick_kernel(isa_mla_affine_weighted_sum);
  return fn;
}

MlaAffineScoresFn mla_affine_scores_fn() {
  static const MlaAffineScoresFn fn = pick_kernel(isa_mla_affine_scores);
  return fn;
}

}  // namespace ktx::kernels::cpu
