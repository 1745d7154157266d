// GEMM tiles for float weights (F32, F16, BF16) against panels of activations stored in the
// weight's own dot type (quant::vec_dot_type: F32, F16, BF16), for the AVX-512 tier. Each output
// is computed exactly as the one-row kernel (legacy_avx512.cpp, dot_float) computes it: four
// accumulators over 64-element steps, a masked tail into the first, the same pairwise add and
// reduction. So a batch gives the numbers of the same tokens one at a time, bit for bit. A tile is
// 2 rows × 2 tokens (16 accumulators): every loaded vector feeds two fused multiply-adds, where
// the one-row kernel loads two vectors for one.
//
// Panels for these types are plain copies: kGemmTokens rows of n elements one after another, the
// rows past the batch's end zero (gemm.h). The packers live here with the kernels they feed.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

// GCC 12's AVX-512 headers trip its own -Wuninitialized (see gemm_kquants_avx512.cpp).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

#include "kernels/cpu/float_tile_avx512.inc"

// Tiles of 2 rows × 2 tokens over rows × tokens; a pair of tokens never straddles two panels
// (kGemmTokens is even).
template <typename L>
void gemm_float(int64_t n, const void* xv, size_t x_stride, int64_t rows, const void* panels,
                int64_t tokens, float* out, size_t ldo) {
  const auto* x = static_cast<const uint8_t*>(xv);
  const auto* p = static_cast<const uint8_t*>(panels);
  const size_t y_stride = static_cast<size_t>(n) * L::kBytes;
  const size_t panel_bytes =
      gemm_panel_bytes(L::kBytes == 4 ? TensorType::F32 : TensorType::F16, n);
  const auto token = [&](int64_t t) {
    return p + static_cast<size_t>(t / kGemmTokens) * panel_bytes +
           static_cast<size_t>(t % kGemmTokens) * y_stride;
  };
  int64_t r = 0;
  for (; r + 2 <= rows; r += 2) {
    const uint8_t* w = x + static_cast<size_t>(r) * x_stride;
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) {
      float_tile<L, 2, 2>(n, w, x_stride, token(t), y_stride, out + t * ldo + r, ldo);
    }
    if (t < tokens) float_tile<L, 2, 1>(n, w, x_stride, token(t), y_stride, out + t * ldo + r, ldo);
  }
  if (r < rows) {
    const uint8_t* w = x + static_cast<size_t>(r) * x_stride;
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) {
      float_tile<L, 1, 2>(n, w, x_stride, token(t), y_stride, out + t * ldo + r, ldo);
    }
    if (t < tokens) float_tile<L, 1, 1>(n, w, x_stride, token(t), y_stride, out + t * ldo + r, ldo);
  }
}

void pack_rows(int64_t n, const void* const* y, int64_t count, void* panel, size_t elem,
               size_t panel_bytes) {
  auto* out = static_cast<uint8_t*>(panel);
  const size_t row = static_cast<size_t>(n) * elem;
  for (int64_t i = 0; i < count; ++i) std::memcpy(out + static_cast<size_t>(i) * row, y[i], row);
  const size_t used = static_cast<size_t>(count) * row;
  std::memset(out + used, 0, panel_bytes - used);
}

}  // namespace

KTX_DEFINE_GEMM_KERNEL(gemm_f32, gemm_float<F32L>)
KTX_DEFINE_GEMM_KERNEL(gemm_f16, gemm_float<F16L>)
KTX_DEFINE_GEMM_KERNEL(gemm_bf16, gemm_float<BF16L>)

void gemm_pack_f32(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_rows(n, y, count, panel, 4, gemm_panel_bytes(TensorType::F32, n));
}

void gemm_pack_16bit(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_rows(n, y, count, panel, 2, gemm_panel_bytes(TensorType::F16, n));
}

}  // namespace ktx::kernels::cpu::avx512
