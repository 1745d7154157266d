// attention.h's dispatch and the scalar references the SIMD tiers are tested against. Compiled
// without -m flags.
#include "kernels/cpu/attention.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu {
namespace {

// code(r, c) and A(r, c) (affine_code, affine_element), inline so that the references and
// affine_decode_rows compile them into their loops; code_of for a layout known in advance.
template <AffineCodes kCodes>
inline int code_of(const AffineRows& a, int64_t r, int64_t c) {
  const int8_t* row = a.code + static_cast<size_t>(r) * a.ldc;
  if constexpr (kCodes == AffineCodes::kInt8) {
    return row[c];
  } else {
    const auto k = static_cast<uint64_t>(c);  // unsigned: the divisions are shifts and masks
    const auto byte = static_cast<uint8_t>(row[k / 32 * 16 + k % 16]);
    return (k % 32 < 16 ? byte & 15 : byte >> 4) - a.bias;
  }
}

inline int code_at(const AffineRows& a, int64_t r, int64_t c) {
  return a.codes == AffineCodes::kInt8 ? code_of<AffineCodes::kInt8>(a, r, c)
                                       : code_of<AffineCodes::kNibbles>(a, r, c);
}

// A(r, c) as dequantize_row computes it: a rounded product, then a rounded sum.
inline float element_at(const AffineRows& a, int64_t r, int64_t c) {
  const size_t g = static_cast<size_t>(r) * a.lds + static_cast<size_t>(c / a.group);
  const float v = a.scale[g] * static_cast<float>(code_at(a, r, c));
  return a.offset != nullptr ? v + a.offset[g] : v;
}

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
    for (int64_t r = 0; r < rows; ++r) acc += w[r] * element_at(a, r, c);
    o[c] = acc;
  }
}

void mla_affine_scores_ref(int64_t rows, const float* x, const AffineRows& a, int64_t width,
                           float* s) {
  for (int64_t r = 0; r < rows; ++r) {
    float acc = 0.0f;
    for (int64_t c = 0; c < width; ++c) acc += x[c] * element_at(a, r, c);
    s[r] = 1.0f * (acc + 0.0f);  // mla_scores_ref with no second part
  }
}

// element_at's steps a group at a time: its codes first (their layout chosen once), then the
// products and sums with the group's scale and offset looked up once (per element, the division
// by the group and the tests took about twice as long).
template <AffineCodes kCodes>
void decode_rows(const AffineRows& a, int64_t rows, int64_t width, float* out) {
  int codes[32];  // a group: 16 or 32 elements
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c0 = 0; c0 < width; c0 += a.group) {
      for (int j = 0; j < a.group; ++j) codes[j] = code_of<kCodes>(a, r, c0 + j);
      const size_t g = static_cast<size_t>(r) * a.lds + static_cast<size_t>(c0 / a.group);
      const float scale = a.scale[g];
      if (a.offset != nullptr) {
        const float offset = a.offset[g];
        for (int j = 0; j < a.group; ++j) *out++ = scale * static_cast<float>(codes[j]) + offset;
      } else {
        for (int j = 0; j < a.group; ++j) *out++ = scale * static_cast<float>(codes[j]);
      }
    }
  }
}

}  // namespace

int affine_code(const AffineRows& a, int64_t r, int64_t c) { return code_at(a, r, c); }

float affine_element(const AffineRows& a, int64_t r, int64_t c) { return element_at(a, r, c); }

void affine_decode_rows(const AffineRows& a, int64_t rows, int64_t width, float* out) {
  if (a.codes == AffineCodes::kInt8) {
    decode_rows<AffineCodes::kInt8>(a, rows, width, out);
  } else {
    decode_rows<AffineCodes::kNibbles>(a, rows, width, out);
  }
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
