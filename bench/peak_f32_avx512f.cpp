// f32 FMA at full rate on zmm: 16 independent accumulators (latency 4 x 2 ports needs 8).
// Compiled with -mavx512f (bench/CMakeLists.txt); call only when the CPU has AVX-512F.
#include "peak_kernels.h"

namespace ktx::bench {

#define KTX_X16(M) \
  M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define KTX_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
#define KTX_FMA(i) "vfmadd231ps %%zmm17, %%zmm16, %%zmm" #i "\n\t"  // zmm_i += zmm16 * zmm17

uint64_t peak_fma_zmm(uint64_t iterations) {
  if (iterations == 0) return 0;
  const float a = 1.0f, b = 1e-3f;  // sums grow slowly: no denormals, no infinities
  uint64_t n = iterations;
  asm volatile(
      "vbroadcastss %[a], %%zmm16\n\t"
      "vbroadcastss %[b], %%zmm17\n\t"
      KTX_X16(KTX_ZERO)
      "1:\n\t"
      KTX_X16(KTX_FMA)
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc");
  return iterations * 16 * 16 * 2;  // 16 instructions x 16 lanes x 2 operations
}

}  // namespace ktx::bench
