// GEMM tiles for BF16 weights with AVX512_BF16's vdpbf16ps, against BF16 panels (gemm.h). Each
// output is computed exactly as the one-row kernel (legacy_avx512_bf16.cpp) computes it: four
// accumulators over 128-element steps, a masked tail into the first, the same pairwise add and
// reduction, so a batch gives the numbers of the same tokens one at a time, bit for bit. Tiles of
// 2 rows × 2 tokens (16 accumulators), as gemm_float_avx512.cpp.
#include <immintrin.h>

#include <cstdint>

// GCC 12's AVX-512 headers trip its own -Wuninitialized (see gemm_kquants_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512bf16 {
namespace {

template <int R, int T>
void tile(int64_t n, const uint16_t* w, size_t w_stride, const uint16_t* y, size_t y_stride,
          float* out, size_t ldo) {
  __m512 acc[R][T][4];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      for (int k = 0; k < 4; ++k) acc[r][t][k] = _mm512_setzero_ps();
    }
  }
  int64_t i = 0;
  for (; i + 128 <= n; i += 128) {
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i wv[R], yv[T];
      for (int r = 0; r < R; ++r) wv[r] = _mm512_loadu_si512(w + r * w_stride + i + 32 * k);
      for (int t = 0; t < T; ++t) yv[t] = _mm512_loadu_si512(y + t * y_stride + i + 32 * k);
      for (int r = 0; r < R; ++r) {
        for (int t = 0; t < T; ++t) {
          acc[r][t][k] = _mm512_dpbf16_ps(acc[r][t][k], (__m512bh)wv[r], (__m512bh)yv[t]);
        }
      }
    }
  }
  for (; i < n; i += 32) {
    const int64_t left = n - i;
    const __mmask32 m = left >= 32 ? ~__mmask32{0} : static_cast<__mmask32>((1u << left) - 1);
    __m512i wv[R], yv[T];
    for (int r = 0; r < R; ++r) wv[r] = _mm512_maskz_loadu_epi16(m, w + r * w_stride + i);
    for (int t = 0; t < T; ++t) yv[t] = _mm512_maskz_loadu_epi16(m, y + t * y_stride + i);
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        acc[r][t][0] = _mm512_dpbf16_ps(acc[r][t][0], (__m512bh)wv[r], (__m512bh)yv[t]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      const __m512 s = _mm512_add_ps(_mm512_add_ps(acc[r][t][0], acc[r][t][1]),
                                     _mm512_add_ps(acc[r][t][2], acc[r][t][3]));
      out[static_cast<size_t>(t) * ldo + static_cast<size_t>(r)] = _mm512_reduce_add_ps(s);
    }
  }
}

}  // namespace

void gemm_bf16(int64_t n, const void* xv, size_t x_stride, int64_t rows, const void* panels,
               int64_t tokens, float* out, size_t ldo) {
  const auto* x = static_cast<const uint16_t*>(xv);
  const auto* p = static_cast<const uint16_t*>(panels);
  const size_t ws = x_stride / 2, ys = static_cast<size_t>(n);
  const size_t panel = gemm_panel_bytes(TensorType::BF16, n) / 2;
  const auto token = [&](int64_t t) {
    return p + static_cast<size_t>(t / kGemmTokens) * panel +
           static_cast<size_t>(t % kGemmTokens) * ys;
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const uint16_t* w = x + static_cast<size_t>(r) * ws;
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) tile<2, 2>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
    if (t < tokens) tile<2, 1>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
  }
  if (r < rows) {
    const uint16_t* w = x + static_cast<size_t>(r) * ws;
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) tile<1, 2>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
    if (t < tokens) tile<1, 1>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
  }
}

}  // namespace ktx::kernels::cpu::avx512bf16
