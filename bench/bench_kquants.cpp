// bench_kquants: the K-quant × Q8_K dot products (kernels/cpu/k_quants_*.cpp) against the scalar
// references, as batch-1 decode runs them: a matrix-vector product one weight row at a time, the
// activations quantized to Q8_K once. DeepSeek-V2-Lite's expert shapes: 2048 rows × 2048 columns
// and 1408 rows × 2048 columns (gate/up, 2048 in → 1408 out; the 1408-wide down rows are not a
// multiple of 256, so files store them as Q5_0/Q8_0).
//
// One thread. "hot": the matrix stays in cache (a few MB), so the number is the kernel's compute
// speed. "cold": a new copy of the matrix each pass from a buffer ≥ 4x the last-level cache, so
// weights stream from memory as in decode; printed next to the machine's 1-thread read bandwidth.
// Every variant's outputs are checked bit for bit against the reference before timing. Variants
// run interleaved within each repeat and speedups are ratios of medians measured in the same run,
// so a noisy shared machine shifts them less than the absolute GB/s.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "kernels/cpu/isa_kernels.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "memory_bandwidth.h"
#include "quant/blocks.h"
#include "quant/formats.h"
#include "quant/fp16.h"

namespace {

using ktx::TensorType;
using Fn = float (*)(int64_t n, const void* x, const void* y);

constexpr const char* kUsage =
    "usage: bench_kquants [--types Q4_K,Q5_K,...] [--repeats N] [--json]\n"
    "  one-thread matrix-vector products, 2048x2048 and 1408x2048, of each K-quant type (default\n"
    "  Q4_K,Q5_K,Q6_K,Q2_K,Q3_K,IQ4_XS) with every ISA this CPU has, against the scalar "
    "reference;\n"
    "  GB/s of weights in cache (hot) and streamed from memory (cold), median of N repeats (7)\n";

struct Variant {
  const char* isa;
  bool supported;
  Fn fn;
};

struct TypeInfo {
  TensorType type;
  size_t d_offset, dmin_offset;  // f16 scales in a block (dmin: SIZE_MAX when none)
  Fn scalar, avx2, avx512;
};

// A reference row function (lib/quant/formats.h) with the kernels' signature.
template <typename Block, float (*kRef)(int64_t, const Block*, const ktx::quant::BlockQ8_K*)>
float scalar(int64_t n, const void* x, const void* y) {
  return kRef(n, static_cast<const Block*>(x), static_cast<const ktx::quant::BlockQ8_K*>(y));
}

const std::vector<TypeInfo>& types() {
  namespace cpu = ktx::kernels::cpu;
  namespace q = ktx::quant;
  static const std::vector<TypeInfo> all = {
      {TensorType::Q4_K, offsetof(q::BlockQ4_K, d), offsetof(q::BlockQ4_K, dmin),
       scalar<q::BlockQ4_K, q::vec_dot_q4_K_q8_K>, cpu::avx2::vec_dot_q4_K_q8_K,
       cpu::avx512::vec_dot_q4_K_q8_K},
      {TensorType::Q5_K, offsetof(q::BlockQ5_K, d), offsetof(q::BlockQ5_K, dmin),
       scalar<q::BlockQ5_K, q::vec_dot_q5_K_q8_K>, cpu::avx2::vec_dot_q5_K_q8_K,
       cpu::avx512::vec_dot_q5_K_q8_K},
      {TensorType::Q6_K, offsetof(q::BlockQ6_K, d), SIZE_MAX,
       scalar<q::BlockQ6_K, q::vec_dot_q6_K_q8_K>, cpu::avx2::vec_dot_q6_K_q8_K,
       cpu::avx512::vec_dot_q6_K_q8_K},
      {TensorType::Q2_K, offsetof(q::BlockQ2_K, d), offsetof(q::BlockQ2_K, dmin),
       scalar<q::BlockQ2_K, q::vec_dot_q2_K_q8_K>, cpu::avx2::vec_dot_q2_K_q8_K,
       cpu::avx512::vec_dot_q2_K_q8_K},
      {TensorType::Q3_K, offsetof(q::BlockQ3_K, d), SIZE_MAX,
       scalar<q::BlockQ3_K, q::vec_dot_q3_K_q8_K>, cpu::avx2::vec_dot_q3_K_q8_K,
       cpu::avx512::vec_dot_q3_K_q8_K},
      {TensorType::IQ4_XS, offsetof(q::BlockIQ4_XS, d), SIZE_MAX,
       scalar<q::BlockIQ4_XS, q::vec_dot_iq4_xs_q8_K>, cpu::avx2::vec_dot_iq4_xs_q8_K,
       cpu::avx512::vec_dot_iq4_xs_q8_K},
  };
  return all;
}

bool has_avx512() {
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}
// F16C comes with every AVX2 CPU (and Clang 14's __builtin_cpu_supports does not know its name).
bool has_avx2() { return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"); }

// Random bytes (every code and sub-block scale pattern; speed does not depend on the values)
// with ordinary f16 scales.
std::vector<uint8_t> random_matrix(const TypeInfo& t, int64_t rows, int64_t cols,
                                   std::mt19937_64& g) {
  const size_t row_bytes = ktx::row_size(t.type, cols);
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  for (size_t i = 0; i + 8 <= w.size(); i += 8) {
    const uint64_t v = g();
    std::memcpy(&w[i], &v, 8);
  }
  const size_t block = ktx::traits(t.type).type_size;
  std::uniform_real_distribution<float> scale(0.5f, 1.0f);
  for (size_t off = 0; off < w.size(); off += block) {
    const uint16_t d = ktx::quant::f32_to_fp16(scale(g) / 1024),
                   dm = ktx::quant::f32_to_fp16(scale(g) / 4096);
    std::memcpy(&w[off + t.d_offset], &d, 2);
    if (t.dmin_offset != SIZE_MAX) std::memcpy(&w[off + t.dmin_offset], &dm, 2);
  }
  return w;
}

// One matrix-vector product, a row at a time.
void gemv(Fn fn, const uint8_t* w, size_t row_bytes, int64_t rows, int64_t cols, const void* y,
          float* out) {
  for (int64_t r = 0; r < rows; ++r) out[r] = fn(cols, w + static_cast<size_t>(r) * row_bytes, y);
}

using Clock = std::chrono::steady_clock;

// Seconds per product: runs products (on successive copies of the matrix from `copies`
// matrices `stride` bytes apart) until at least `min_seconds` have passed.
double seconds_per_gemv(Fn fn, const uint8_t* base, size_t stride, int copies, size_t& next,
                        size_t row_bytes, int64_t rows, int64_t cols, const void* y, float* out,
                        double min_seconds) {
  int passes = 0;
  const Clock::time_point start = Clock::now();
  double elapsed = 0;
  do {
    gemv(fn, base + (next % static_cast<size_t>(copies)) * stride, row_bytes, rows, cols, y, out);
    ++next;
    ++passes;
    elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  } while (elapsed < min_seconds);
  return elapsed / passes;
}

struct Result {
  std::string type, isa;
  int64_t rows, cols;
  double hot_gbs, hot_speedup, cold_gbs, cold_speedup;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  BenchArgs args(argc, argv, kUsage, "--types");
  std::vector<const TypeInfo*> selected;
  if (args.list.empty()) {
    for (const TypeInfo& t : types()) selected.push_back(&t);
  } else {
    std::stringstream in(args.list);
    std::string item;
    while (std::getline(in, item, ',')) {
      const auto type = ktx::type_from_name(item);
      const auto it = std::find_if(types().begin(), types().end(),
                                   [&](const TypeInfo& t) { return type && t.type == *type; });
      if (it == types().end()) {
        BenchArgs::fail(kUsage, "--types: '" + item + "' is not one of Q2_K..Q6_K, IQ4_XS");
      }
      selected.push_back(&*it);
    }
  }

  const uint64_t probe = default_probe_bytes();
  const BandwidthResult memory = measure_read_bandwidth(probe, 1, 3);
  if (!args.json) {
    std::printf("bench_kquants: %s, LLC %.0f MiB, 1-thread memory read %.1f GB/s; median of %d\n",
                cpu_model_name().c_str(), static_cast<double>(llc_bytes()) / (1 << 20),
                memory.best_gbs, args.repeats);
    std::printf("%-7s %-10s %-11s %9s %8s %9s %8s\n", "type", "matrix", "isa", "hot GB/s",
                "x scalar", "cold GB/s", "x scalar");
  }

  std::mt19937_64 g(std::random_device{}());
  const int64_t shapes[2][2] = {{2048, 2048}, {1408, 2048}};  // rows, columns
  std::vector<Result> results;
  int mismatches = 0;
  for (const TypeInfo* t : selected) {
    for (const auto& shape : shapes) {
      const int64_t rows = shape[0], cols = shape[1];
      const size_t row_bytes = ktx::row_size(t->type, cols);
      const std::vector<uint8_t> w = random_matrix(*t, rows, cols, g);
      std::vector<float> x(static_cast<size_t>(cols));
      std::normal_distribution<float> normal;
      for (float& v : x) v = normal(g);
      std::vector<uint8_t> y(ktx::row_size(TensorType::Q8_K, cols));
      ktx::quant::quantize_row(TensorType::Q8_K, x.data(), y.data(), cols);

      std::vector<Variant> variants = {{"scalar", true, t->scalar},
                                       {"avx2", has_avx2(), t->avx2},
                                       {"avx512vnni", has_avx512(), t->avx512}};
      variants.erase(std::remove_if(variants.begin(), variants.end(),
                                    [](const Variant& v) { return !v.supported; }),
                     variants.end());

      // Bit-for-bit check of every variant, outputs poisoned first.
      std::vector<float> want(static_cast<size_t>(rows)), got(static_cast<size_t>(rows));
      gemv(variants[0].fn, w.data(), row_bytes, rows, cols, y.data(), want.data());
      for (const Variant& v : variants) {
        std::fill(got.begin(), got.end(), std::numeric_limits<float>::quiet_NaN());
        gemv(v.fn, w.data(), row_bytes, rows, cols, y.data(), got.data());
        if (std::memcmp(got.data(), want.data(), got.size() * sizeof(float)) != 0) {
          std::fprintf(stderr, "MISMATCH: %s %s differs from the reference\n",
                       std::string(ktx::type_name(t->type)).c_str(), v.isa);
          ++mismatches;
        }
      }

      // Cold: copies of the matrix filling the probe buffer, used round-robin.
      const size_t matrix_bytes = row_bytes * static_cast<size_t>(rows);
      const int copies = static_cast<int>(std::max<uint64_t>(2, probe / matrix_bytes));
      std::vector<uint8_t> cold(matrix_bytes * static_cast<size_t>(copies));
      for (int c = 0; c < copies; ++c) std::memcpy(&cold[matrix_bytes * c], w.data(), matrix_bytes);

      std::vector<std::vector<double>> hot_s(variants.size()), cold_s(variants.size());
      size_t hot_next = 0, cold_next = 0;
      for (int rep = 0; rep < args.repeats; ++rep) {
        for (size_t v = 0; v < variants.size(); ++v) {
          hot_s[v].push_back(seconds_per_gemv(variants[v].fn, w.data(), 0, 1, hot_next, row_bytes,
                                              rows, cols, y.data(), got.data(), 0.01));
          cold_s[v].push_back(seconds_per_gemv(variants[v].fn, cold.data(), matrix_bytes, copies,
                                               cold_next, row_bytes, rows, cols, y.data(),
                                               got.data(), 0.01));
        }
      }
      const double hot_ref = median(hot_s[0]), cold_ref = median(cold_s[0]);
      for (size_t v = 0; v < variants.size(); ++v) {
        const double hot = median(hot_s[v]), cold_t = median(cold_s[v]);
        Result r{std::string(ktx::type_name(t->type)),
                 variants[v].isa,
                 rows,
                 cols,
                 static_cast<double>(matrix_bytes) / hot / 1e9,
                 hot_ref / hot,
                 static_cast<double>(matrix_bytes) / cold_t / 1e9,
                 cold_ref / cold_t};
        results.push_back(r);
        if (!args.json) {
          const std::string matrix = std::to_string(rows) + "x" + std::to_string(cols);
          std::printf("%-7s %-10s %-11s %9.2f %8.2f %9.2f %8.2f\n", r.type.c_str(), matrix.c_str(),
                      r.isa.c_str(), r.hot_gbs, r.hot_speedup, r.cold_gbs, r.cold_speedup);
        }
      }
    }
  }

  if (args.json) {
    std::printf(
        "{\"bench\":\"kquants\",\"cpu\":%s,\"threads\":1,\"repeats\":%d,"
        "\"read_gbs_1_thread\":%.3f,\"mismatches\":%d,\"results\":[",
        json_string(cpu_model_name()).c_str(), args.repeats, memory.best_gbs, mismatches);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "%s{\"type\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"isa\":\"%s\",\"hot_gbs\":%.3f,"
          "\"hot_speedup\":%.3f,\"cold_gbs\":%.3f,\"cold_speedup\":%.3f}",
          i ? "," : "", r.type.c_str(), static_cast<long long>(r.rows),
          static_cast<long long>(r.cols), r.isa.c_str(), r.hot_gbs, r.hot_speedup, r.cold_gbs,
          r.cold_speedup);
    }
    std::printf("]}\n");
  }
  return mismatches == 0 ? 0 : 1;
}
