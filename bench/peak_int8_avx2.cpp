// The AVX2 int8 dot product as kernels without VNNI write it: vpmaddubsw (u8 x s8 -> pairs summed
// to int16), vpmaddwd with ones (-> int32), vpaddd into the accumulator. Six independent slots
// fill 15 of the 16 ymm registers. Compiled with -mavx2 -mfma (bench/CMakeLists.txt).
#include "peak_kernels.h"

namespace ktx::bench {

#define KTX_X6(M) M(0, 6) M(1, 7) M(2, 8) M(3, 9) M(4, 10) M(5, 11)
#define KTX_ZERO(acc, tmp) "vpxor %%ymm" #acc ", %%ymm" #acc ", %%ymm" #acc "\n\t"
// AT&T order: tmp = u8(ymm12) . s8(ymm13) pairwise; tmp = tmp . ones(ymm14); acc += tmp.
#define KTX_SLOT(acc, tmp)                      \
  "vpmaddubsw %%ymm13, %%ymm12, %%ymm" #tmp     \
  "\n\t"                                        \
  "vpmaddwd %%ymm14, %%ymm" #tmp ", %%ymm" #tmp \
  "\n\t"                                        \
  "vpaddd %%ymm" #tmp ", %%ymm" #acc ", %%ymm" #acc "\n\t"

uint64_t peak_vpmaddubsw_ymm(uint64_t iterations) {
  if (iterations == 0) return 0;
  const uint32_t a = 0x01020304u, b = 0x05060708u, one = 0x00010001u;
  uint64_t n = iterations;
  asm volatile(
      "vpbroadcastd %[a], %%ymm12\n\t"
      "vpbroadcastd %[b], %%ymm13\n\t"
      "vpbroadcastd %[one], %%ymm14\n\t"
      KTX_X6(KTX_ZERO)
      "1:\n\t"
      KTX_X6(KTX_SLOT)
      "dec %[n]\n\t"
      "jnz 1b\n\t"
      "vzeroupper\n\t"
      : [n] "+r"(n)
      : [a] "m"(a), [b] "m"(b), [one] "m"(one)
      : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8", "xmm9", "xmm10",
        "xmm11", "xmm12", "xmm13", "xmm14", "cc");
  return iterations * 6 * 32 * 2;  // 6 slots x 32 u8*s8 products x 2 operations
}

}  // namespace ktx::bench
