// bench_gemm: the prefill matrix products at DeepSeek-V2-Lite's shapes, in GOP/s (2 per
// multiply-add) next to the machine's int8 peak (vpdpbusd, measured in the same run), 1 and 2
// threads:
//
//   gemv         what a batch ran before the GEMM kernels: per 8 weight rows, every token through
//                the GEMV kernels of vec_dot.h (lib/ops/cpu/linear.cpp's matmul_rows)
//   gemm         the tile kernels of kernels/cpu/gemm.h on packed panels (packing timed too)
//   gemm-tiles   the GEMMs over row tiles (gemm.h's GemmTilesFn: the weights repacked as the
//                `repack` option does at load; its panels' packing timed too, "pack-tiles")
//   onednn-s8    oneDNN u8 × s8 -> s32 matmul, weights reordered once; it has no block scales,
//                so it is an upper bound for any int8 scheme, not a drop-in replacement
//   onednn-bf16  oneDNN bf16 × bf16 -> f32 matmul, weights dequantized to bf16 once (3.6x the
//                bytes of Q4_K)
//   onednn-f32   oneDNN f32 matmul (the F32 shapes), onednn-f16 f16 × f16 (the F16 shapes; oneDNN
//                2.6 refuses it without AVX512_FP16)
//
// The float shapes (F32, F16, BF16 weights: full-precision files) compare ktx's float GEMM with
// oneDNN's matmul in the same type; the quantized shapes with oneDNN's s8 and bf16.
//
// Expert shapes are timed over as many distinct weight copies as fill 64 MiB, so that weights come
// from memory as they do for 64 experts; a thread takes a contiguous half of the rows. A sample of
// gemm's outputs is checked bit for bit (gemm.h's promise) before its numbers are reported.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "gemm_onednn.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "peak_kernels.h"
#include "quant/fp16.h"
#include "quant/row_tiles.h"

namespace {

using ktx::TensorType;
namespace cpu = ktx::kernels::cpu;
namespace kb = ktx::bench;

constexpr const char* kUsage =
    "usage: bench_gemm [-t N] [--repeats N] [--shapes a,b,...] [--json]\n"
    "  prefill matrix products at V2-Lite's shapes: the GEMV path (batches before), the GEMM "
    "kernels,\n"
    "  oneDNN int8 and bf16; GOP/s and the share of the measured int8 peak, 1..N threads.\n"
    "  shapes: exp_up48 exp_up16 exp_up32 exp_up72 exp_up512 exp_down48 exp_down512\n"
    "          exp_down48_q5_0 dense_up512 dense_down512 shexp_down512 exp_up512_bf16\n"
    "          exp_up512_f16 exp_up512_f32 exp_down48_bf16\n"
    "          (default: all)\n";

struct Shape {
  const char* id;
  const char* what;
  TensorType type;
  int64_t rows, cols, tokens;
};

// V2-Lite, 512-token prefill: 64 experts, 6 per token, so ~48 tokens per expert. Real routing
// spreads them (per MoE layer of the 8-layer file: 15-97 tokens, the middle 80% 26-75), and the
// kernels unpack each weight once per call of up to 64 tokens: the exp_up16/32/72 shapes show
// what that costs at either end.
const Shape kShapes[] = {
    {"exp_up48", "expert gate/up, 48 tokens", TensorType::Q4_K, 1408, 2048, 48},
    {"exp_up16", "expert gate/up, 16 tokens", TensorType::Q4_K, 1408, 2048, 16},
    {"exp_up32", "expert gate/up, 32 tokens", TensorType::Q4_K, 1408, 2048, 32},
    {"exp_up72", "expert gate/up, 72 tokens", TensorType::Q4_K, 1408, 2048, 72},
    {"exp_up512", "expert gate/up, 512 tokens", TensorType::Q4_K, 1408, 2048, 512},
    {"exp_down48", "expert down (Q8_0), 48 tokens", TensorType::Q8_0, 2048, 1408, 48},
    {"exp_down512", "expert down (Q8_0), 512 tokens", TensorType::Q8_0, 2048, 1408, 512},
    {"exp_down48_q5_0", "expert down (Q5_0), 48 tokens", TensorType::Q5_0, 2048, 1408, 48},
    {"dense_up512", "dense gate/up, 512 tokens", TensorType::Q4_K, 10944, 2048, 512},
    {"dense_down512", "dense down (Q5_0), 512 tokens", TensorType::Q5_0, 2048, 10944, 512},
    {"shexp_down512", "shared-expert down (Q6_K), 512 tokens", TensorType::Q6_K, 2048, 2816, 512},
    {"exp_up512_bf16", "expert gate/up (BF16), 512 tokens", TensorType::BF16, 1408, 2048, 512},
    {"exp_up512_f16", "expert gate/up (F16), 512 tokens", TensorType::F16, 1408, 2048, 512},
    {"exp_up512_f32", "expert gate/up (F32), 512 tokens", TensorType::F32, 1408, 2048, 512},
    {"exp_down48_bf16", "expert down (BF16), 48 tokens", TensorType::BF16, 2048, 1408, 48},
};

constexpr int64_t kTokenChunk = 64;  // tokens whose panels stay in L2 while the rows stream by
constexpr int64_t kRowBlock = 64;

// Eight rows quantized from random floats, repeated: the kernels' speed does not depend on the
// values, and every scale stays finite.
std::vector<uint8_t> random_weights(TensorType t, int64_t rows, int64_t cols, std::mt19937& gen) {
  constexpr int kDistinct = 8;
  const size_t row_bytes = ktx::row_size(t, cols);
  std::vector<uint8_t> distinct(row_bytes * kDistinct);
  std::normal_distribution<float> nd;
  std::vector<float> x(static_cast<size_t>(cols));
  for (int k = 0; k < kDistinct; ++k) {
    for (float& e : x) e = nd(gen);
    ktx::quant::quantize_row(t, x.data(), distinct.data() + k * row_bytes, cols);
  }
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r)
    std::memcpy(w.data() + r * row_bytes, distinct.data() + (r % kDistinct) * row_bytes, row_bytes);
  return w;
}

struct Timing {
  double seconds = -1;  // best of the repeats, per product
  std::string note;
};

// Times body(thread, copy) on `threads` threads, each looping over the weight copies; the best of
// `repeats` runs of about 0.25 s, per product.
template <typename Body>
double time_threads(int threads, int repeats, int copies, Body body) {
  int64_t iters = 1;
  for (;;) {
    const double s = kb::run_on_threads(threads, [&](int i) {
      for (int64_t it = 0; it < iters; ++it) body(i, static_cast<int>(it % copies));
    });
    if (s > 0.06) {
      iters = std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * 0.25 / s));
      break;
    }
    iters *= 4;
  }
  double best = 1e30;
  for (int r = 0; r < repeats; ++r) {
    const double s = kb::run_on_threads(threads, [&](int i) {
      for (int64_t it = 0; it < iters; ++it) body(i, static_cast<int>(it % copies));
    });
    best = std::min(best, s / static_cast<double>(iters));
  }
  return best;
}

struct Row {
  const Shape* shape;
  int threads;
  const char* method;
  double seconds;
  std::string impl;
};

}  // namespace

int main(int argc, char** argv) {
  const kb::BenchArgs args(argc, argv, kUsage, "--shapes");
  std::vector<const Shape*> shapes;
  for (const Shape& s : kShapes) {
    if (args.list.empty() ||
        ("," + args.list + ",").find(std::string(",") + s.id + ",") != std::string::npos) {
      shapes.push_back(&s);
    }
  }
  if (shapes.empty()) kb::BenchArgs::fail(kUsage, "no shape matches --shapes " + args.list);
  const std::vector<int> sweep = kb::thread_sweep(args.threads);

  // The int8 ceiling, measured now on the same cores.
  std::vector<kb::PeakPoint> peak;
  const bool vnni = __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw");
  if (vnni) peak = kb::measure_peak(kb::peak_vpdpbusd_zmm, args.threads, args.repeats);
  auto peak_gops = [&](int threads) {
    for (const kb::PeakPoint& p : peak)
      if (p.threads == threads) return p.best_gops;
    return 0.0;
  };
  if (!args.json) {
    for (const kb::PeakPoint& p : peak)
      std::printf("int8 peak (vpdpbusd zmm), %d thread%s: %.1f GOP/s\n", p.threads,
                  p.threads == 1 ? "" : "s", p.best_gops);
    std::printf("isa %s, oneDNN %s\n", std::string(cpu::active_isa()).c_str(),
                kb::onednn_available() ? "linked" : "not built");
  }

  std::mt19937 gen(12345);
  std::vector<Row> rows_out;
  for (const Shape* s : shapes) {
    const TensorType yt = *ktx::quant::vec_dot_type(s->type);
    const size_t row_bytes = ktx::row_size(s->type, s->cols);
    const size_t matrix_bytes = row_bytes * static_cast<size_t>(s->rows);
    const int copies = static_cast<int>(std::max<size_t>(1, (size_t{64} << 20) / matrix_bytes));
    std::vector<std::vector<uint8_t>> w;
    for (int c = 0; c < copies; ++c) w.push_back(random_weights(s->type, s->rows, s->cols, gen));

    // Activations quantized once (as the operators do), then packed into panels.
    std::vector<float> x(static_cast<size_t>(s->tokens * s->cols));
    std::normal_distribution<float> nd;
    for (float& e : x) e = nd(gen);
    const size_t y_bytes = ktx::row_size(yt, s->cols);
    std::vector<uint8_t> y(y_bytes * static_cast<size_t>(s->tokens));
    for (int64_t t = 0; t < s->tokens; ++t)
      cpu::quantize_row_fn(yt)(x.data() + t * s->cols, y.data() + t * y_bytes, s->cols);
    const cpu::GemmFn gemm = cpu::gemm_fn(s->type);
    const cpu::GemmPackFn pack = cpu::gemm_pack_fn(yt);
    const size_t panel_bytes = cpu::gemm_panel_bytes(yt, s->cols);
    const int64_t n_panels = (s->tokens + cpu::kGemmTokens - 1) / cpu::kGemmTokens;
    // Page-aligned (at least 64 bytes, as ops::cpu::GemmPanels keeps them): every kernel load of
    // a panel is one cache line. From a plain vector (16-byte aligned) each load split across two
    // lines, and the Q8_0 kernel ran at 24% of the int8 peak instead of 40% (Emerald Rapids,
    // panels in L1).
    const kb::HugeBuffer panels(panel_bytes * static_cast<size_t>(n_panels));
    uint8_t* const panel_data = panels.data;
    // Every panel of the tokens, packed by `fn` into `bytes`-sized panels at `dst`.
    auto pack_panels = [&](cpu::GemmPackFn fn, size_t bytes, uint8_t* dst) {
      for (int64_t p = 0; p < n_panels; ++p) {
        const void* ptr[cpu::kGemmTokens];
        const int64_t count = std::min<int64_t>(cpu::kGemmTokens, s->tokens - p * cpu::kGemmTokens);
        for (int64_t i = 0; i < count; ++i)
          ptr[i] = y.data() + (p * cpu::kGemmTokens + i) * y_bytes;
        fn(s->cols, ptr, count, dst + p * bytes);
      }
    };
    auto pack_all = [&] { pack_panels(pack, panel_bytes, panel_data); };
    if (gemm != nullptr) pack_all();

    // The same weights as row tiles, and the tile kernels' panels.
    const cpu::GemmTilesFn gemm_tiles =
        s->rows % ktx::quant::kTileRows == 0 ? cpu::gemm_tiles_fn(s->type) : nullptr;
    const cpu::GemmPackFn pack_tiles = cpu::gemm_tiles_pack_fn(s->type);
    const size_t tile_panel_bytes = cpu::gemm_tiles_panel_bytes(s->type, s->cols);
    std::vector<std::vector<uint8_t>> w_tiles;
    if (gemm_tiles != nullptr) {
      for (int c = 0; c < copies; ++c) {
        w_tiles.emplace_back(w[static_cast<size_t>(c)].size());
        ktx::quant::pack_row_tiles(s->type, s->cols, s->rows, w[static_cast<size_t>(c)].data(),
                                   w_tiles.back().data());
      }
    }
    const kb::HugeBuffer tile_panels(std::max<size_t>(1, tile_panel_bytes) *
                                     static_cast<size_t>(n_panels));
    auto pack_all_tiles = [&] { pack_panels(pack_tiles, tile_panel_bytes, tile_panels.data); };
    if (gemm_tiles != nullptr) pack_all_tiles();

    const cpu::VecDotFn dot = cpu::vec_dot_fn(s->type);
    const cpu::VecDotRowsFn dot_rows = cpu::vec_dot_rows_fn(s->type);
    std::vector<float> out_gemv(static_cast<size_t>(s->tokens * s->rows));
    std::vector<float> out_gemm(out_gemv.size());

    for (int threads : sweep) {
      auto slice = [&](int i, int64_t& r0, int64_t& r1) {  // even-sized contiguous halves
        r0 = (s->rows * i / threads) & ~int64_t{1};
        r1 = i + 1 == threads ? s->rows : (s->rows * (i + 1) / threads) & ~int64_t{1};
      };
      auto gemv_body = [&](int i, int c) {
        int64_t r0, r1;
        slice(i, r0, r1);
        const uint8_t* base = w[static_cast<size_t>(c)].data();
        float tmp[8];
        for (int64_t r = r0; r < r1; r += 8) {
          const int64_t count = std::min<int64_t>(8, r1 - r);
          for (int64_t t = 0; t < s->tokens; ++t) {
            const uint8_t* yr = y.data() + t * y_bytes;
            if (dot_rows != nullptr) {
              dot_rows(s->cols, base + r * row_bytes, row_bytes, count, yr, tmp);
            } else {
              for (int64_t k = 0; k < count; ++k)
                tmp[k] = dot(s->cols, base + (r + k) * row_bytes, yr);
            }
            std::copy(tmp, tmp + count, out_gemv.data() + t * s->rows + r);
          }
        }
      };
      auto gemm_body = [&](int i, int c) {
        int64_t r0, r1;
        slice(i, r0, r1);
        const uint8_t* base = w[static_cast<size_t>(c)].data();
        for (int64_t t0 = 0; t0 < s->tokens; t0 += kTokenChunk) {
          const int64_t nt = std::min(kTokenChunk, s->tokens - t0);
          for (int64_t r = r0; r < r1; r += kRowBlock) {
            gemm(s->cols, base + r * row_bytes, row_bytes, std::min(kRowBlock, r1 - r),
                 panel_data + (t0 / cpu::kGemmTokens) * panel_bytes, nt,
                 out_gemm.data() + t0 * s->rows + r, static_cast<size_t>(s->rows));
          }
        }
      };
      // Row blocks of 64 rows (4 tiles) as batch_matmul.cpp's gemm_rows calls them.
      auto gemm_tiles_body = [&](int i, int c) {
        int64_t r0, r1;
        slice(i, r0, r1);
        r0 &= ~int64_t{15};
        r1 = i + 1 == threads ? s->rows : r1 & ~int64_t{15};
        const uint8_t* base = w_tiles[static_cast<size_t>(c)].data();
        for (int64_t t0 = 0; t0 < s->tokens; t0 += kTokenChunk) {
          const int64_t nt = std::min(kTokenChunk, s->tokens - t0);
          for (int64_t r = r0; r < r1; r += kRowBlock) {
            gemm_tiles(s->cols, base + r * row_bytes, 16 * row_bytes,
                       std::min(kRowBlock, r1 - r) / 16,
                       tile_panels.data + (t0 / cpu::kGemmTokens) * tile_panel_bytes, nt,
                       out_gemm.data() + t0 * s->rows + r, static_cast<size_t>(s->rows));
          }
        }
      };
      rows_out.push_back(
          {s, threads, "gemv", time_threads(threads, args.repeats, copies, gemv_body), ""});
      if (gemm_tiles != nullptr) {
        rows_out.push_back({s, threads, "gemm-tiles",
                            time_threads(threads, args.repeats, copies, gemm_tiles_body), ""});
        if (threads == sweep.front()) {
          // Every sampled output against the reference, bit for bit (gemm.h).
          std::fill(out_gemm.begin(), out_gemm.end(), std::nanf(""));
          gemm_tiles_body(0, copies - 1);
          const uint8_t* base = w[static_cast<size_t>(copies - 1)].data();
          int64_t r0, r1;
          slice(0, r0, r1);
          size_t bad = 0;
          for (int64_t t = 0; t < s->tokens; t += 7) {
            for (int64_t r = r0 & ~int64_t{15}; r < (r1 & ~int64_t{15}); r += 13) {
              const float want = ktx::quant::vec_dot(s->type, s->cols, base + r * row_bytes,
                                                     y.data() + t * y_bytes);
              bad += std::memcmp(&want, &out_gemm[t * s->rows + r], 4) != 0;
            }
          }
          if (bad != 0)
            std::fprintf(stderr,
                         "bench_gemm: %s: %zu sampled tile outputs differ from the reference\n",
                         s->id, bad);
        }
        rows_out.push_back(
            {s, threads, "pack-tiles",
             threads == 1 ? time_threads(1, args.repeats, 1, [&](int, int) { pack_all_tiles(); })
                          : -1,
             ""});
      }
      if (gemm != nullptr) {
        rows_out.push_back(
            {s, threads, "gemm", time_threads(threads, args.repeats, copies, gemm_body), ""});
        if (threads == sweep.front()) {
          // A sample of gemm's outputs against the reference (K-quants: bit for bit) or the
          // selected tier's one-row kernel (block quants: bit for bit, gemm.h).
          gemm_body(0, copies - 1);
          const uint8_t* base = w[static_cast<size_t>(copies - 1)].data();
          const bool k_quant = ktx::traits(s->type).block_size == 256;
          const cpu::VecDotFn one = cpu::vec_dot_fn(s->type);  // the tier gemm_fn's kernel is from
          int64_t r0, r1;
          slice(0, r0, r1);
          size_t bad = 0;
          for (int64_t t = 0; t < s->tokens; t += 7) {
            for (int64_t r = r0; r < r1; r += 13) {
              const uint8_t* xr = base + r * row_bytes;
              const uint8_t* yr = y.data() + t * y_bytes;
              const float want =
                  k_quant ? ktx::quant::vec_dot(s->type, s->cols, xr, yr) : one(s->cols, xr, yr);
              bad += std::memcmp(&want, &out_gemm[t * s->rows + r], 4) != 0;
            }
          }
          if (bad != 0)
            std::fprintf(stderr, "bench_gemm: %s: %zu sampled outputs differ from the %s\n", s->id,
                         bad, k_quant ? "reference" : "one-row kernel");
        }
        // Packing, once per product in the operators (all tokens, one thread).
        rows_out.push_back(
            {s, threads, "pack",
             threads == 1 ? time_threads(1, args.repeats, 1, [&](int, int) { pack_all(); }) : -1,
             ""});
      }
      std::vector<kb::OnednnKind> kinds = {kb::OnednnKind::kS8, kb::OnednnKind::kBf16};
      if (s->type == TensorType::BF16) kinds = {kb::OnednnKind::kBf16};
      if (s->type == TensorType::F16) kinds = {kb::OnednnKind::kF16};
      if (s->type == TensorType::F32) kinds = {kb::OnednnKind::kF32};
      for (const auto kind : kinds) {
        std::string impl;
        const double sec = kb::onednn_seconds(kind, s->rows, s->cols, s->tokens, threads,
                                              args.repeats, 0.25, &impl);
        if (sec > 0)
          rows_out.push_back({s, threads,
                              kind == kb::OnednnKind::kS8     ? "onednn-s8"
                              : kind == kb::OnednnKind::kBf16 ? "onednn-bf16"
                              : kind == kb::OnednnKind::kF32  ? "onednn-f32"
                                                              : "onednn-f16",
                              sec, impl});
      }
      if (!args.json) {
        for (const Row& r : rows_out) {
          if (r.shape != s || r.threads != threads || r.seconds <= 0) continue;
          const double gop = 2.0 * static_cast<double>(s->rows * s->cols * s->tokens) / 1e9;
          const double gops = gop / r.seconds;
          std::printf(
              "%-14s %-5s %-38s %d thr  %-11s %9.3f ms  %7.1f GOP/s  %5.1f%% of int8 peak  %s\n",
              s->id, ktx::type_name(s->type).data(), s->what, threads, r.method, r.seconds * 1e3,
              std::strncmp(r.method, "pack", 4) == 0 ? 0.0 : gops,
              std::strncmp(r.method, "pack", 4) == 0
                  ? 0.0
                  : 100.0 * gops / std::max(1e-9, peak_gops(threads)),
              r.impl.c_str());
        }
        std::fflush(stdout);
      }
    }
  }
  if (args.json) {
    std::printf(
        "{\"bench\":\"bench_gemm\",\"cpu\":%s,\"isa\":%s,\"onednn\":%s,\"peak_int8_gops\":{",
        kb::json_string(kb::cpu_model_name()).c_str(), kb::json_string(cpu::active_isa()).c_str(),
        kb::onednn_available() ? "true" : "false");
    for (size_t i = 0; i < peak.size(); ++i)
      std::printf("%s\"%d\":%.3f", i ? "," : "", peak[i].threads, peak[i].best_gops);
    std::printf("},\"results\":[");
    bool first = true;
    for (const Row& r : rows_out) {
      if (r.seconds <= 0) continue;
      const double gops = 2.0 *
                          static_cast<double>(r.shape->rows * r.shape->cols * r.shape->tokens) /
                          1e9 / r.seconds;
      const bool is_pack = std::strncmp(r.method, "pack", 4) == 0;
      std::printf(
          "%s{\"shape\":%s,\"type\":%s,\"rows\":%lld,\"cols\":%lld,\"tokens\":%lld,\"threads\":%d,"
          "\"method\":%s,\"ms\":%.4f,\"gops\":%.3f,\"peak_fraction\":%.4f,\"impl\":%s}",
          first ? "" : ",", kb::json_string(r.shape->id).c_str(),
          kb::json_string(ktx::type_name(r.shape->type)).c_str(),
          static_cast<long long>(r.shape->rows), static_cast<long long>(r.shape->cols),
          static_cast<long long>(r.shape->tokens), r.threads, kb::json_string(r.method).c_str(),
          r.seconds * 1e3, is_pack ? 0.0 : gops,
          is_pack ? 0.0 : gops / std::max(1e-9, peak_gops(r.threads)),
          kb::json_string(r.impl).c_str());
      first = false;
    }
    std::printf("]}\n");
  }
  return 0;
}
