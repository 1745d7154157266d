// BF16 × BF16 with AVX512_BF16's vdpbf16ps (two bf16 products per f32 lane and instruction). Its
// own file because only this code may assume AVX512_BF16 (Cooper Lake, Sapphire Rapids, Zen 4).
// vdpbf16ps treats bf16 subnormals as zero and rounds its additions as it likes; the test
// tolerance for float dots covers it.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512bf16 {

namespace {
#include "kernels/cpu/bf16_tile_avx512_bf16.inc"
}  // namespace

float vec_dot_bf16(int64_t n, const void* x, const void* y) {
  float s;
  bf16_tile<1, 1>(n, static_cast<const uint16_t*>(x), 0, static_cast<const uint16_t*>(y), 0, &s, 1);
  return s;
}

}  // namespace ktx::kernels::cpu::avx512bf16
