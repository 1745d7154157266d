// bench_peak_bf16: the machine's bf16 multiply-add ceiling (vdpbf16ps, AVX512_BF16) — the roof for
// kernels that keep activations and dequantized weights in bf16 — and the f32 FMA peaks beside it
// (AVX-512F zmm, AVX2 ymm), which are the roof when the CPU has no BF16. The headline is the
// first supported of: bf16, f32 zmm, f32 ymm; the output says which.
#include "bench_util.h"
#include "peak_kernels.h"

namespace {

constexpr const char* kUsage =
    "usage: bench_peak_bf16 [-t N] [--repeats N] [--json]\n"
    "  bf16 dot-product (else f32 FMA) throughput on 1, 2, 4 ... N threads (default: all)\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  const BenchArgs args(argc, argv, kUsage);
  __builtin_cpu_init();
  const bool avx512f = __builtin_cpu_supports("avx512f") != 0;
  const std::vector<PeakVariant> variants = {
      {"avx512bf16", "vdpbf16ps zmm", avx512f && __builtin_cpu_supports("avx512bf16"),
       peak_vdpbf16ps_zmm},
      {"avx512f", "vfmadd231ps zmm (f32)", avx512f, peak_fma_zmm},
      {"avx2", "vfmadd231ps ymm (f32)",
       __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), peak_fma_ymm},
  };
  return report_peaks("peak_bf16", "bf16/f32 FLOP", "GFLOP/s", variants, args);
}
