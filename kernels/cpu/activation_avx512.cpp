// activation.h's kernels for AVX-512: 16-lane f32 vectors.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

struct Lanes {
  using F = __m512;
  using I = __m512i;
  static constexpr int64_t kLanes = 16;
  static __mmask16 mask(int64_t n) { return static_cast<__mmask16>((1u << n) - 1); }
  static F load(const float* p) { return _mm512_loadu_ps(p); }
  static F load_n(const float* p, int64_t n) { return _mm512_maskz_loadu_ps(mask(n), p); }
  static void store(float* p, F v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, F v, int64_t n) { _mm512_mask_storeu_ps(p, mask(n), v); }
  static F set1(float x) { return _mm512_set1_ps(x); }
  static F add(F a, F b) { return _mm512_add_ps(a, b); }
  static F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static F div(F a, F b) { return _mm512_div_ps(a, b); }
  static F neg(F a) { return _mm512_xor_ps(a, _mm512_set1_ps(-0.0f)); }
  static F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  // vmaxps / vminps return the second operand when either is NaN.
  static F max_lo(F x, F lo) { return _mm512_max_ps(x, lo); }
  static F min_hi(F x, F hi) { return _mm512_min_ps(x, hi); }
  static F nan_keep(F x, F y) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
  }
  static I to_int(F n) { return _mm512_cvtps_epi32(n); }
  static I shr1(I k) { return _mm512_srai_epi32(k, 1); }
  static I isub(I a, I b) { return _mm512_sub_epi32(a, b); }
  static F pow2(I k) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(k, _mm512_set1_epi32(127)), 23));
  }
  struct Sum16 {
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    void add(int64_t /*j: always 0*/, F v, int64_t k) {
      if (k < 16) v = _mm512_maskz_mov_ps(mask(k), v);
      lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
      hi = _mm512_add_pd(
          hi, _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    double total() const {
      alignas(64) double s[16];
      _mm512_store_pd(s, lo);
      _mm512_store_pd(s + 8, hi);
      double t = 0.0;
      for (double d : s) t += d;
      return t;
    }
  };
};

}  // namespace

#include "kernels/cpu/activation_kernels.inc"

}  // namespace ktx::kernels::cpu::avx512
