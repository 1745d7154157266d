// `ktx bench -m MODEL [-p 512] [-n 128] [-t N] [--json]`: prefill and decode speed of a model on
// random in-vocabulary tokens (no tokenizer needed, so random models work), the per-kind time of
// one decode step, the bytes a decoded token must read, and how close decode comes to the
// memory-bandwidth roofline. docs/PERF.md explains the numbers.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "args.h"
#include "commands.h"
#include "json_writer.h"
#include "model/module_tree.h"
#include "model_args.h"
#include "ops/cpu/onednn_matmul.h"
#include "runtime/session.h"

// The quick bandwidth probe shares its code with bench/bench_memory_bandwidth (header-only).
#include "../../bench/memory_bandwidth.h"

// Which SIMD kernels the CPU dispatch chose. Referenced weakly: it resolves when the kernels are
// linked into ktx (their dispatch is then in use by the operators) and is null while every CPU
// operator runs the scalar references in lib/quant.
#if __has_include("../../kernels/cpu/vec_dot.h")
#include "../../kernels/cpu/vec_dot.h"
namespace ktx::kernels::cpu {
__attribute__((weak)) std::string_view active_isa();
}  // namespace ktx::kernels::cpu
#define KTX_BENCH_KERNEL_ISA 1
#endif

namespace ktx::cli {
namespace {

constexpr const char* kUsage =
    "usage: ktx bench -m MODEL [-p N] [-n N] [-t N] [--json] [--rules FILE] [--ctx N]\n"
    "                 [--backend PATH] [--bandwidth GBs] [--seed N] [--batch B]\n"
    "\n"
    "Prefills N random in-vocabulary tokens as one batch (-p, default 512), then decodes\n"
    "greedily (-n, default 128), and reports:\n"
    "  prefill and decode tokens/s, prefill GFLOP/s (2 per weight multiply-add, attention\n"
    "  scores not counted), the time of one decode step per module kind, the bytes one decoded\n"
    "  token reads (dense weights in full, routed experts n_expert_used/n_expert of theirs, one\n"
    "  embedding row, the KV cache at the mean decode position), and the decode roofline:\n"
    "  memory bandwidth / bytes per token. The bandwidth is --bandwidth GB/s (1e9 bytes/s) or\n"
    "  measured with a quick read probe on the model's threads just before and just after the\n"
    "  decode steps; the larger of the two is the roofline's (on machines whose bandwidth\n"
    "  changes from minute to minute, the fraction is then never flattered by a slow probe).\n"
    "  --batch B (B > 1; 1, the default, skips it) then decodes B copies of the prefilled\n"
    "  session together, -n steps of one random token each, and reports their tokens/s in all\n"
    "  (batch_decode_tok_s) and a batched step's time per module kind.\n"
    "  --json prints one JSON object instead of text.\n";

std::string_view isa() {
#ifdef KTX_BENCH_KERNEL_ISA
  if (&kernels::cpu::active_isa != nullptr) return kernels::cpu::active_isa();
#endif
  return "scalar";
}

// -p / -n: a whole number in [min, max], named as the user typed it.
int64_t count_option(const Args& args, const std::string& name, int64_t fallback, int64_t min,
                     int64_t max) {
  const std::optional<std::string> v = args.option(name);
  if (!v) return fallback;
  int64_t out = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size() || out < min || out > max) {
    args.fail(
        fmt::format("-{} must be a whole number from {} to {}, not '{}'", name, min, max, *v));
  }
  return out;
}

// How much of this process's file mappings (the model, in ktx bench) the kernel maps in 2 MiB
// pages, from /proc/self/smaps_rollup (0 where unknown). Decode streams weights about 1.4x faster
// per thread from such pages (lib/gguf/mapped_file.cpp, KTX_MMAP_HUGE).
uint64_t file_bytes_in_2mib_pages() {
  std::FILE* f = std::fopen("/proc/self/smaps_rollup", "r");
  if (f == nullptr) return 0;
  char line[256];
  unsigned long long kb = 0;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "FilePmdMapped: %llu kB", &kb) == 1) break;
  }
  std::fclose(f);
  return static_cast<uint64_t>(kb) * 1024;
}

double parse_bandwidth(const Args& args) {
  const std::optional<std::string> v = args.option("bandwidth");
  if (!v) return 0;
  double gbs = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), gbs);
  if (ec != std::errc() || end != v->data() + v->size() || !(gbs > 0) || gbs > 1e6) {
    args.fail(
        fmt::format("--bandwidth must be a positive number of GB/s (1e9 bytes/s), not '{}'", *v));
  }
  return gbs;
}

// What one module kind costs a decoded token: bytes read and seconds spent.
struct KindCost {
  uint64_t weight_bytes = 0;     // per decoded token
  uint64_t weight_elements = 0;  // multiply-adds per token (prefill FLOPs), see module_costs
  double decode_seconds = 0;     // over all decode steps
  uint64_t decode_calls = 0;
  double prefill_seconds = 0;
};

// Bytes and multiply-adds one token costs, per module kind. Routed experts: n_expert_used of
// n_expert experts' bytes (exact at batch 1). Embedding: one row (a lookup, no multiply-adds).
// Norms count their weights' bytes, no multiply-adds. A tensor two modules share (tied lm_head)
// counts for each, as each reads it.
void module_costs(const runtime::Model& model, std::map<model::ModuleKind, KindCost>& costs) {
  const model::ModelConfig& c = model.config();
  for (const model::ModuleDesc& m : model.modules()) {
    KindCost& k = costs[m.kind];
    for (const auto& [role, t] : m.weights) {
      if (m.kind == model::ModuleKind::kEmbedding) {
        const int64_t rows = std::max<int64_t>(t->rows(), 1);
        k.weight_bytes += t->n_bytes / static_cast<uint64_t>(rows);
      } else if (m.kind == model::ModuleKind::kExperts && c.n_expert > 0) {
        const auto used = static_cast<uint64_t>(c.n_expert_used);
        const auto all = static_cast<uint64_t>(c.n_expert);
        k.weight_bytes += t->n_bytes * used / all;
        k.weight_elements += t->n_elements * used / all;
      } else {
        k.weight_bytes += t->n_bytes;
        if (m.kind != model::ModuleKind::kRmsNorm && t->shape.size() >= 2) {
          k.weight_elements += t->n_elements;
        }
      }
    }
  }
}

}  // namespace

int run_bench(const std::vector<std::string>& argv) {
  Args args("bench", argv, {"json", "help", "h"},
            with_model_options({"p", "n", "bandwidth", "seed", "batch"}));
  if (args.flag("help") || args.flag("h")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  args.positional({});
  const int64_t n_prompt = count_option(args, "p", 512, 1, 1 << 20);
  const int64_t n_gen = count_option(args, "n", 128, 1, 1 << 20);
  const double given_bandwidth = parse_bandwidth(args);
  const auto seed = static_cast<uint64_t>(args.int_option("seed", 1, 0, INT64_MAX));
  const int64_t n_batch = args.int_option("batch", 1, 1, 1024);
  const int64_t n_ctx = args.int_option("ctx", n_prompt + n_gen, 1, 1 << 24);
  if (n_ctx < n_prompt + n_gen) {
    args.fail(fmt::format("--ctx {} is smaller than -p {} + -n {}", n_ctx, n_prompt, n_gen));
  }
  const std::string path = model_path(args);

  // Always prefault: pages faulted in during the timed steps would count as compute.
  runtime::ModelOptions options;
  options.rules_path = args.option("rules").value_or("");
  options.backend_paths = backend_paths(args);
  options.n_threads =
      static_cast<int>(args.int_option("threads", args.int_option("t", 0, 0, 4096), 0, 4096));
  options.prefault = true;
  const bool terminal = isatty(fileno(stderr)) != 0;
  options.progress = [terminal](double f) {
    if (!terminal) return true;
    if (f >= 1.0) {
      fmt::print(stderr, "\r\033[K");
    } else {
      fmt::print(stderr, "\rloading {:3.0f}%", f * 100.0);
    }
    return true;
  };
  const std::shared_ptr<runtime::Model> model = runtime::Model::load(path, options);
  for (const std::string& w : model->warnings()) fmt::print(stderr, "ktx bench: warning: {}\n", w);
  const model::ModelConfig& config = model->config();

  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int32_t> token(0, static_cast<int32_t>(config.n_vocab - 1));
  std::vector<int32_t> prompt(static_cast<size_t>(n_prompt));
  for (int32_t& t : prompt) t = token(rng);

  runtime::Session session(model, n_ctx);
  using clock = std::chrono::steady_clock;
  std::map<model::ModuleKind, KindCost> costs;

  // Prefill: one batch.
  model->reset_timings();
  auto t0 = clock::now();
  std::span<const float> logits = session.eval(prompt);
  const double prefill_s = std::chrono::duration<double>(clock::now() - t0).count();
  for (const exec::KindTiming& t : model->timings()) costs[t.kind].prefill_seconds = t.seconds;
  // --batch B: B copies of the prefilled session, to decode together after the single decode.
  std::vector<runtime::Session> batch;
  if (n_batch > 1) {
    for (int64_t i = 0; i < n_batch; ++i) batch.push_back(session.fork());
  }

  // The roofline's bandwidth, probed on both sides of the decode steps (the model's pages are
  // mapped by now; the probe's buffer is freed before decode starts).
  const uint64_t probe_bytes = given_bandwidth > 0 ? 0 : bench::default_probe_bytes();
  const auto probe = [&] {
    return bench::measure_read_bandwidth(probe_bytes, model->n_threads(), 10).best_gbs;
  };
  const double bandwidth_before = given_bandwidth > 0 ? given_bandwidth : probe();

  // Decode: greedy, one token per step; only the forward steps are timed.
  model->reset_timings();
  double decode_s = 0;
  for (int64_t i = 0; i < n_gen; ++i) {
    const int32_t next =
        static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
    t0 = clock::now();
    logits = session.eval({&next, 1});
    decode_s += std::chrono::duration<double>(clock::now() - t0).count();
  }
  for (const exec::KindTiming& t : model->timings()) {
    costs[t.kind].decode_seconds = t.seconds;
    costs[t.kind].decode_calls = t.calls;
  }

  // Bytes per decoded token. Step i attends to n_prompt + i + 1 cached positions.
  module_costs(*model, costs);
  const double mean_positions = static_cast<double>(n_prompt) + static_cast<double>(n_gen + 1) / 2;
  const double kv_bytes = static_cast<double>(session.kv_bytes_per_token()) * mean_positions;
  const model::ModuleKind attn_kind = config.arch == model::Architecture::kDeepseek2
                                          ? model::ModuleKind::kMlaAttention
                                          : model::ModuleKind::kGqaAttention;
  double weight_bytes = 0, prefill_macs = 0;
  for (const auto& [kind, c] : costs) {
    weight_bytes += static_cast<double>(c.weight_bytes);
    // The head runs for the last prompt token only.
    prefill_macs += static_cast<double>(c.weight_elements) *
                    (kind == model::ModuleKind::kLmHead ? 1.0 : static_cast<double>(n_prompt));
  }
  const double bytes_per_token = weight_bytes + kv_bytes;
  uint64_t model_bytes = 0;
  for (const gguf::TensorInfo& t : model->file().tensors()) model_bytes += t.n_bytes;
  const uint64_t huge_bytes = file_bytes_in_2mib_pages();

  const double bandwidth_after = given_bandwidth > 0 ? given_bandwidth : probe();

  // Batched decode: every step, one token for each of the B sessions, drawn at random (so that
  // the sessions route to different experts, as different conversations do; greedy copies of
  // one prompt would all pick the same), as one forward pass.
  double batch_s = 0;
  std::vector<exec::KindTiming> batch_timings;
  if (n_batch > 1) {
    model->reset_timings();
    std::vector<runtime::Session*> sessions;
    for (runtime::Session& b : batch) sessions.push_back(&b);
    std::vector<int32_t> tokens(static_cast<size_t>(n_batch));
    for (int64_t i = 0; i < n_gen; ++i) {
      for (int32_t& t : tokens) t = token(rng);
      t0 = clock::now();
      runtime::Session::decode_batch(sessions, tokens);
      batch_s += std::chrono::duration<double>(clock::now() - t0).count();
    }
    batch_timings = model->timings();
    std::erase_if(batch_timings, [](const exec::KindTiming& t) { return t.calls == 0; });
    std::sort(
        batch_timings.begin(), batch_timings.end(),
        [](const exec::KindTiming& a, const exec::KindTiming& b) { return a.seconds > b.seconds; });
  }
  const double bandwidth = std::max(bandwidth_before, bandwidth_after);
  const double prefill_tok_s = static_cast<double>(n_prompt) / prefill_s;
  const double decode_tok_s = static_cast<double>(n_gen) / decode_s;
  const double roofline_tok_s = bandwidth * 1e9 / bytes_per_token;
  const double n = static_cast<double>(n_gen);

  // Kinds by decode time, slowest first; those the model lacks are left out.
  std::vector<std::pair<model::ModuleKind, KindCost>> kinds;
  double kinds_s = 0;
  for (const auto& [kind, c] : costs) {
    if (c.decode_calls == 0 && c.prefill_seconds == 0 && c.weight_bytes == 0) continue;
    kinds.emplace_back(kind, c);
    kinds_s += c.decode_seconds;
  }
  std::stable_sort(kinds.begin(), kinds.end(), [](const auto& a, const auto& b) {
    return a.second.decode_seconds > b.second.decode_seconds;
  });
  auto kind_bytes = [&](model::ModuleKind kind, const KindCost& c) {
    return static_cast<double>(c.weight_bytes) + (kind == attn_kind ? kv_bytes : 0.0);
  };

  if (args.flag("json")) {
    JsonWriter j(stdout);
    j.begin_object();
    j.field("model", path);
    j.field("arch", config.arch_name);
    j.field("n_layer", config.n_layer);
    j.field("model_bytes", model_bytes);
    j.field("model_bytes_in_2mib_pages", huge_bytes);
    j.field("rules", options.rules_path);
    j.field("threads", static_cast<int64_t>(model->n_threads()));
    j.field("isa", isa());
    j.field("onednn", ops::cpu::onednn_enabled());
    j.field("numa_nodes", static_cast<int64_t>(model->n_numa_nodes()));
    j.field("n_prompt", n_prompt);
    j.field("n_gen", n_gen);
    j.field("prefill_seconds", prefill_s);
    j.field("prefill_tok_s", prefill_tok_s);
    j.field("prefill_gflop_s", 2.0 * prefill_macs / prefill_s / 1e9);
    j.field("decode_seconds", decode_s);
    j.field("decode_tok_s", decode_tok_s);
    j.field("decode_ms_per_token", decode_s / n * 1e3);
    j.field("bytes_per_token", bytes_per_token);
    j.field("weight_bytes_per_token", weight_bytes);
    j.field("kv_bytes_per_token", kv_bytes);
    j.field("decode_gbs", bytes_per_token * decode_tok_s / 1e9);
    j.field("bandwidth_gbs", bandwidth);
    j.field("bandwidth_before_decode_gbs", bandwidth_before);
    j.field("bandwidth_after_decode_gbs", bandwidth_after);
    j.field("bandwidth_source", given_bandwidth > 0 ? "given" : "measured");
    j.field("roofline_decode_tok_s", roofline_tok_s);
    j.field("roofline_fraction", decode_tok_s / roofline_tok_s);
    if (n_batch > 1) {
      j.field("batch", n_batch);
      j.field("batch_decode_tok_s", static_cast<double>(n_batch * n_gen) / batch_s);
      j.field("batch_ms_per_step", batch_s / n * 1e3);
      j.key("batch_breakdown");  // one batched step, per module kind
      j.begin_object();
      for (const exec::KindTiming& t : batch_timings) {
        j.field(model::module_kind_name(t.kind), t.seconds / n * 1e3);
      }
      j.end_object();
    }
    j.key("decode_breakdown");  // one decode step, per module kind
    j.begin_object();
    for (const auto& [kind, c] : kinds) {
      j.key(model::module_kind_name(kind));
      j.begin_object();
      j.field("ms_per_token", c.decode_seconds / n * 1e3);
      j.field("share", decode_s > 0 ? c.decode_seconds / decode_s : 0.0);
      j.field("calls_per_token", static_cast<double>(c.decode_calls) / n);
      j.field("bytes_per_token", kind_bytes(kind, c));
      j.field("gbs", c.decode_seconds > 0 ? kind_bytes(kind, c) * n / c.decode_seconds / 1e9 : 0.0);
      j.end_object();
    }
    j.end_object();
    j.field("decode_other_ms_per_token", (decode_s - kinds_s) / n * 1e3);
    j.key("prefill_breakdown");  // seconds of the whole prefill, per module kind
    j.begin_object();
    for (const auto& [kind, c] : kinds) j.field(model::module_kind_name(kind), c.prefill_seconds);
    j.end_object();
    j.end_object();
    std::fputc('\n', stdout);
    return 0;
  }

  constexpr double kMB = 1e6;
  fmt::print("model    {} ({}, {} layers, {:.2f} GB)\n", path, config.arch_name, config.n_layer,
             static_cast<double>(model_bytes) / 1e9);
  fmt::print("threads  {}, kernels {}{}{}{}\n", model->n_threads(), isa(),
             ops::cpu::onednn_enabled() ? " + oneDNN (F32/BF16 prefill)" : "",
             model->n_numa_nodes() > 1
                 ? fmt::format(", experts split over {} NUMA nodes", model->n_numa_nodes())
                 : std::string(),
             options.rules_path.empty() ? "" : ", rules " + options.rules_path);
  fmt::print("pages    {:.2f} GB of the model mapped in 2 MiB pages{}\n",
             static_cast<double>(huge_bytes) / 1e9,
             huge_bytes * 2 < model_bytes ? " (KTX_MMAP_HUGE=2 re-reads the file into them)" : "");
  fmt::print(
      "prefill  {} tokens in {:.3f} s: {:.2f} tok/s, {:.2f} GFLOP/s (weight multiply-adds)\n",
      n_prompt, prefill_s, prefill_tok_s, 2.0 * prefill_macs / prefill_s / 1e9);
  fmt::print("decode   {} tokens in {:.3f} s: {:.2f} tok/s ({:.2f} ms/token)\n", n_gen, decode_s,
             decode_tok_s, decode_s / n * 1e3);
  fmt::print("bytes per decoded token: {:.2f} MB (weights {:.2f} MB, KV cache {:.2f} MB)\n",
             bytes_per_token / kMB, weight_bytes / kMB, kv_bytes / kMB);
  fmt::print(
      "memory bandwidth {:.2f} GB/s ({}) -> roofline {:.2f} tok/s; decode reaches {:.1f}% "
      "of it ({:.2f} GB/s)\n",
      bandwidth,
      given_bandwidth > 0
          ? std::string("given")
          : fmt::format("measured: {} threads, {} MiB; {:.2f} before decode, {:.2f} after",
                        model->n_threads(), probe_bytes >> 20, bandwidth_before, bandwidth_after),
      roofline_tok_s, 100.0 * decode_tok_s / roofline_tok_s, bytes_per_token * decode_tok_s / 1e9);
  if (n_batch > 1) {
    const double batch_tok_s = static_cast<double>(n_batch * n_gen) / batch_s;
    fmt::print(
        "batch    {} sessions x {} steps in {:.3f} s: {:.2f} tok/s in all ({:.2f} ms a step, "
        "{:.2f}x one session's decode)\n",
        n_batch, n_gen, batch_s, batch_tok_s, batch_s / n * 1e3, batch_tok_s / decode_tok_s);
    std::string kinds_text;
    for (const exec::KindTiming& t : batch_timings) {
      kinds_text += fmt::format("{}{} {:.2f}", kinds_text.empty() ? "" : ", ",
                                model::module_kind_name(t.kind), t.seconds / n * 1e3);
    }
    fmt::print("         a batched step, ms per kind: {}\n", kinds_text);
  }
  fmt::print("\none decode step (mean of {}):\n", n_gen);
  fmt::print("  {:<15} {:>10} {:>7} {:>7} {:>10} {:>8}\n", "kind", "ms/token", "share", "calls",
             "MB/token", "GB/s");
  for (const auto& [kind, c] : kinds) {
    const double s = c.decode_seconds / n;
    fmt::print("  {:<15} {:>10.3f} {:>6.1f}% {:>7.1f} {:>10.2f} {:>8.2f}\n",
               model::module_kind_name(kind), s * 1e3, 100.0 * c.decode_seconds / decode_s,
               static_cast<double>(c.decode_calls) / n, kind_bytes(kind, c) / kMB,
               s > 0 ? kind_bytes(kind, c) / s / 1e9 : 0.0);
  }
  fmt::print("  {:<15} {:>10.3f} {:>6.1f}%   (executor, session)\n", "other",
             (decode_s - kinds_s) / n * 1e3, 100.0 * (decode_s - kinds_s) / decode_s);
  return 0;
}

}  // namespace ktx::cli
