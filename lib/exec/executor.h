// Runs the forward pass of a model as a sequence of module calls, each through the operator the
// plan chose for it. Knows the shape of a transformer block (pre-norm, residual adds, dense MLP or
// MoE with shared experts) and nothing about how any module computes.
//
// One MoE block:
//   x = norm(h); gate(x) -> ids, weights; experts.submit(x, ids, weights)   (CPU pool, async)
//   shared = shared_experts(x)                                               (meanwhile)
//   experts.wait(); h += routed + shared
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "exec/activation.h"
#include "exec/plan.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "ops/operator.h"
#include "registry/backend_loader.h"
#include "registry/registry.h"
#include "runtime/kv_cache.h"

namespace ktx::exec {

// Wall time spent per module kind, accumulated over forward calls (for `ktx bench` breakdowns).
struct KindTiming {
  model::ModuleKind kind;
  double seconds = 0;
  uint64_t calls = 0;
};

class Executor {
 public:
  // Creates one operator per module (two when its prefill and generation devices differ).
  // Throws ktx::Error naming the module when the plan misses it, names an implementation the
  // registry lacks or whose check() refuses, or places it on a device no backend in `backends`
  // serves (null: the CPU only). `backends` must outlive the executor.
  Executor(const model::ModelConfig& config, const std::vector<model::ModuleDesc>& modules,
           const Plan& plan, const registry::OperatorRegistry& registry,
           const registry::BackendSet* backends = nullptr);
  ~Executor();
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // An empty cache for `n_ctx` positions with the widths each layer's attention needs, in the
  // memory of the device that runs that layer's attention.
  runtime::KvCache make_kv_cache(int64_t n_ctx) const;

  // Copies rows [0, n_rows) of layer `il`'s cache (its a then its b part) to host memory, or
  // from it, through the backend of the device holding them: saving, restoring and forking a
  // session. Throws ktx::Error (kInternal) when an accelerator's copy fails.
  void read_cache_rows(const runtime::KvCache& cache, size_t il, int64_t n_rows, float* a,
                       float* b) const;
  void write_cache_rows(runtime::KvCache& cache, size_t il, int64_t n_rows, const float* a,
                        const float* b) const;
  // Copies rows [0, n_rows) of layer `il` from one cache of this model to another (same device).
  void copy_cache_rows(const runtime::KvCache& from, runtime::KvCache& to, size_t il,
                       int64_t n_rows) const;
  // Whether layer `il`'s cache is in host memory (then its rows may be read in place).
  bool cache_on_host(size_t il) const;

  // Evaluates `tokens` at positions pos0.. (the cache must hold pos0 earlier positions) and
  // writes logits [n_out][n_vocab]: n_out = tokens.size() when all_logits, else 1 (the last
  // token). Token ids must already be checked against n_vocab. Not reentrant: one call at a time.
  void forward(ops::ExecContext& ctx, std::span<const int32_t> tokens, int64_t pos0,
               runtime::KvCache& cache, float* logits, bool all_logits);

  // One sequence of a batched decode step: its cache and the position its token takes.
  struct Sequence {
    runtime::KvCache* cache = nullptr;
    int64_t pos = 0;
  };
  // One decode step of several sequences at once: tokens[i] at sequences[i].pos in
  // sequences[i].cache, each cache holding that sequence's earlier positions; writes every
  // token's logits [n][n_vocab]. The experts, MLPs and the head read their weights once for all
  // the sequences; each attention reads its own cache. The caches must be distinct.
  void forward_batch(ops::ExecContext& ctx, std::span<const int32_t> tokens,
                     std::span<const Sequence> sequences, float* logits);

  const std::vector<KindTiming>& timings() const { return timings_; }
  // Activation bytes copied between the host and accelerators since the last reset_timings().
  const TransferStats& transfers() const;
  void reset_timings();

 private:
  struct ModuleOps;  // one module's operator(s)
  struct LayerOps;
  struct Buffers;

  void run(ops::ExecContext& ctx, std::span<const int32_t> tokens,
           std::span<const Sequence> sequences, float* logits, bool all_logits);
  template <class Op>
  Op& pick(const ModuleOps& m, int64_t n_tokens) const;
  void time(model::ModuleKind kind, std::chrono::steady_clock::time_point start);
  void allocate_cache(runtime::FloatArray& array, const registry::Device& device, size_t n) const;

  const model::ModelConfig& config_;
  const registry::BackendSet* backends_;
  std::vector<std::unique_ptr<ModuleOps>> modules_;
  ModuleOps* embed_ = nullptr;
  ModuleOps* final_norm_ = nullptr;
  ModuleOps* lm_head_ = nullptr;
  std::vector<LayerOps> layers_;
  std::unique_ptr<Buffers> buffers_;
  std::vector<KindTiming> timings_;
};

}  // namespace ktx::exec
