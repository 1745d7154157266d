// bench_vec_dot: batch-1 matrix-vector products through every kernel tier of kernels/cpu
// (vec_dot.h) for each weight type, against the scalar references: one weight row per call
// (VecDotFn) and, where a tier has one, the multi-row kernel (VecDotRowsFn, "+rows") that
// lib/ops/cpu/linear.cpp uses, and the row-tile kernel (VecDotTilesFn, "+tiles": the matrix
// repacked into tiles of 16 rows, quant/row_tiles.h, as the `repack` option does). Shapes: 2048
// rows × 2048 columns and DeepSeek-V2-Lite's expert gate/up, 1408 rows × 2048 columns. The
// activations are quantized once.
//
// One thread. "hot": one matrix that stays in cache, so the number is the kernel's compute speed.
// "cold": successive copies of the matrix from a buffer well above the last-level cache, so the
// weights stream from memory as in decode; shown next to the machine's 1-thread read bandwidth.
// Variants run interleaved within each repeat and speedups are ratios of medians from the same
// run, so a noisy shared machine moves them less than the absolute GB/s. Before timing, each
// variant's output is checked against the scalar reference (relative error of the whole vector)
// and each multi-row kernel bit for bit against its tier's one-row kernel.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "memory_bandwidth.h"
#include "quant/row_tiles.h"
#include "quant_matrix.h"

namespace {

namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;

constexpr const char* kUsage =
    "usage: bench_vec_dot [--types Q4_0,Q8_0,...] [--repeats N] [--json]\n"
    "  one-thread matrix-vector products, 2048x2048 and 1408x2048, of each weight type (default:\n"
    "  Q4_0,Q5_0,Q8_0,IQ4_NL,Q4_1,Q5_1,F16,BF16,F32,Q4_K,Q5_K,Q6_K,Q2_K,Q3_K,IQ4_XS) through "
    "every\n"
    "  kernel tier this CPU has; GB/s of weights in cache (hot) and streamed from memory (cold),\n"
    "  median of N repeats (5)\n";

const TensorType kDefaultTypes[] = {
    TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0, TensorType::IQ4_NL, TensorType::Q4_1,
    TensorType::Q5_1, TensorType::F16,  TensorType::BF16, TensorType::F32,    TensorType::Q4_K,
    TensorType::Q5_K, TensorType::Q6_K, TensorType::Q2_K, TensorType::Q3_K,   TensorType::IQ4_XS};

// One way of computing a GEMV: a one-row kernel called per row, or a multi-row kernel.
struct Variant {
  std::string name;
  cpu::VecDotFn one = nullptr;
  cpu::VecDotRowsFn rows = nullptr;
  cpu::VecDotTilesFn tiles = nullptr;  // reads the repacked copy of the matrix

  void gemv(const uint8_t* w, size_t row_bytes, int64_t n_rows, int64_t cols, const void* y,
            float* out) const {
    if (tiles != nullptr) {
      const int64_t n_tiles = n_rows / ktx::quant::kTileRows;
      tiles(cols, w, row_bytes * ktx::quant::kTileRows, n_tiles, y, out);
      return;
    }
    if (rows != nullptr) {
      rows(cols, w, row_bytes, n_rows, y, out);
      return;
    }
    for (int64_t r = 0; r < n_rows; ++r)
      out[r] = one(cols, w + static_cast<size_t>(r) * row_bytes, y);
  }
};

std::vector<Variant> variants(TensorType t) {
  std::vector<Variant> out;
  for (cpu::Isa isa : cpu::kAllIsas) {
    const cpu::VecDotFn one = cpu::isa_vec_dot(isa, t);
    if (one == nullptr) continue;  // tier missing on this CPU/build, or no kernel for the type
    const std::string name(cpu::isa_name(isa));
    out.push_back({name, one, nullptr});
    if (const cpu::VecDotRowsFn rows = cpu::isa_vec_dot_rows(isa, t)) {
      out.push_back({name + "+rows", one, rows});
    }
    if (const cpu::VecDotTilesFn tiles = cpu::isa_vec_dot_tiles(isa, t)) {
      out.push_back({name + "+tiles", one, nullptr, tiles});
    }
  }
  if (t == TensorType::BF16) {
    if (const cpu::VecDotFn fn = cpu::avx512bf16_vec_dot_bf16())
      out.push_back({"avx512bf16", fn, nullptr});
  }
  return out;
}

using Clock = std::chrono::steady_clock;

// Seconds per product, running products (on successive copies among `copies` matrices `stride`
// bytes apart) until at least `min_seconds` have passed.
double seconds_per_gemv(const Variant& v, const uint8_t* base, size_t stride, int copies,
                        size_t& next, size_t row_bytes, int64_t rows, int64_t cols, const void* y,
                        float* out, double min_seconds) {
  int passes = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  do {
    v.gemv(base + (next % static_cast<size_t>(copies)) * stride, row_bytes, rows, cols, y, out);
    ++next;
    ++passes;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / passes;
}

struct Result {
  std::string type, variant;
  int64_t rows, cols;
  double hot_gbs, hot_speedup, cold_gbs, cold_speedup;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  BenchArgs args(argc, argv, kUsage, "--types");
  std::vector<TensorType> types;
  if (args.list.empty()) {
    types.assign(std::begin(kDefaultTypes), std::end(kDefaultTypes));
  } else {
    std::stringstream in(args.list);
    std::string item;
    while (std::getline(in, item, ',')) {
      const auto type = ktx::type_from_name(item);
      if (!type || !ktx::quant::vec_dot_type(*type)) {
        BenchArgs::fail(kUsage, "--types: '" + item + "' is not a type with a dot product");
      }
      types.push_back(*type);
    }
  }

  const uint64_t probe = default_probe_bytes();
  const BandwidthResult memory = measure_read_bandwidth(probe, 1, 3);
  if (!args.json) {
    std::printf(
        "bench_vec_dot: %s, dispatch %s, LLC %.0f MiB, 1-thread memory read %.1f GB/s; median "
        "of %d\n",
        cpu_model_name().c_str(), std::string(cpu::active_isa()).c_str(),
        static_cast<double>(llc_bytes()) / (1 << 20), memory.best_gbs, args.repeats);
    std::printf("%-7s %-10s %-16s %9s %8s %9s %8s\n", "type", "matrix", "kernel", "hot GB/s",
                "x scalar", "cold GB/s", "x scalar");
  }

  std::mt19937_64 g(std::random_device{}());
  const int64_t shapes[2][2] = {{2048, 2048}, {1408, 2048}};  // rows, columns
  std::vector<Result> results;
  int mismatches = 0;
  for (TensorType t : types) {
    const std::string type_name(ktx::type_name(t));
    const TensorType yt = *ktx::quant::vec_dot_type(t);
    const std::vector<Variant> vs = variants(t);  // vs[0] is the scalar reference
    for (const auto& shape : shapes) {
      const int64_t rows = shape[0], cols = shape[1];
      const size_t row_bytes = ktx::row_size(t, cols);
      const std::vector<uint8_t> w = make_matrix(t, rows, cols, g);
      std::vector<float> x(static_cast<size_t>(cols));
      std::normal_distribution<float> normal;
      for (float& v : x) v = normal(g);
      std::vector<uint8_t> y(ktx::row_size(yt, cols));
      ktx::quant::quantize_row(yt, x.data(), y.data(), cols);
      // The same matrix in row tiles, for the +tiles variants (both shapes have 16k rows), page
      // aligned as ktx's repacked copies are.
      const HugeBuffer wt(w.size());
      if (ktx::quant::has_row_tiles(t))
        ktx::quant::pack_row_tiles(t, cols, rows, w.data(), wt.data);
      auto matrix_of = [&](const Variant& v) { return v.tiles ? wt.data : w.data(); };

      // Checks: every variant near the reference; a multi-row kernel equal to its one-row one.
      std::vector<float> want(static_cast<size_t>(rows)), got(want.size()), one(want.size());
      vs[0].gemv(w.data(), row_bytes, rows, cols, y.data(), want.data());
      for (const Variant& v : vs) {
        std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
        v.gemv(matrix_of(v), row_bytes, rows, cols, y.data(), got.data());
        double err = 0, norm = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          err += (got[i] - static_cast<double>(want[i])) * (got[i] - static_cast<double>(want[i]));
          norm += static_cast<double>(want[i]) * want[i];
        }
        bool ok = std::isfinite(err) && err <= 1e-10 * norm;
        if (v.rows != nullptr) {
          const Variant single{v.name, v.one, nullptr};
          single.gemv(w.data(), row_bytes, rows, cols, y.data(), one.data());
          ok = ok && std::memcmp(one.data(), got.data(), got.size() * sizeof(float)) == 0;
        }
        if (v.tiles != nullptr) {  // bit for bit the reference
          ok = ok && std::memcmp(want.data(), got.data(), got.size() * sizeof(float)) == 0;
        }
        if (!ok) {
          std::fprintf(stderr, "MISMATCH: %s %s differs from the reference\n", type_name.c_str(),
                       v.name.c_str());
          ++mismatches;
        }
      }

      // Cold: copies of the matrix filling the probe buffer, used round-robin.
      const size_t matrix_bytes = row_bytes * static_cast<size_t>(rows);
      const int copies = static_cast<int>(std::max<uint64_t>(2, probe / matrix_bytes));
      const HugeBuffer cold(matrix_bytes * static_cast<size_t>(copies));
      const bool tiles = ktx::quant::has_row_tiles(t);
      const HugeBuffer cold_tiles(tiles ? cold.bytes : 1);
      for (int c = 0; c < copies; ++c) {
        std::memcpy(cold.data + matrix_bytes * static_cast<size_t>(c), w.data(), matrix_bytes);
        if (tiles) {
          std::memcpy(cold_tiles.data + matrix_bytes * static_cast<size_t>(c), wt.data,
                      matrix_bytes);
        }
      }

      std::vector<std::vector<double>> hot_s(vs.size()), cold_s(vs.size());
      size_t hot_next = 0, cold_next = 0;
      for (int rep = 0; rep < args.repeats; ++rep) {
        for (size_t v = 0; v < vs.size(); ++v) {
          hot_s[v].push_back(seconds_per_gemv(vs[v], matrix_of(vs[v]), 0, 1, hot_next, row_bytes,
                                              rows, cols, y.data(), got.data(), 0.01));
          const uint8_t* cold_base = vs[v].tiles ? cold_tiles.data : cold.data;
          cold_s[v].push_back(seconds_per_gemv(vs[v], cold_base, matrix_bytes, copies, cold_next,
                                               row_bytes, rows, cols, y.data(), got.data(), 0.01));
        }
      }
      const double hot_ref = median(hot_s[0]), cold_ref = median(cold_s[0]);
      for (size_t v = 0; v < vs.size(); ++v) {
        const double hot = median(hot_s[v]), cold_t = median(cold_s[v]);
        const Result r{type_name,
                       vs[v].name,
                       rows,
                       cols,
                       static_cast<double>(matrix_bytes) / hot / 1e9,
                       hot_ref / hot,
                       static_cast<double>(matrix_bytes) / cold_t / 1e9,
                       cold_ref / cold_t};
        results.push_back(r);
        if (!args.json) {
          const std::string matrix = std::to_string(rows) + "x" + std::to_string(cols);
          std::printf("%-7s %-10s %-16s %9.2f %8.2f %9.2f %8.2f\n", r.type.c_str(), matrix.c_str(),
                      r.variant.c_str(), r.hot_gbs, r.hot_speedup, r.cold_gbs, r.cold_speedup);
          std::fflush(stdout);
        }
      }
    }
  }

  if (args.json) {
    std::printf(
        "{\"bench\":\"vec_dot\",\"cpu\":%s,\"dispatch\":\"%s\",\"threads\":1,\"repeats\":%d,"
        "\"read_gbs_1_thread\":%.3f,\"mismatches\":%d,\"results\":[",
        json_string(cpu_model_name()).c_str(), std::string(cpu::active_isa()).c_str(), args.repeats,
        memory.best_gbs, mismatches);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "%s{\"type\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"kernel\":\"%s\",\"hot_gbs\":%.3f,"
          "\"hot_speedup\":%.3f,\"cold_gbs\":%.3f,\"cold_speedup\":%.3f}",
          i ? "," : "", r.type.c_str(), static_cast<long long>(r.rows),
          static_cast<long long>(r.cols), r.variant.c_str(), r.hot_gbs, r.hot_speedup, r.cold_gbs,
          r.cold_speedup);
    }
    std::printf("]}\n");
  }
  return mismatches == 0 ? 0 : 1;
}
