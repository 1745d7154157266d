// bench_peak_int8: the machine's int8 multiply-add ceiling, what quantized matrix kernels (Q8
// activations x Q4/Q8 weights) can reach at best — prefill's compute roof. AVX-512 VNNI vpdpbusd
// when the CPU has it, and the AVX2 vpmaddubsw sequence (the fallback kernels' inner loop).
#include "bench_util.h"
#include "peak_kernels.h"

namespace {

constexpr const char* kUsage =
    "usage: bench_peak_int8 [-t N] [--repeats N] [--json]\n"
    "  int8 multiply-add throughput on 1, 2, 4 ... N threads (default: all hardware threads)\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  const BenchArgs args(argc, argv, kUsage);
  __builtin_cpu_init();
  const std::vector<PeakVariant> variants = {
      {"avx512vnni", "vpdpbusd zmm",
       __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw"),
       peak_vpdpbusd_zmm},
      {"avx2", "vpmaddubsw+vpmaddwd ymm", __builtin_cpu_supports("avx2") != 0, peak_vpmaddubsw_ymm},
  };
  return report_peaks("peak_int8", "int8", "GOP/s", variants, args);
}
