// GEMM tiles for BF16 weights with AVX512_BF16's vdpbf16ps, against BF16 panels (gemm.h). Each
// output is computed exactly as the one-row kernel (legacy_avx512_bf16.cpp) computes it: four
// accumulators over 128-element steps, a masked tail into the first, the same pairwise add and
// reduction, so a batch gives the numbers of the same tokens one at a time, bit for bit. Tiles of
// 2 rows × 2 tokens (16 accumulators), as gemm_float_avx512.cpp.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512bf16 {
namespace {

#include "kernels/cpu/bf16_tile_avx512_bf16.inc"

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
    for (; t + 2 <= tokens; t += 2) bf16_tile<2, 2>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
    if (t < tokens) bf16_tile<2, 1>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
  }
  if (r < rows) {
    const uint16_t* w = x + static_cast<size_t>(r) * ws;
    int64_t t = 0;
    for (; t + 2 <= tokens; t += 2) bf16_tile<1, 2>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
    if (t < tokens) bf16_tile<1, 1>(n, w, ws, token(t), ys, out + t * ldo + r, ldo);
  }
}

}  // namespace ktx::kernels::cpu::avx512bf16
