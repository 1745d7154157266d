// f32 FMA at full rate on ymm: 14 independent accumulators in the 16 ymm registers.
// Compiled with -mavx2 -mfma (bench/CMakeLists.txt); call only when the CPU has AVX2 and FMA.
#include "peak_kernels.h"

namespace ktx::bench {

#define KTX_X14(M) M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13)
#define KTX_ZERO(i) "vxorps %%ymm" #i ", %%ymm" #i ", %%ymm" #i "\n\t"
#define KTX_FMA(i) "vfmadd231ps %%ymm15, %%ymm14, %%ymm" #i "\n\t"  // ymm_i += ymm14 * ymm15

uint64_t peak_fma_ymm(uint64_t iterations) {
  if (iterations == 0) return 0;
  const float a = 1.0f, b = 1e-3f;
  uint64_t n = iterations;
  asm volatile(
      "vbroadcastss %[a], %%ymm14\n\t"
      "vbroadcastss %[b], %%ymm15\n\t"
      KTX_X14(KTX_ZERO)
      "1:\n\t"
      KTX_X14(KTX_FMA)
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "cc");
  return iterations * 14 * 8 * 2;  // 14 instructions x 8 lanes x 2 operations
}

}  // namespace ktx::bench
