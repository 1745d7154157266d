// The transformer block structure, with every module delegated to its planned operator.
#include "exec/executor.h"

#include <fmt/format.h>

#include <algorithm>

#include "ktx/error.h"

namespace ktx::exec {

using model::ModuleKind;

struct Executor::ModuleOps {
  const model::ModuleDesc* desc = nullptr;
  std::unique_ptr<ops::Operator> generate;  // decode steps (one token)
  std::unique_ptr<ops::Operator> prefill;   // null when it is the same operator as `generate`
  registry::Device generate_device;
  registry::Device prefill_device;

  const registry::Device& device(int64_t n_tokens) const {
    return n_tokens > 1 ? prefill_device : generate_device;
  }
};

struct Executor::LayerOps {
  ModuleOps* attn_norm = nullptr;
  ModuleOps* attn = nullptr;
  ModuleOps* ffn_norm = nullptr;
  ModuleOps* mlp = nullptr;     // dense layers
  ModuleOps* gate = nullptr;    // MoE layers
  ModuleOps* experts = nullptr;
  ModuleOps* shared = nullptr;  // optional
};

// Activations for one batch, grown on demand and reused between calls.
struct Executor::Buffers {
  std::vector<float> h, x, attn_out, ffn_out, routed, last;
  std::vector<int32_t> ids;
  std::vector<float> weights;

  void reserve(int64_t n_tokens, const model::ModelConfig& c) {
    const size_t act = static_cast<size_t>(n_tokens * c.n_embd);
    for (auto* v : {&h, &x, &attn_out, &ffn_out, &routed}) {
      if (v->size() < act) v->resize(act);
    }
    last.resize(static_cast<size_t>(c.n_embd));
    const size_t k = static_cast<size_t>(n_tokens * std::max<int64_t>(c.n_expert_used, 1));
    if (ids.size() < k) {
      ids.resize(k);
      weights.resize(k);
    }
  }
};

namespace {

std::unique_ptr<ops::Operator> create_op(const model::ModuleDesc& module,
                                         const model::ModelConfig& config,
                                         const Placement& placement, registry::Device device,
                                         const registry::OperatorRegistry& registry) {
  const registry::OpImpl* impl = registry.find(placement.impl);
  if (impl == nullptr) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("module {}: operator implementation '{}' is not registered ({})",
                            module.name, placement.impl, placement.why));
  }
  if (impl->kind != module.kind) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("module {} is {}, but '{}' implements {} ({})", module.name,
                            model::module_kind_name(module.kind), impl->name,
                            model::module_kind_name(impl->kind), placement.why));
  }
  if (impl->device_kind != device.kind) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("module {}: '{}' cannot run on {} ({})", module.name, impl->name,
                            device.name(), placement.why));
  }
  const registry::OpCreateArgs args{module, config, device, placement.options};
  if (impl->check) {
    if (auto why_not = impl->check(args)) {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("module {}: '{}' cannot run it on {}: {}", module.name, impl->name,
                              device.name(), *why_not));
    }
  }
  std::unique_ptr<ops::Operator> op = impl->create(args);
  // The interface is checked once here, so the forward pass can use a static cast.
  bool implements = false;
  switch (module.kind) {
    case ModuleKind::kEmbedding: implements = dynamic_cast<ops::EmbeddingOp*>(op.get()); break;
    case ModuleKind::kRmsNorm: implements = dynamic_cast<ops::RmsNormOp*>(op.get()); break;
    case ModuleKind::kMlaAttention:
    case ModuleKind::kGqaAttention: implements = dynamic_cast<ops::AttentionOp*>(op.get()); break;
    case ModuleKind::kMlp: implements = dynamic_cast<ops::MlpOp*>(op.get()); break;
    case ModuleKind::kMoeGate: implements = dynamic_cast<ops::MoeGateOp*>(op.get()); break;
    case ModuleKind::kExperts: implements = dynamic_cast<ops::ExpertsOp*>(op.get()); break;
    case ModuleKind::kLmHead: implements = dynamic_cast<ops::LmHeadOp*>(op.get()); break;
  }
  if (!op || !implements) {
    throw Error(ErrorCode::kInternal,
                fmt::format("module {}: operator '{}' does not implement the {} interface",
                            module.name, impl->name, model::module_kind_name(module.kind)));
  }
  return op;
}

}  // namespace

Executor::Executor(const model::ModelConfig& config, const std::vector<model::ModuleDesc>& modules,
                   const Plan& plan, const registry::OperatorRegistry& registry)
    : config_(config), buffers_(std::make_unique<Buffers>()) {
  layers_.resize(static_cast<size_t>(config.n_layer));
  for (const model::ModuleDesc& module : modules) {
    const Placement* placement = plan.find(module.name);
    if (placement == nullptr) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("the plan has no placement for module {}", module.name));
    }
    auto ops = std::make_unique<ModuleOps>();
    ops->desc = &module;
    ops->generate_device = placement->generate_device;
    ops->prefill_device = placement->prefill_device;
    ops->generate = create_op(module, config, *placement, placement->generate_device, registry);
    if (placement->prefill_device != placement->generate_device) {
      ops->prefill = create_op(module, config, *placement, placement->prefill_device, registry);
    }
    ModuleOps* m = ops.get();
    modules_.push_back(std::move(ops));

    const bool in_layer = module.layer >= 0 && module.layer < config.n_layer;
    LayerOps* layer = in_layer ? &layers_[static_cast<size_t>(module.layer)] : nullptr;
    auto need_layer = [&] {
      if (layer == nullptr) {
        throw Error(ErrorCode::kInternal,
                    fmt::format("module {} has no valid layer number", module.name));
      }
      return layer;
    };
    switch (module.kind) {
      case ModuleKind::kEmbedding: embed_ = m; break;
      case ModuleKind::kLmHead: lm_head_ = m; break;
      case ModuleKind::kRmsNorm:
        if (layer == nullptr) {
          final_norm_ = m;
        } else if (layer->attn_norm == nullptr) {
          layer->attn_norm = m;  // input_layernorm comes first in the module tree
        } else {
          layer->ffn_norm = m;
        }
        break;
      case ModuleKind::kMlaAttention:
      case ModuleKind::kGqaAttention: need_layer()->attn = m; break;
      case ModuleKind::kMoeGate: need_layer()->gate = m; break;
      case ModuleKind::kExperts: need_layer()->experts = m; break;
      case ModuleKind::kMlp:
        if (module.name.size() >= 15 &&
            module.name.compare(module.name.size() - 15, 15, ".shared_experts") == 0) {
          need_layer()->shared = m;
        } else {
          need_layer()->mlp = m;
        }
        break;
    }
  }
  if (embed_ == nullptr || final_norm_ == nullptr || lm_head_ == nullptr) {
    throw Error(ErrorCode::kInternal, "module tree lacks embed_tokens, norm or lm_head");
  }
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerOps& L = layers_[l];
    const bool moe = L.gate != nullptr && L.experts != nullptr;
    if (L.attn_norm == nullptr || L.attn == nullptr || L.ffn_norm == nullptr ||
        (L.mlp == nullptr && !moe)) {
      throw Error(ErrorCode::kInternal, fmt::format("module tree of layer {} is incomplete", l));
    }
  }
  for (ModuleKind k : {ModuleKind::kEmbedding, ModuleKind::kRmsNorm, ModuleKind::kMlaAttention,
                       ModuleKind::kGqaAttention, ModuleKind::kMlp, ModuleKind::kMoeGate,
                       ModuleKind::kExperts, ModuleKind::kLmHead}) {
    timings_.push_back({k, 0, 0});
  }
}

Executor::~Executor() = default;

runtime::KvCache Executor::make_kv_cache(int64_t n_ctx) const {
  runtime::KvCache cache;
  cache.n_ctx = n_ctx;
  cache.layers.resize(static_cast<size_t>(config_.n_layer));
  for (runtime::LayerKvCache& l : cache.layers) {
    if (config_.arch == model::Architecture::kDeepseek2) {
      l.width_a = config_.kv_lora_rank;
      l.width_b = config_.qk_rope_head_dim;
    } else {
      l.width_a = config_.n_head_kv * config_.head_dim;
      l.width_b = config_.n_head_kv * config_.head_dim;
    }
    l.a.assign(static_cast<size_t>(n_ctx * l.width_a), 0.0f);
    l.b.assign(static_cast<size_t>(n_ctx * l.width_b), 0.0f);
  }
  return cache;
}

template <class Op>
Op& Executor::pick(const ModuleOps& m, int64_t n_tokens) const {
  ops::Operator* op = (n_tokens > 1 && m.prefill) ? m.prefill.get() : m.generate.get();
  return *static_cast<Op*>(op);  // create_op checked the interface
}

void Executor::time(ModuleKind kind, std::chrono::steady_clock::time_point start) {
  const double s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (KindTiming& t : timings_) {
    if (t.kind == kind) {
      t.seconds += s;
      t.calls += 1;
    }
  }
}

void Executor::reset_timings() {
  for (KindTiming& t : timings_) t = {t.kind, 0, 0};
}

void Executor::forward(ops::ExecContext& ctx, std::span<const int32_t> tokens, int64_t pos0,
                       runtime::KvCache& cache, float* logits, bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  if (n == 0) return;
  if (pos0 < 0 || pos0 + n > cache.n_ctx) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("positions {}..{} do not fit the context of {} tokens", pos0,
                            pos0 + n - 1, cache.n_ctx));
  }
  Buffers& b = *buffers_;
  b.reserve(n, config_);
  const int64_t d = config_.n_embd;
  using clock = std::chrono::steady_clock;

  auto t0 = clock::now();
  pick<ops::EmbeddingOp>(*embed_, n).forward(ctx, tokens, b.h.data());
  time(ModuleKind::kEmbedding, t0);

  const ops::Batch batch{n, pos0};
  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerOps& L = layers_[l];
    t0 = clock::now();
    pick<ops::RmsNormOp>(*L.attn_norm, n).forward(ctx, n, b.h.data(), b.x.data());
    time(ModuleKind::kRmsNorm, t0);

    t0 = clock::now();
    pick<ops::AttentionOp>(*L.attn, n).forward(ctx, batch, b.x.data(), b.attn_out.data(),
                                                cache.layers[l]);
    time(L.attn->desc->kind, t0);
    for (int64_t i = 0; i < n * d; ++i) b.h[i] += b.attn_out[i];

    t0 = clock::now();
    pick<ops::RmsNormOp>(*L.ffn_norm, n).forward(ctx, n, b.h.data(), b.x.data());
    time(ModuleKind::kRmsNorm, t0);

    if (L.mlp != nullptr) {
      t0 = clock::now();
      pick<ops::MlpOp>(*L.mlp, n).forward(ctx, n, b.x.data(), b.ffn_out.data());
      time(ModuleKind::kMlp, t0);
      for (int64_t i = 0; i < n * d; ++i) b.h[i] += b.ffn_out[i];
      continue;
    }
    t0 = clock::now();
    pick<ops::MoeGateOp>(*L.gate, n).forward(ctx, n, b.x.data(), b.ids.data(), b.weights.data());
    time(ModuleKind::kMoeGate, t0);
    // Routed experts start on the CPU pool. Shared experts placed on a GPU run meanwhile; on the
    // CPU they would only compete for the same cores and memory bandwidth, so they run after the
    // join with the whole pool.
    t0 = clock::now();
    auto& experts = pick<ops::ExpertsOp>(*L.experts, n);
    experts.submit(ctx, n, b.x.data(), b.ids.data(), b.weights.data(), b.routed.data());
    const bool shared_overlaps =
        L.shared != nullptr && L.shared->device(n).kind != registry::DeviceKind::kCpu;
    if (shared_overlaps) {
      pick<ops::MlpOp>(*L.shared, n).forward(ctx, n, b.x.data(), b.ffn_out.data());
    }
    experts.wait(ctx);
    time(ModuleKind::kExperts, t0);
    if (L.shared != nullptr && !shared_overlaps) {
      t0 = clock::now();
      pick<ops::MlpOp>(*L.shared, n).forward(ctx, n, b.x.data(), b.ffn_out.data());
      time(ModuleKind::kMlp, t0);
    }
    for (int64_t i = 0; i < n * d; ++i) {
      b.h[i] += b.routed[i] + (L.shared != nullptr ? b.ffn_out[i] : 0.0f);
    }
  }

  // Only the rows whose logits are wanted go through the final norm and the head.
  const int64_t n_out = all_logits ? n : 1;
  const float* rows = all_logits ? b.h.data() : b.h.data() + (n - 1) * d;
  t0 = clock::now();
  pick<ops::RmsNormOp>(*final_norm_, n_out).forward(ctx, n_out, rows, b.x.data());
  time(ModuleKind::kRmsNorm, t0);
  t0 = clock::now();
  pick<ops::LmHeadOp>(*lm_head_, n_out).forward(ctx, n_out, b.x.data(), logits);
  time(ModuleKind::kLmHead, t0);
}

}  // namespace ktx::exec
