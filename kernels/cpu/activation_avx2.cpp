// activation.h's kernels for AVX2 + FMA: 8-lane f32 vectors.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx2 {
namespace {

struct Lanes {
  using F = __m256;
  using I = __m256i;
  static constexpr int64_t kLanes = 8;
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static F load(const float* p) { return _mm256_loadu_ps(p); }
  // vmaskmovps does not fault on the masked-off lanes.
  static F load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static void store(float* p, F v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, F v, int64_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  static F set1(float x) { return _mm256_set1_ps(x); }
  static F add(F a, F b) { return _mm256_add_ps(a, b); }
  static F sub(F a, F b) { return _mm256_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  static F div(F a, F b) { return _mm256_div_ps(a, b); }
  static F neg(F a) { return _mm256_xor_ps(a, _mm256_set1_ps(-0.0f)); }
  static F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  // vmaxps / vminps return the second operand when either is NaN.
  static F max_lo(F x, F lo) { return _mm256_max_ps(x, lo); }
  static F min_hi(F x, F hi) { return _mm256_min_ps(x, hi); }
  static F nan_keep(F x, F y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q)); }
  static I to_int(F n) { return _mm256_cvtps_epi32(n); }
  static I shr1(I k) { return _mm256_srai_epi32(k, 1); }
  static I isub(I a, I b) { return _mm256_sub_epi32(a, b); }
  static F pow2(I k) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
  }
  struct Sum16 {
    __m256d s[4] = {_mm256_setzero_pd(), _mm256_setzero_pd(), _mm256_setzero_pd(),
                    _mm256_setzero_pd()};
    void add(int64_t j, F v, int64_t k) {
      if (k < 8) v = _mm256_and_ps(v, _mm256_castsi256_ps(mask(k)));
      const int64_t q = j / 4;  // j is 0 or 8
      s[q] = _mm256_add_pd(s[q], _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
      s[q + 1] = _mm256_add_pd(s[q + 1], _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
    }
    double total() const {
      alignas(32) double d[16];
      for (int q = 0; q < 4; ++q) _mm256_store_pd(d + 4 * q, s[q]);
      double t = 0.0;
      for (double x : d) t += x;
      return t;
    }
  };
};

}  // namespace

#include "kernels/cpu/activation_kernels.inc"

}  // namespace ktx::kernels::cpu::avx2
