// The cost formulas. Matrix-vector products do 2 FLOPs per weight; absorbed MLA decode reads the
// latent cache once for all heads and does 2 * n_head * (kv_lora_rank + rope) FLOPs per cached
// token for scores plus 2 * n_head * kv_lora_rank for values (REFERENCE.md).
#include "planner/costs.h"

#include <fmt/format.h>

#include <cmath>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ops/cpu/repacked.h"

namespace ktx::planner {
namespace {

using model::ModuleKind;

struct WeightTotals {
  uint64_t bytes = 0;
  double elements = 0;
};

// Weights an operator keeps. A file with both attn_kv_b and its split attn_k_b / attn_v_b gives
// the module all three; an operator uses one form, so count the split pair only.
WeightTotals weight_totals(const model::ModuleDesc& m) {
  const bool split = m.find_weight("k_b") != nullptr && m.find_weight("v_b") != nullptr;
  WeightTotals t;
  for (const auto& [role, info] : m.weights) {
    if (split && role == "kv_b") continue;
    t.bytes += info->n_bytes;
    t.elements += static_cast<double>(info->n_elements);
  }
  return t;
}

// Cached values per token per layer: MLA keeps the latent and the shared rope key.
int64_t kv_values(const model::ModelConfig& c, ModuleKind kind) {
  if (kind == ModuleKind::kMlaAttention) return c.kv_lora_rank + c.qk_rope_head_dim;
  return 2 * c.n_head_kv * c.head_dim;
}

// FLOPs of attention over `context` cached tokens, per query token (softmax excluded).
double attention_flops(const model::ModelConfig& c, ModuleKind kind, double context) {
  if (kind == ModuleKind::kMlaAttention) {
    return 2.0 * c.n_head * context * (c.kv_lora_rank + c.qk_rope_head_dim) +
           2.0 * c.n_head * context * c.kv_lora_rank;
  }
  return 2.0 * 2.0 * c.n_head * context * c.head_dim;
}

}  // namespace

std::vector<ModuleCost> compute_costs(const std::vector<model::ModuleDesc>& modules,
                                      const model::ModelConfig& config,
                                      const CostOptions& options) {
  std::vector<ModuleCost> costs;
  costs.reserve(modules.size());
  const double ctx = static_cast<double>(options.ctx);
  const double prefill_context = static_cast<double>(options.prefill_batch) / 2.0;
  for (const model::ModuleDesc& m : modules) {
    ModuleCost c;
    c.name = m.name;
    c.kind = m.kind;
    c.layer = m.layer;
    c.shared_experts = m.kind == ModuleKind::kMlp && m.name.ends_with(".shared_experts");
    const WeightTotals w = weight_totals(m);
    c.weight_bytes = w.bytes;
    c.repack_added_bytes = ops::cpu::repack_added_bytes(m);
    c.weight_bytes_read = static_cast<double>(w.bytes);
    c.flops = 2.0 * w.elements;
    switch (m.kind) {
      case ModuleKind::kEmbedding: {
        const gguf::TensorInfo& table = m.weight("weight");
        c.rows = table.rows();
        c.weight_bytes_read = c.rows > 0 ? static_cast<double>(w.bytes) / c.rows : 0;
        c.flops = 0;
        break;
      }
      case ModuleKind::kRmsNorm:
        c.flops = 4.0 * w.elements;  // square, sum, scale, multiply
        break;
      case ModuleKind::kMlaAttention:
      case ModuleKind::kGqaAttention: {
        const double per_token = static_cast<double>(kv_values(config, m.kind)) *
                                 static_cast<double>(options.kv_bytes_per_value);
        c.kv_bytes = static_cast<uint64_t>(per_token * ctx);
        c.kv_bytes_read = per_token * ctx;
        c.flops += attention_flops(config, m.kind, ctx);
        c.prefill_flops = 2.0 * w.elements + attention_flops(config, m.kind, prefill_context);
        break;
      }
      case ModuleKind::kExperts: {
        c.n_expert = config.n_expert;
        c.n_expert_used = config.n_expert_used;
        if (c.n_expert <= 0 || c.n_expert_used <= 0 || c.n_expert_used > c.n_expert) {
          throw Error(ErrorCode::kInvalidArgument,
                      fmt::format("{}: experts module of a model with {} experts, {} used", m.name,
                                  c.n_expert, c.n_expert_used));
        }
        c.bytes_per_expert = w.bytes / static_cast<uint64_t>(c.n_expert);
        const double used = static_cast<double>(c.n_expert_used) / static_cast<double>(c.n_expert);
        c.weight_bytes_read = static_cast<double>(w.bytes) * used;
        c.flops = 2.0 * w.elements * used;
        break;
      }
      case ModuleKind::kMlp:
      case ModuleKind::kMoeGate:
      case ModuleKind::kLmHead:
        break;
    }
    if (c.prefill_flops == 0) c.prefill_flops = c.flops;
    costs.push_back(std::move(c));
  }
  return costs;
}

}  // namespace ktx::planner
