// bench_gemv: batch-1 matrix-vector products as decode runs them — the library's own path
// (ops::cpu::matmul: the dispatched kernels, row blocks claimed from runtime::ThreadPool) — at
// the shapes of a DeepSeek-V2-Lite Q4_K_M decode step, on 1..N threads, in GB/s of weights next
// to the machine's read bandwidth measured with the same number of threads.
//
// Every product streams its weights from memory, as decode does: the matrix is copied until the
// copies fill a buffer well above the last-level cache, and each product takes the next copy
// (the output head, 172 MB, is already far above it). Up to three variants per shape: "rows", the
// multi-row kernel the dispatch picked for the type, "one-row", the one-row kernel called per row
// (what the K-quants had before their multi-row kernels), and "tiles", the same matrices repacked
// into row tiles as option repack keeps them, through the tile kernel where the CPU has one; the
// first two are checked bit for bit against each other before timing, the tiles against the
// reference's dot of every row. Variants run interleaved within each repeat; ratios of
// medians from one run are what to trust on a shared machine. The buffers ask for 2 MiB pages, as
// the bandwidth probe's do; --model FILE takes the output head and the routed experts (cycling
// through all of them) from a GGUF file instead, with the pages ktx's own mapping gets
// (lib/gguf/mapped_file.cpp), so both the page size and the file's layout are decode's.
#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include "bench_util.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "memory_bandwidth.h"
#include "ops/cpu/linear.h"
#include "quant/row_tiles.h"
#include "quant_matrix.h"
#include "runtime/thread_pool.h"

namespace {

namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;

constexpr const char* kUsage =
    "usage: bench_gemv [-t N] [--cases lm_head,expert_up,...] [--model FILE.gguf] [--repeats N]\n"
    "                  [--json]\n"
    "  decode's matrix-vector products through ops::cpu::matmul on 1..N threads (default: every\n"
    "  CPU), weights streamed from memory; GB/s next to the read bandwidth of as many threads.\n"
    "  Kernels: the type's multi-row one (rows), one row at a time (one-row), and the matrix\n"
    "  repacked into row tiles as option repack keeps it (tiles) where the CPU has a tile kernel.\n"
    "  Cases: lm_head (Q6_K 102400x2048), expert_up (Q4_K 1408x2048), expert_down (Q8_0\n"
    "  2048x1408), dense_up (Q4_K 10944x2048), dense_down (Q5_0 2048x10944), shared_down (Q6_K\n"
    "  2048x2816), attn_q (Q4_K 3072x2048), expert_down_q5 (Q5_0 2048x1408), dense_down_q8 (Q8_0\n"
    "  2048x10944). Median of N repeats (5). --model: lm_head,\n"
    "  expert_up and expert_down from the file's output.weight and blk.1.ffn_*_exps, whatever\n"
    "  their types (the other cases need the synthetic matrices).\n";

struct Case {
  const char* name;
  TensorType type;
  int64_t rows, cols;
  const char* tensor;  // its tensor in a V2-Lite-like GGUF file (--model), or null
};

// The tensors one decode step of the V2-Lite-width Q4_K_M bench model reads (docs/PERF.md).
const Case kCases[] = {
    {"lm_head", TensorType::Q6_K, 102400, 2048, "output.weight"},
    {"expert_up", TensorType::Q4_K, 1408, 2048, "blk.1.ffn_up_exps.weight"},
    {"expert_down", TensorType::Q8_0, 2048, 1408, "blk.1.ffn_down_exps.weight"},
    {"dense_up", TensorType::Q4_K, 10944, 2048, nullptr},
    {"dense_down", TensorType::Q5_0, 2048, 10944, nullptr},
    {"shared_down", TensorType::Q6_K, 2048, 2816, nullptr},
    {"attn_q", TensorType::Q4_K, 3072, 2048, nullptr},
    // The other legacy type at each down shape: V2-Lite Q4_K_M files mix Q8_0 and Q5_0 there.
    {"expert_down_q5", TensorType::Q5_0, 2048, 1408, nullptr},
    {"dense_down_q8", TensorType::Q8_0, 2048, 10944, nullptr},
};

using ktx::bench::HugeBuffer;

// How a product reads its matrix: the dispatch's multi-row kernel, the one-row kernel per row,
// or the matrix repacked into row tiles (option repack) through the tile kernel.
enum class Variant { kRows, kOneRow, kTiles };

const char* variant_name(Variant v) {
  switch (v) {
    case Variant::kRows:
      return "rows";
    case Variant::kOneRow:
      return "one-row";
    case Variant::kTiles:
      return "tiles";
  }
  return "?";
}

ktx::ops::cpu::WeightMatrix matrix_at(const Case& c, const uint8_t* data, Variant variant) {
  const bool multi_row = variant != Variant::kOneRow;
  ktx::ops::cpu::WeightMatrix w;
  w.type = c.type;
  w.dot_type = *ktx::quant::vec_dot_type(c.type);
  w.cols = c.cols;
  w.rows = c.rows;
  w.row_bytes = ktx::row_size(c.type, c.cols);
  w.data = data;
  w.dot_fn = cpu::vec_dot_fn(c.type);
  w.dot_rows_fn = multi_row ? cpu::vec_dot_rows_fn(c.type) : nullptr;
  if (variant == Variant::kTiles) {
    w.tiles = data;
    w.tiles_fn = cpu::vec_dot_tiles_fn(c.type);
  }
  return w;
}

struct Result {
  std::string name, type, variant;
  int threads;
  int64_t rows, cols;
  double gbs, bandwidth_gbs, us;
};

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  // --model FILE is taken out before BenchArgs, which knows one list option only.
  std::string model_path;
  std::vector<char*> rest;
  for (int i = 0; i < argc; ++i) {
    if (std::string_view(argv[i]) == "--model") {
      if (i + 1 >= argc) BenchArgs::fail(kUsage, "--model needs a value");
      model_path = argv[++i];
    } else {
      rest.push_back(argv[i]);
    }
  }
  BenchArgs args(static_cast<int>(rest.size()), rest.data(), kUsage, "--cases");
  std::optional<ktx::gguf::File> model;
  if (!model_path.empty()) model = ktx::gguf::File::open(model_path);
  std::vector<Case> cases;
  if (args.list.empty()) {
    cases.assign(std::begin(kCases), std::end(kCases));
  } else {
    std::stringstream in(args.list);
    std::string item;
    while (std::getline(in, item, ',')) {
      const auto it = std::find_if(std::begin(kCases), std::end(kCases),
                                   [&](const Case& c) { return item == c.name; });
      if (it == std::end(kCases)) BenchArgs::fail(kUsage, "--cases: no case '" + item + "'");
      cases.push_back(*it);
    }
  }
  if (model) {
    std::erase_if(cases, [](const Case& c) { return c.tensor == nullptr; });
    for (Case& c : cases) {
      const ktx::gguf::TensorInfo* t = model->find_tensor(c.tensor);
      if (t == nullptr) BenchArgs::fail(kUsage, std::string(model_path) + " has no " + c.tensor);
      c.type = t->type;
      c.cols = t->shape[0];
      c.rows = t->shape.size() > 1 ? t->shape[1] : 1;
    }
  }

  const uint64_t probe = default_probe_bytes();
  std::mt19937_64 g(std::random_device{}());
  std::vector<Result> results;
  int mismatches = 0;
  if (!args.json) {
    std::printf("bench_gemv: %s, dispatch %s, LLC %.0f MiB%s%s; median of %d\n",
                cpu_model_name().c_str(), std::string(cpu::active_isa()).c_str(),
                static_cast<double>(llc_bytes()) / (1 << 20), model ? ", weights from " : "",
                model_path.c_str(), args.repeats);
    std::printf("%-12s %-6s %-12s %-8s %3s %9s %8s %9s %7s\n", "case", "type", "matrix", "kernel",
                "thr", "us/gemv", "GB/s", "read GB/s", "of read");
  }
  for (const Case& c : cases) {
    const size_t row_bytes = ktx::row_size(c.type, c.cols);
    const size_t matrix_bytes = row_bytes * static_cast<size_t>(c.rows);
    // The matrices a product cycles through, `copies` of them `matrix_bytes` apart: copies of one
    // synthetic matrix, or the file's tensor (all experts of an expert tensor, one after another).
    std::unique_ptr<HugeBuffer> buffer;
    const uint8_t* cold = nullptr;
    int copies = 1;
    if (model) {
      const ktx::gguf::TensorInfo& t = *model->find_tensor(c.tensor);
      cold = t.data;
      copies = t.shape.size() > 2 ? static_cast<int>(t.shape[2]) : 1;
    } else {
      const std::vector<uint8_t> m = make_matrix(c.type, c.rows, c.cols, g);
      copies = static_cast<int>(std::max<uint64_t>(2, probe / matrix_bytes));
      buffer = std::make_unique<HugeBuffer>(matrix_bytes * static_cast<size_t>(copies));
      for (int k = 0; k < copies; ++k) {
        std::memcpy(buffer->data + matrix_bytes * static_cast<size_t>(k), m.data(), matrix_bytes);
      }
      cold = buffer->data;
    }
    // The same copies repacked into row tiles, where this CPU has a tile kernel for the type
    // (decode with option repack reads these).
    std::unique_ptr<HugeBuffer> tiled;
    if (cpu::vec_dot_tiles_fn(c.type) != nullptr && c.rows % ktx::quant::kTileRows == 0) {
      tiled = std::make_unique<HugeBuffer>(matrix_bytes * static_cast<size_t>(copies));
      for (int k = 0; k < copies; ++k) {
        const size_t off = matrix_bytes * static_cast<size_t>(k);
        ktx::quant::pack_row_tiles(c.type, c.cols, c.rows, cold + off, tiled->data + off);
      }
    }
    const uint8_t* w = cold;
    std::vector<float> x(static_cast<size_t>(c.cols));
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(g);
    ktx::ops::cpu::QuantizedRows q;
    q.quantize(nullptr, *ktx::quant::vec_dot_type(c.type), 1, c.cols, x.data(), c.cols);

    // The multi-row kernel against one row at a time where the type has one; else one-row only.
    std::vector<Variant> variants = {Variant::kOneRow};
    if (cpu::vec_dot_rows_fn(c.type) != nullptr) variants.insert(variants.begin(), Variant::kRows);
    if (tiled) variants.push_back(Variant::kTiles);
    // Each variant's matrices: the file's rows, or their tiles.
    const auto base = [&](Variant v) { return v == Variant::kTiles ? tiled->data : cold; };
    for (const int threads : thread_sweep(args.threads)) {
      ktx::runtime::ThreadPool pool(threads);
      const double read_gbs = measure_read_bandwidth(probe, threads, 3).best_gbs;
      // Check: the file-layout kernels agree bit for bit; the tiles give the reference's dot
      // of every row bit for bit (the file-layout kernels add per-block terms in another order).
      std::vector<float> out(static_cast<size_t>(c.rows)), first(out.size()), ref(out.size());
      for (int64_t r = 0; r < c.rows; ++r) {
        ref[static_cast<size_t>(r)] =
            ktx::quant::vec_dot(c.type, c.cols, w + static_cast<size_t>(r) * row_bytes, q.row(0));
      }
      for (size_t v = 0; v < variants.size(); ++v) {
        std::fill(out.begin(), out.end(), std::numeric_limits<float>::quiet_NaN());
        ktx::ops::cpu::matmul(pool, matrix_at(c, base(variants[v]), variants[v]), q, 1, out.data(),
                              c.rows);
        if (v == 0) first = out;
        const std::vector<float>& want = variants[v] == Variant::kTiles ? ref : first;
        if (std::memcmp(want.data(), out.data(), out.size() * sizeof(float)) != 0 ||
            std::any_of(out.begin(), out.end(), [](float f) { return std::isnan(f); })) {
          std::fprintf(stderr, "MISMATCH: %s: the %s and %s kernels differ\n", c.name,
                       variant_name(variants[0]), variant_name(variants[v]));
          ++mismatches;
        }
      }
      std::vector<std::vector<double>> seconds(variants.size());
      size_t next = 0;
      for (int rep = 0; rep < args.repeats; ++rep) {
        for (size_t v = 0; v < variants.size(); ++v) {
          int passes = 0;
          const auto start = std::chrono::steady_clock::now();
          double elapsed = 0;
          do {
            const uint8_t* data =
                base(variants[v]) + (next++ % static_cast<size_t>(copies)) * matrix_bytes;
            ktx::ops::cpu::matmul(pool, matrix_at(c, data, variants[v]), q, 1, out.data(), c.rows);
            ++passes;
            elapsed =
                std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
          } while (elapsed < 0.05);
          seconds[v].push_back(elapsed / passes);
        }
      }
      for (size_t v = 0; v < variants.size(); ++v) {
        const double s = median(seconds[v]);
        const Result r{c.name,
                       std::string(ktx::type_name(c.type)),
                       variant_name(variants[v]),
                       threads,
                       c.rows,
                       c.cols,
                       static_cast<double>(matrix_bytes) / s / 1e9,
                       read_gbs,
                       s * 1e6};
        results.push_back(r);
        if (!args.json) {
          const std::string matrix = std::to_string(c.rows) + "x" + std::to_string(c.cols);
          std::printf("%-12s %-6s %-12s %-8s %3d %9.1f %8.2f %9.2f %6.0f%%\n", r.name.c_str(),
                      r.type.c_str(), matrix.c_str(), r.variant.c_str(), threads, r.us, r.gbs,
                      read_gbs, 100 * r.gbs / read_gbs);
          std::fflush(stdout);
        }
      }
    }
  }
  if (args.json) {
    std::printf(
        "{\"bench\":\"gemv\",\"cpu\":%s,\"dispatch\":\"%s\",\"repeats\":%d,"
        "\"mismatches\":%d,\"results\":[",
        json_string(cpu_model_name()).c_str(), std::string(cpu::active_isa()).c_str(), args.repeats,
        mismatches);
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "%s{\"case\":\"%s\",\"type\":\"%s\",\"rows\":%lld,\"cols\":%lld,\"kernel\":\"%s\","
          "\"threads\":%d,\"us\":%.2f,\"gbs\":%.3f,\"read_gbs\":%.3f,\"of_read\":%.4f}",
          i ? "," : "", r.name.c_str(), r.type.c_str(), static_cast<long long>(r.rows),
          static_cast<long long>(r.cols), r.variant.c_str(), r.threads, r.us, r.gbs,
          r.bandwidth_gbs, r.gbs / r.bandwidth_gbs);
    }
    std::printf("]}\n");
  }
  return mismatches == 0 ? 0 : 1;
}
