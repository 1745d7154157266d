// GEMM tiles for float weights (F32, F16, BF16) against panels of activations in the weight's own
// dot type, for the AVX2 tier: gemm_float_avx512.cpp's scheme on 8-lane vectors. Each output is
// computed exactly as the AVX2 one-row kernel computes it (float_tile_avx2.inc is both), so a
// batch gives the numbers of the same tokens one at a time, bit for bit. Tiles of 2 rows × 2
// tokens: every loaded (and, for F16 / BF16, converted) vector feeds two fused multiply-adds.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx2 {
namespace {

#include "kernels/cpu/common_avx2.inc"
#include "kernels/cpu/float_tile_avx2.inc"
#include "kernels/cpu/gemm_float_driver.inc"

}  // namespace

KTX_DEFINE_GEMM_KERNEL(gemm_f32, gemm_float<F32L>)
KTX_DEFINE_GEMM_KERNEL(gemm_f16, gemm_float<F16L>)
KTX_DEFINE_GEMM_KERNEL(gemm_bf16, gemm_float<BF16L>)

}  // namespace ktx::kernels::cpu::avx2
