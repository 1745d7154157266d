// BF16 × BF16 with AVX512_BF16's vdpbf16ps (two bf16 products per f32 lane and instruction). Its
// own file because only this code may assume AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4).
// vdpbf16ps treats bf16 subnormals as zero and rounds its additions as it likes; the test
// tolerance for float dots covers it.
#include <immintrin.h>

#include <cstdint>

// GCC 12's AVX-512 headers trip its own -Wuninitialized (see legacy_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512bf16 {

float vec_dot_bf16(int64_t n, const void* xv, const void* yv) {
  const auto* x = static_cast<const uint16_t*>(xv);
  const auto* y = static_cast<const uint16_t*>(yv);
  __m512 acc[4] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps(),
                   _mm512_setzero_ps()};
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
    for (int k = 0; k < 4; ++k) {
      const __m512i a = _mm512_loadu_si512(x + i + 32 * k);
      const __m512i b = _mm512_loadu_si512(y + i + 32 * k);
      acc[k] = _mm512_dpbf16_ps(acc[k], (__m512bh)a, (__m512bh)b);
    }
  }
  for (; i < n; i += 32) {
    const int64_t left = n - i;
    const __mmask32 m = left >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
    const __m512i a = _mm512_maskz_loadu_epi16(m, x + i);
    const __m512i b = _mm512_maskz_loadu_epi16(m, y + i);
    acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)a, (__m512bh)b);
  }
  const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]));
  return _mm512_reduce_add_ps(s);
}

}  // namespace ktx::kernels::cpu::avx512bf16
