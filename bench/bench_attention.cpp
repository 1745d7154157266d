// bench_attention: the MLA decode kernels of kernels/cpu/attention.h through every tier this CPU
// has, at one V2-Lite layer's shapes: the split-KV products over a run of 256 cache positions for
// 16 heads (scores with the rope part, rank 512 + 64; the weighted sum, rank 512), and one head's
// W_UK / W_UV products (128 × 512) in three of the affine layouts decode keeps them in (Q4_K: 4-bit
// codes with a scale and an offset per 32; Q6_K: int8 codes, a scale per 16; Q8_0: int8 codes, a
// scale per 32).
//
// One thread. "hot": the same operands every call, in cache: the kernel's compute speed, shown
// next to the f32 FMA peak of one core (measured here). "cold": every call reads the next cache
// run or the next head's matrices from a buffer well above the last-level cache, as decode does
// (its operands are read once per token), shown next to the 1-thread read bandwidth. Before
// timing, each tier's results are checked against the scalar references.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_features.h"
#include "memory_bandwidth.h"
#include "peak_kernels.h"

namespace {

namespace cpu = ktx::kernels::cpu;
using namespace ktx::bench;

constexpr const char* kUsage =
    "usage: bench_attention [--repeats N] [--json]\n"
    "  one thread, MLA decode's kernels at V2-Lite's shapes (16 heads x 256 positions, rank 512\n"
    "  + rope 64; one head's W_UK/W_UV 128x512 in the Q4_K, Q6_K and Q8_0 affine layouts)\n"
    "  through every tier: GFLOP/s in cache (hot, next to one core's f32 FMA peak) and from\n"
    "  memory (cold, GB/s next to the 1-thread read bandwidth), median of N repeats (5)\n";

constexpr int64_t kHeads = 16, kRank = 512, kRope = 64, kPositions = 256, kHeadRows = 128;
constexpr int64_t kWidth = kRank + kRope;  // a cache row: c_kv then k_pe

// One affine layout and the matrices of enough heads to fill the cold buffer.
struct Layout {
  const char* name;
  cpu::AffineCodes codes;
  int group;
  bool offset;
  int bias;
  size_t ldc() const {
    return static_cast<size_t>(codes == cpu::AffineCodes::kNibbles ? kRank / 2 : kRank);
  }
  size_t lds() const { return static_cast<size_t>(kRank / group); }
  // Bytes one head's matrix takes.
  size_t bytes() const {
    return static_cast<size_t>(kHeadRows) * (ldc() + lds() * sizeof(float) * (offset ? 2 : 1));
  }
};

struct AffineData {
  std::vector<int8_t> code;
  std::vector<float> scale, offset;
  cpu::AffineRows rows(const Layout& l, size_t head) const {
    const size_t r = head * static_cast<size_t>(kHeadRows);
    return {code.data() + r * l.ldc(),
            l.ldc(),
            scale.data() + r * l.lds(),
            l.offset ? offset.data() + r * l.lds() : nullptr,
            l.lds(),
            l.group,
            l.codes,
            l.bias};
  }
};

struct Result {
  std::string kernel, tier;
  double hot_us, hot_gflops, cold_us, cold_gbs;
};

// Median seconds per call of fn(i) over calls i = 0, 1, … lasting about `seconds` each repeat.
template <typename Fn>
double seconds_per_call(const Fn& fn, int repeats) {
  std::vector<double> times;
  int64_t i = 0;
  for (int rep = 0; rep < repeats; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    int64_t calls = 0;
    double elapsed = 0;
    do {
      for (int k = 0; k < 16; ++k) fn(i++);
      calls += 16;
      elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    } while (elapsed < 0.05);
    times.push_back(elapsed / static_cast<double>(calls));
  }
  return median(times);
}

bool close(const std::vector<float>& got, const std::vector<float>& want) {
  double err = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    err += (got[i] - static_cast<double>(want[i])) * (got[i] - static_cast<double>(want[i]));
    norm += static_cast<double>(want[i]) * want[i];
  }
  return std::isfinite(err) && err <= 1e-10 * norm;
}

}  // namespace

int main(int argc, char** argv) {
  const BenchArgs args(argc, argv, kUsage);
  std::mt19937 g(std::random_device{}());
  std::normal_distribution<float> normal;
  const uint64_t probe = default_probe_bytes();
  const BandwidthResult memory = measure_read_bandwidth(probe, 1, 3);
  const double peak_gflops =
      __builtin_cpu_supports("avx512f")
          ? measure_peak(peak_fma_zmm, 1, 3).front().best_gops
          : (__builtin_cpu_supports("avx2") ? measure_peak(peak_fma_ymm, 1, 3).front().best_gops
                                            : 0.0);

  // Operands: the queries and weights once; the cache and the affine heads cold-buffer sized.
  std::vector<float> q_lat(kHeads * kRank), q_pe(kHeads * kRope), p(kHeads * kPositions);
  for (float& v : q_lat) v = normal(g);
  for (float& v : q_pe) v = normal(g);
  for (float& v : p) v = std::fabs(normal(g));
  const size_t run_floats = static_cast<size_t>(kPositions * kWidth);
  const size_t runs = std::max<size_t>(2, probe / (run_floats * sizeof(float)));
  std::vector<float> cache(runs * run_floats);
  for (float& v : cache) v = normal(g);
  std::vector<float> w(kHeadRows), x(kRank);
  for (float& v : w) v = normal(g);
  for (float& v : x) v = normal(g);

  const Layout layouts[] = {{"Q4_K", cpu::AffineCodes::kNibbles, 32, true, 0},
                            {"Q6_K", cpu::AffineCodes::kInt8, 16, false, 0},
                            {"Q8_0", cpu::AffineCodes::kInt8, 32, false, 0}};
  std::vector<AffineData> affine;
  std::vector<size_t> heads;  // heads in each layout's cold buffer
  for (const Layout& l : layouts) {
    const size_t n = std::max<size_t>(2, probe / l.bytes());
    AffineData d;
    d.code.resize(n * static_cast<size_t>(kHeadRows) * l.ldc());
    for (int8_t& c : d.code) {
      c = static_cast<int8_t>(l.codes == cpu::AffineCodes::kNibbles ? g() & 0xFF
                                                                    : int(g() % 64) - 32);
    }
    d.scale.resize(n * static_cast<size_t>(kHeadRows) * l.lds());
    for (float& v : d.scale) v = 0.01f * std::fabs(normal(g));
    if (l.offset) {
      d.offset.resize(d.scale.size());
      for (float& v : d.offset) v = 0.01f * normal(g);
    }
    affine.push_back(std::move(d));
    heads.push_back(n);
  }

  std::vector<Result> results;
  int mismatches = 0;
  if (!args.json) {
    std::printf(
        "bench_attention: %s, 1 thread, f32 FMA peak %.1f GFLOP/s, read bandwidth %.1f GB/s; "
        "median of %d\n",
        cpu_model_name().c_str(), peak_gflops, memory.best_gbs, args.repeats);
    std::printf("%-22s %-11s %9s %9s %7s %9s %8s %7s\n", "kernel", "tier", "hot us", "GFLOP/s",
                "% peak", "cold us", "GB/s", "% read");
  }
  auto report = [&](const std::string& kernel, cpu::Isa isa, double flops, double bytes, double hot,
                    double cold) {
    const Result r{kernel,     std::string(cpu::isa_name(isa)),
                   hot * 1e6,  flops / hot / 1e9,
                   cold * 1e6, bytes / cold / 1e9};
    results.push_back(r);
    if (!args.json) {
      std::printf("%-22s %-11s %9.2f %9.1f %6.0f%% %9.2f %8.1f %6.0f%%\n", r.kernel.c_str(),
                  r.tier.c_str(), r.hot_us, r.hot_gflops,
                  peak_gflops > 0 ? 100 * r.hot_gflops / peak_gflops : 0.0, r.cold_us, r.cold_gbs,
                  100 * r.cold_gbs / memory.best_gbs);
      std::fflush(stdout);
    }
  };

  for (cpu::Isa isa : cpu::kAllIsas) {
    if (!cpu::isa_available(isa)) continue;
    const auto scores = cpu::isa_mla_scores(isa);
    const auto sums = cpu::isa_mla_weighted_sum(isa);
    const auto affine_sum = cpu::isa_mla_affine_weighted_sum(isa);
    const auto affine_scores = cpu::isa_mla_affine_scores(isa);
    const bool scalar = isa == cpu::Isa::kScalar;
    const int repeats = scalar ? 1 : args.repeats;

    // Split-KV over one run: scores, then the weighted sum (rank 512 of each row).
    auto run_at = [&](int64_t i, bool cold) {
      return cache.data() + (cold ? static_cast<size_t>(i) % runs : 0) * run_floats;
    };
    std::vector<float> s(p.size()), o(static_cast<size_t>(kHeads * kRank));
    auto do_scores = [&](const float* c) {
      scores(kHeads, kPositions, q_lat.data(), kRank, c, kWidth, kRank, q_pe.data(), kRope,
             c + kRank, kWidth, kRope, 0.1f, s.data(), kPositions);
    };
    auto do_sums = [&](const float* c) {
      sums(kHeads, kPositions, p.data(), kPositions, c, kWidth, kRank, o.data(), kRank, false);
    };
    {
      std::vector<float> want(s.size()), want_o(o.size());
      cpu::isa_mla_scores(cpu::Isa::kScalar)(
          kHeads, kPositions, q_lat.data(), kRank, cache.data(), kWidth, kRank, q_pe.data(), kRope,
          cache.data() + kRank, kWidth, kRope, 0.1f, want.data(), kPositions);
      cpu::isa_mla_weighted_sum(cpu::Isa::kScalar)(kHeads, kPositions, p.data(), kPositions,
                                                   cache.data(), kWidth, kRank, want_o.data(),
                                                   kRank, false);
      do_scores(cache.data());
      do_sums(cache.data());
      if (!close(s, want) || !close(o, want_o)) {
        std::fprintf(stderr, "MISMATCH: %s split-KV kernels differ from the reference\n",
                     std::string(cpu::isa_name(isa)).c_str());
        ++mismatches;
      }
    }
    const double cache_bytes = static_cast<double>(run_floats * sizeof(float));
    report("scores 16x256", isa, 2.0 * kHeads * kPositions * kWidth, cache_bytes,
           seconds_per_call([&](int64_t i) { do_scores(run_at(i, false)); }, repeats),
           seconds_per_call([&](int64_t i) { do_scores(run_at(i, true)); }, repeats));
    report("weighted sum 16x256", isa, 2.0 * kHeads * kPositions * kRank, cache_bytes,
           seconds_per_call([&](int64_t i) { do_sums(run_at(i, false)); }, repeats),
           seconds_per_call([&](int64_t i) { do_sums(run_at(i, true)); }, repeats));

    // One head's W_UK (weighted sum of its rows) and W_UV (a dot per row), per layout.
    for (size_t li = 0; li < std::size(layouts); ++li) {
      const Layout& l = layouts[li];
      const AffineData& d = affine[li];
      std::vector<float> q_out(kRank), v_out(kHeadRows);
      auto head_at = [&](int64_t i, bool cold) {
        return d.rows(l, cold ? static_cast<size_t>(i) % heads[li] : 0);
      };
      {
        std::vector<float> want_q(q_out.size()), want_v(v_out.size());
        cpu::isa_mla_affine_weighted_sum(cpu::Isa::kScalar)(kHeadRows, w.data(), d.rows(l, 0),
                                                            kRank, want_q.data());
        cpu::isa_mla_affine_scores(cpu::Isa::kScalar)(kHeadRows, x.data(), d.rows(l, 0), kRank,
                                                      want_v.data());
        affine_sum(kHeadRows, w.data(), d.rows(l, 0), kRank, q_out.data());
        affine_scores(kHeadRows, x.data(), d.rows(l, 0), kRank, v_out.data());
        if (!close(q_out, want_q) || !close(v_out, want_v)) {
          std::fprintf(stderr, "MISMATCH: %s affine kernels (%s) differ from the reference\n",
                       std::string(cpu::isa_name(isa)).c_str(), l.name);
          ++mismatches;
        }
      }
      const double flops = 2.0 * kHeadRows * kRank, bytes = static_cast<double>(l.bytes());
      report(std::string("W_UK ") + l.name, isa, flops, bytes,
             seconds_per_call(
                 [&](int64_t i) {
                   affine_sum(kHeadRows, w.data(), head_at(i, false), kRank, q_out.data());
                 },
                 repeats),
             seconds_per_call(
                 [&](int64_t i) {
                   affine_sum(kHeadRows, w.data(), head_at(i, true), kRank, q_out.data());
                 },
                 repeats));
      report(std::string("W_UV ") + l.name, isa, flops, bytes,
             seconds_per_call(
                 [&](int64_t i) {
                   affine_scores(kHeadRows, x.data(), head_at(i, false), kRank, v_out.data());
                 },
                 repeats),
             seconds_per_call(
                 [&](int64_t i) {
                   affine_scores(kHeadRows, x.data(), head_at(i, true), kRank, v_out.data());
                 },
                 repeats));
    }
  }

  if (args.json) {
    std::printf(
        "{\"bench\":\"attention\",\"cpu\":%s,\"threads\":1,\"repeats\":%d,"
        "\"f32_peak_gflops_1_thread\":%.3f,\"read_gbs_1_thread\":%.3f,\"mismatches\":%d,"
        "\"results\":[",
        json_string(cpu_model_name()).c_str(), args.repeats, peak_gflops, memory.best_gbs,
        mismatches);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "%s{\"kernel\":%s,\"tier\":\"%s\",\"hot_us\":%.3f,\"hot_gflops\":%.3f,"
          "\"cold_us\":%.3f,\"cold_gbs\":%.3f}",
          i ? "," : "", json_string(r.kernel).c_str(), r.tier.c_str(), r.hot_us, r.hot_gflops,
          r.cold_us, r.cold_gbs);
    }
    std::printf("]}\n");
  }
  return mismatches == 0 ? 0 : 1;
}
