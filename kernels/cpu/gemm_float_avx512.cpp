// GEMM tiles for float weights (F32, F16, BF16) against panels of activations stored in the
// weight's own dot type (quant::vec_dot_type: F32, F16, BF16), for the AVX-512 tier. Each output
// is computed exactly as the one-row kernel (legacy_avx512.cpp, dot_float) computes it: four
// accumulators over 64-element steps, a masked tail into the first, the same pairwise add and
// reduction. So a batch gives the numbers of the same tokens one at a time, bit for bit. A tile is
// 2 rows × 2 tokens (16 accumulators): every loaded vector feeds two fused multiply-adds, where
// the one-row kernel loads two vectors for one.
//
// Panels for these types are plain copies: kGemmTokens rows of n elements one after another, the
// rows past the batch's end zero (gemm.h). The packer is gemm_dispatch.cpp's.
#include <immintrin.h>

#include <cstdint>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

#include "kernels/cpu/float_tile_avx512.inc"
#include "kernels/cpu/gemm_float_driver.inc"

}  // namespace

KTX_DEFINE_GEMM_KERNEL(gemm_f32, gemm_float<F32L>)
KTX_DEFINE_GEMM_KERNEL(gemm_f16, gemm_float<F16L>)
KTX_DEFINE_GEMM_KERNEL(gemm_bf16, gemm_float<BF16L>)

}  // namespace ktx::kernels::cpu::avx512
