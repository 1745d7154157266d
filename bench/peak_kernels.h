// Peak arithmetic throughput kernels for bench_peak_int8 / bench_peak_bf16: one instruction (or the
// instruction sequence real kernels use) repeated in independent accumulator chains, so only the
// execution ports limit it. Each ISA lives in its own translation unit compiled with its own flags
// (bench/CMakeLists.txt); callers check __builtin_cpu_supports before calling one.
//
// Every kernel runs `iterations` rounds of its unrolled block on the calling thread and returns
// the operations done (one multiply-add = 2 operations, the usual TOPS / FLOPS convention).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"

namespace ktx::bench {

using PeakKernel = uint64_t (*)(uint64_t iterations);

// int8: u8 x s8 products summed into int32 lanes.
uint64_t peak_vpdpbusd_zmm(uint64_t iterations);    // AVX-512 VNNI, 64 MACs per instruction
uint64_t peak_vpmaddubsw_ymm(uint64_t iterations);  // AVX2: vpmaddubsw + vpmaddwd + vpaddd, the
                                                    // sequence VNNI replaces; 32 MACs per triple
// bf16 / f32: products summed into f32 lanes.
uint64_t peak_vdpbf16ps_zmm(uint64_t iterations);  // AVX512_BF16, 32 MACs per instruction
uint64_t peak_fma_zmm(uint64_t iterations);        // AVX-512F vfmadd231ps, 16 MACs
uint64_t peak_fma_ymm(uint64_t iterations);        // AVX2 FMA vfmadd231ps, 8 MACs

struct PeakPoint {
  int threads = 0;
  double best_gops = 0;  // 1e9 operations per second, fastest repeat
  double median_gops = 0;
};

// Runs `kernel` on 1, 2, 4 … max_threads threads at once, each repeat about `seconds` long.
inline std::vector<PeakPoint> measure_peak(PeakKernel kernel, int max_threads, int repeats,
                                           double seconds = 0.2) {
  // Calibrate on one thread: iterations for `seconds`.
  uint64_t iters = 1 << 14;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    kernel(iters);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > 0.02) {
      iters = static_cast<uint64_t>(static_cast<double>(iters) * seconds / s) + 1;
      break;
    }
    iters *= 4;
  }
  // kernel(1) runs one round and returns the operations of one round.
  const double ops_per_thread = static_cast<double>(iters) * static_cast<double>(kernel(1));
  std::vector<PeakPoint> out;
  for (int t : thread_sweep(max_threads)) {
    std::vector<double> rate;
    for (int r = 0; r < repeats; ++r) {
      const double s = run_on_threads(t, [&](int) { kernel(iters); });
      rate.push_back(ops_per_thread * t / s / 1e9);
    }
    std::sort(rate.begin(), rate.end());
    out.push_back({t, rate.back(), rate[rate.size() / 2]});
  }
  return out;
}

// One instruction variant of a ceiling program: measured when the CPU supports it.
struct PeakVariant {
  const char* isa;          // "avx512vnni"
  const char* instruction;  // "vpdpbusd zmm"
  bool supported;           // __builtin_cpu_supports(...) of everything it needs
  PeakKernel kernel;
};

// Measures every supported variant on 1 … threads threads and prints one line per point and a
// summary (or, with json, one object). The headline is the first supported variant: list the
// preferred one first. `what` names the quantity ("int8", "bf16"); `unit` the rate ("GOP/s").
inline int report_peaks(const char* bench, const char* what, const char* unit,
                        const std::vector<PeakVariant>& variants, const BenchArgs& args) {
  struct Done {
    const PeakVariant* v;
    std::vector<PeakPoint> points;
  };
  std::vector<Done> done;
  for (const PeakVariant& v : variants) {
    if (!v.supported) {
      if (!args.json) std::printf("%-11s %-22s not supported by this CPU\n", v.isa, v.instruction);
      continue;
    }
    done.push_back({&v, measure_peak(v.kernel, args.threads, args.repeats)});
    if (!args.json) {
      for (const PeakPoint& p : done.back().points) {
        std::printf("%-11s %-22s %3d thread%s  best %9.1f %s  median %9.1f\n", v.isa, v.instruction,
                    p.threads, p.threads == 1 ? " " : "s", p.best_gops, unit, p.median_gops);
      }
    }
  }
  if (done.empty()) {
    std::fprintf(stderr, "%s: this CPU supports none of the variants\n", bench);
    return 1;
  }
  const Done& head = done.front();
  const double one = head.points.front().best_gops, all = head.points.back().best_gops;
  if (args.json) {
    std::printf(
        "{\"bench\":%s,\"cpu\":%s,\"threads\":%d,\"repeats\":%d,\"isa\":%s,"
        "\"instruction\":%s,\"gops_1_thread\":%.3f,\"gops_all_threads\":%.3f,"
        "\"variants\":[",
        json_string(bench).c_str(), json_string(cpu_model_name()).c_str(), args.threads,
        args.repeats, json_string(head.v->isa).c_str(), json_string(head.v->instruction).c_str(),
        one, all);
    bool first = true;
    for (const PeakVariant& v : variants) {
      std::printf("%s{\"isa\":%s,\"instruction\":%s,\"supported\":%s", first ? "" : ",",
                  json_string(v.isa).c_str(), json_string(v.instruction).c_str(),
                  v.supported ? "true" : "false");
      first = false;
      for (const Done& d : done) {
        if (d.v != &v) continue;
        std::printf(",\"points\":[");
        for (size_t i = 0; i < d.points.size(); ++i) {
          std::printf("%s{\"threads\":%d,\"best_gops\":%.3f,\"median_gops\":%.3f}", i ? "," : "",
                      d.points[i].threads, d.points[i].best_gops, d.points[i].median_gops);
        }
        std::printf("]");
      }
      std::printf("}");
    }
    std::printf("]}\n");
  } else {
    std::printf("peak %s (%s, %s): 1 thread %.1f %s", what, head.v->isa, head.v->instruction, one,
                unit);
    const int n = head.points.back().threads;
    if (n > 1) std::printf(", %d threads %.1f %s", n, all, unit);
    std::printf(" (1 multiply-add = 2 ops)\n");
  }
  return 0;
}

}  // namespace ktx::bench
