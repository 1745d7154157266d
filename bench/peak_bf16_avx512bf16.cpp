// vdpbf16ps at full rate: 16 independent zmm accumulators, both sources fixed registers.
// Compiled with -mavx512f -mavx512bf16 (bench/CMakeLists.txt); call only when the CPU has BF16.
#include "peak_kernels.h"

namespace ktx::bench {

#define KTX_X16(M) \
  M(0) M(1) M(2) M(3) M(4) M(5) M(6) M(7) M(8) M(9) M(10) M(11) M(12) M(13) M(14) M(15)
#define KTX_ZERO(i) "vpxord %%zmm" #i ", %%zmm" #i ", %%zmm" #i "\n\t"
// AT&T order: zmm_i += bf16 pairs of zmm16 . zmm17, two products per f32 lane.
#define KTX_DPBF16(i) "vdpbf16ps %%zmm17, %%zmm16, %%zmm" #i "\n\t"

uint64_t peak_vdpbf16ps_zmm(uint64_t iterations) {
  if (iterations == 0) return 0;
  // bf16 1.0 and ~1e-3 pairs: the sums grow slowly and never reach denormals or infinity.
  const uint32_t a = 0x3f803f80u, b = 0x3a833a83u;
  uint64_t n = iterations;
  asm volatile(
      "vpbroadcastd %[a], %%zmm16\n\t"
      "vpbroadcastd %[b], %%zmm17\n\t"
      KTX_X16(KTX_ZERO)
      "1:\n\t"
      KTX_X16(KTX_DPBF16)
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "cc");
  return iterations * 16 * 32 * 2;  // 16 instructions x 32 bf16 products x 2 operations
}

}  // namespace ktx::bench
