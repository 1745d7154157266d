// What each module costs: resident bytes, and per token the bytes it reads and the FLOPs it does
// — the inputs of the placement planner. Computed from a module tree (a real file, or a synthetic
// one from arch_preset.h), so both paths share one set of formulas.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/config.h"
#include "model/module_tree.h"

namespace ktx::planner {

struct CostOptions {
  int64_t ctx = 4096;              // tokens of KV cache to hold, and the context decode is timed at
  int64_t kv_bytes_per_value = 4;  // ktx keeps its caches in f32 (runtime/kv_cache.h)
  int64_t prefill_batch = 512;     // tokens per prefill step (prefill FLOPs use context batch/2)
};

struct ModuleCost {
  std::string name;  // "model.layers.3.mlp.experts"
  model::ModuleKind kind = model::ModuleKind::kMlp;
  int64_t layer = -1;
  bool shared_experts = false;  // an mlp that runs beside the routed experts of its layer

  uint64_t weight_bytes = 0;  // resident weights
  uint64_t kv_bytes = 0;      // attention: the KV cache for ctx tokens, kept where it runs
  // The memory option repack adds on this CPU: its copies whose file pages stay mapped beside
  // them (ops/cpu/repacked.h, repack_added_bytes; the others replace their pages).
  uint64_t repack_added_bytes = 0;

  // Per decode token, at context ctx.
  double weight_bytes_read =
      0;                     // experts: n_expert_used / n_expert of their bytes; embedding: a row
  double kv_bytes_read = 0;  // the whole cache, once
  double flops = 0;

  // Per prefill token: FLOPs at the average context of a batch (weights are read once a batch).
  double prefill_flops = 0;
  int64_t rows = 0;  // embedding: vocabulary rows (a batch reads at most one row per token)

  // Routed experts only.
  int64_t n_expert = 0;
  int64_t n_expert_used = 0;
  uint64_t bytes_per_expert = 0;

  double bytes_read() const { return weight_bytes_read + kv_bytes_read; }
  // FLOPs per byte read in decode: the number that sends a module to the GPU or the CPU.
  double arithmetic_intensity() const { return bytes_read() > 0 ? flops / bytes_read() : 0; }
};

// One cost per module, in module order. Throws ktx::Error(kInvalidArgument) when a module lacks
// the weights its kind needs.
std::vector<ModuleCost> compute_costs(const std::vector<model::ModuleDesc>& modules,
                                      const model::ModelConfig& config,
                                      const CostOptions& options = {});

}  // namespace ktx::planner
