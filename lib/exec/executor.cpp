// The transformer block structure, with every module delegated to its planned operator.
#include "exec/executor.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <new>

#include "exec/expert_split.h"
#include "ktx/error.h"

namespace ktx::exec {

using model::ModuleKind;

struct Executor::ModuleOps {
  const model::ModuleDesc* desc = nullptr;
  std::unique_ptr<ops::Operator> generate;  // decode steps (one token)
  std::unique_ptr<ops::Operator> prefill;   // null when it is the same operator as `generate`
  registry::Device generate_device;
  registry::Device prefill_device;
  // Routed experts split between devices (expert_split.h): the operator serving the hot
  // experts on `hot_device`, and which experts are hot. Null when the module is not split.
  std::unique_ptr<ops::Operator> hot;
  registry::Device hot_device;
  std::vector<uint8_t> is_hot;  // [n_expert]

  const registry::Device& device(int64_t n_tokens) const {
    return n_tokens > 1 ? prefill_device : generate_device;
  }
};

struct Executor::LayerOps {
  ModuleOps* attn_norm = nullptr;
  ModuleOps* attn = nullptr;
  ModuleOps* ffn_norm = nullptr;
  ModuleOps* mlp = nullptr;   // dense layers
  ModuleOps* gate = nullptr;  // MoE layers
  ModuleOps* experts = nullptr;
  ModuleOps* shared = nullptr;  // optional
};

// Activations for one batch, each followed across devices (activation.h), grown on demand and
// reused between calls. The residual stream h is updated on the host: the plugin table has no
// arithmetic of its own, so an accelerator's module output comes back for the add (for decode
// that is n_embd floats per module; a backend-side add is future work for the CUDA backend).
struct Executor::Buffers {
  explicit Buffers(const registry::BackendSet* backends)
      : h(backends, &stats),
        x(backends, &stats),
        attn_out(backends, &stats),
        ffn_out(backends, &stats),
        routed(backends, &stats),
        ids(backends, &stats),
        weights(backends, &stats),
        logits(backends, &stats),
        cold_ids(backends, &stats),
        hot_ids(backends, &stats),
        hot_routed(backends, &stats) {}

  TransferStats stats;
  Activation h, x, attn_out, ffn_out, routed, ids, weights, logits;
  // Split experts only: each part's routes (the other part's marked kNoExpert), its output.
  Activation cold_ids, hot_ids, hot_routed;
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
  if (!registry::runs_on(*impl, device)) {
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
    case ModuleKind::kEmbedding:
      implements = dynamic_cast<ops::EmbeddingOp*>(op.get());
      break;
    case ModuleKind::kRmsNorm:
      implements = dynamic_cast<ops::RmsNormOp*>(op.get());
      break;
    case ModuleKind::kMlaAttention:
    case ModuleKind::kGqaAttention:
      implements = dynamic_cast<ops::AttentionOp*>(op.get());
      break;
    case ModuleKind::kMlp:
      implements = dynamic_cast<ops::MlpOp*>(op.get());
      break;
    case ModuleKind::kMoeGate:
      implements = dynamic_cast<ops::MoeGateOp*>(op.get());
      break;
    case ModuleKind::kExperts:
      implements = dynamic_cast<ops::ExpertsOp*>(op.get());
      break;
    case ModuleKind::kLmHead:
      implements = dynamic_cast<ops::LmHeadOp*>(op.get());
      break;
  }
  if (!op || !implements) {
    throw Error(ErrorCode::kInternal,
                fmt::format("module {}: operator '{}' does not implement the {} interface",
                            module.name, impl->name, model::module_kind_name(module.kind)));
  }
  return op;
}

// The second operator of a split experts module: the default experts implementation of the
// hot device's backend, told which experts it serves.
struct HotExperts {
  std::unique_ptr<ops::Operator> op;
  registry::Device device;
  std::vector<uint8_t> is_hot;  // [n_expert]
};

HotExperts hot_experts(const model::ModuleDesc& module, const ExpertSplit& split,
                       const model::ModelConfig& config, const Placement& placement,
                       const registry::OperatorRegistry& registry,
                       const registry::BackendSet* backends) {
  if (!placement.generate_device.is_cpu() || !placement.prefill_device.is_cpu()) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("module {}: {} splits experts between the CPU and an accelerator, but "
                            "the module itself is placed on {} ({})",
                            module.name, kGpuExpertsOption, placement.generate_device.name(),
                            placement.why));
  }
  if (backends == nullptr || !backends->locate(split.device)) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("module {}: {} {} is not served by any loaded backend ({})", module.name,
                    kGpuExpertsDeviceOption, split.device.name(), placement.why));
  }
  const registry::OpImpl* impl = registry.default_for(ModuleKind::kExperts, split.device);
  const std::string impl_name = fmt::format("{}.experts", registry::device_family(split.device));
  Placement hot;
  hot.module = placement.module;
  hot.impl = impl != nullptr ? impl->name : impl_name;
  hot.generate_device = hot.prefill_device = split.device;
  std::string list;
  for (int64_t id : split.ids) list += fmt::format("{}{}", list.empty() ? "" : ",", id);
  hot.options = {{"experts", list}};
  hot.why = fmt::format("{} of {}", kGpuExpertsOption, placement.why);
  HotExperts out;
  out.op = create_op(module, config, hot, split.device, registry);
  out.device = split.device;
  out.is_hot.assign(static_cast<size_t>(config.n_expert), 0);
  for (int64_t id : split.ids) out.is_hot[static_cast<size_t>(id)] = 1;
  return out;
}

}  // namespace

Executor::Executor(const model::ModelConfig& config, const std::vector<model::ModuleDesc>& modules,
                   const Plan& plan, const registry::OperatorRegistry& registry,
                   const registry::BackendSet* backends)
    : config_(config), backends_(backends), buffers_(std::make_unique<Buffers>(backends)) {
  layers_.resize(static_cast<size_t>(config.n_layer));
  for (const model::ModuleDesc& module : modules) {
    const Placement* placement = plan.find(module.name);
    if (placement == nullptr) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("the plan has no placement for module {}", module.name));
    }
    for (const registry::Device& d : {placement->generate_device, placement->prefill_device}) {
      if (!d.is_cpu() && (backends == nullptr || !backends->locate(d))) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("module {}: device {} is not served by any loaded backend ({})",
                                module.name, d.name(), placement->why));
      }
    }
    const bool attention =
        module.kind == ModuleKind::kMlaAttention || module.kind == ModuleKind::kGqaAttention;
    if (attention && placement->prefill_device != placement->generate_device) {
      // The cache lives where the attention runs; one cache in two memories is not supported.
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("module {}: attention on {} for generation but {} for prefill: its "
                              "KV cache can live on one device only; give both phases the same "
                              "device ({})",
                              module.name, placement->generate_device.name(),
                              placement->prefill_device.name(), placement->why));
    }
    auto ops = std::make_unique<ModuleOps>();
    ops->desc = &module;
    ops->generate_device = placement->generate_device;
    ops->prefill_device = placement->prefill_device;
    const std::optional<ExpertSplit> split = module.kind == ModuleKind::kExperts
                                                 ? expert_split(*placement, config.n_expert)
                                                 : std::nullopt;
    Placement own = *placement;
    if (split) own.options = without_expert_split(placement->options);
    ops->generate = create_op(module, config, own, own.generate_device, registry);
    if (own.prefill_device != own.generate_device) {
      ops->prefill = create_op(module, config, own, own.prefill_device, registry);
    }
    if (split) {
      HotExperts hot = hot_experts(module, *split, config, *placement, registry, backends);
      ops->hot = std::move(hot.op);
      ops->hot_device = hot.device;
      ops->is_hot = std::move(hot.is_hot);
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
      case ModuleKind::kEmbedding:
        embed_ = m;
        break;
      case ModuleKind::kLmHead:
        lm_head_ = m;
        break;
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
      case ModuleKind::kGqaAttention:
        need_layer()->attn = m;
        break;
      case ModuleKind::kMoeGate:
        need_layer()->gate = m;
        break;
      case ModuleKind::kExperts:
        need_layer()->experts = m;
        break;
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
  for (size_t il = 0; il < cache.layers.size(); ++il) {
    runtime::LayerKvCache& l = cache.layers[il];
    if (config_.arch == model::Architecture::kDeepseek2) {
      l.width_a = config_.kv_lora_rank;
      l.width_b = config_.qk_rope_head_dim;
    } else {
      l.width_a = config_.n_head_kv * config_.head_dim;
      l.width_b = config_.n_head_kv * config_.head_dim;
    }
    // n_ctx comes from the caller and can be anything up to INT64_MAX: a product that does not
    // fit would wrap into a small cache that every eval then overruns.
    const int64_t widest = std::max(l.width_a, l.width_b);
    if (widest > 0 && n_ctx > std::numeric_limits<int64_t>::max() / widest / 4) {
      throw Error(ErrorCode::kOutOfMemory,
                  fmt::format("a KV cache of {} positions cannot exist: layer {} keeps {} + {} "
                              "floats a position, more bytes than a 64-bit size holds",
                              n_ctx, il, l.width_a, l.width_b));
    }
    const registry::Device& device = layers_[il].attn->generate_device;
    try {
      allocate_cache(l.a, device, static_cast<size_t>(n_ctx * l.width_a));
      allocate_cache(l.b, device, static_cast<size_t>(n_ctx * l.width_b));
    } catch (const std::bad_alloc&) {
      // Every layer's cache has the same widths.
      const double bytes = static_cast<double>(n_ctx) * static_cast<double>(l.width_a + l.width_b) *
                           sizeof(float) * static_cast<double>(cache.layers.size());
      throw Error(ErrorCode::kOutOfMemory,
                  fmt::format("the KV cache for a context of {} positions needs {:.2f} GiB, which "
                              "could not be allocated (layer {} of {} failed); ask for a smaller "
                              "context",
                              n_ctx, bytes / double(1 << 30), il, cache.layers.size()));
    }
  }
  return cache;
}

void Executor::allocate_cache(runtime::FloatArray& array, const registry::Device& device,
                              size_t n) const {
  if (device.is_cpu()) {
    array.assign(n, 0.0f);
    return;
  }
  const registry::DeviceHandle where = *backends_->locate(device);  // checked at construction
  const size_t bytes = std::max<size_t>(n, 1) * sizeof(float);
  auto* data = static_cast<float*>(where.backend->alloc(where.index, bytes));
  array.adopt(data, n, [where](float* p) { where.backend->free(where.index, p); });
  // Zeroed like host caches, so a read past the filled positions is never garbage.
  const std::vector<uint8_t> zeros(std::min<size_t>(bytes, size_t{1} << 20), 0);
  for (size_t off = 0; off < bytes; off += zeros.size()) {
    where.backend->copy(where.index, reinterpret_cast<uint8_t*>(data) + off, zeros.data(),
                        std::min(zeros.size(), bytes - off), KTX_COPY_HOST_TO_DEVICE);
  }
}

bool Executor::cache_on_host(size_t il) const {
  return layers_.at(il).attn->generate_device.is_cpu();
}

void Executor::read_cache_rows(const runtime::KvCache& cache, size_t il, int64_t n_rows, float* a,
                               float* b) const {
  const runtime::LayerKvCache& l = cache.layers.at(il);
  const size_t n_a = static_cast<size_t>(n_rows * l.width_a);
  const size_t n_b = static_cast<size_t>(n_rows * l.width_b);
  if (cache_on_host(il)) {
    std::copy_n(l.a.data(), n_a, a);
    std::copy_n(l.b.data(), n_b, b);
    return;
  }
  const registry::DeviceHandle where = *backends_->locate(layers_[il].attn->generate_device);
  where.backend->copy(where.index, a, l.a.data(), n_a * sizeof(float), KTX_COPY_DEVICE_TO_HOST);
  where.backend->copy(where.index, b, l.b.data(), n_b * sizeof(float), KTX_COPY_DEVICE_TO_HOST);
}

void Executor::write_cache_rows(runtime::KvCache& cache, size_t il, int64_t n_rows, const float* a,
                                const float* b) const {
  runtime::LayerKvCache& l = cache.layers.at(il);
  const size_t n_a = static_cast<size_t>(n_rows * l.width_a);
  const size_t n_b = static_cast<size_t>(n_rows * l.width_b);
  if (cache_on_host(il)) {
    std::copy_n(a, n_a, l.a.data());
    std::copy_n(b, n_b, l.b.data());
    return;
  }
  const registry::DeviceHandle where = *backends_->locate(layers_[il].attn->generate_device);
  where.backend->copy(where.index, l.a.data(), a, n_a * sizeof(float), KTX_COPY_HOST_TO_DEVICE);
  where.backend->copy(where.index, l.b.data(), b, n_b * sizeof(float), KTX_COPY_HOST_TO_DEVICE);
}

void Executor::copy_cache_rows(const runtime::KvCache& from, runtime::KvCache& to, size_t il,
                               int64_t n_rows) const {
  const runtime::LayerKvCache& src = from.layers.at(il);
  runtime::LayerKvCache& dst = to.layers.at(il);
  if (cache_on_host(il)) {
    write_cache_rows(to, il, n_rows, src.a.data(), src.b.data());
    return;
  }
  const registry::DeviceHandle where = *backends_->locate(layers_[il].attn->generate_device);
  where.backend->copy(where.index, dst.a.data(), src.a.data(),
                      static_cast<size_t>(n_rows * src.width_a) * sizeof(float),
                      KTX_COPY_DEVICE_TO_DEVICE);
  where.backend->copy(where.index, dst.b.data(), src.b.data(),
                      static_cast<size_t>(n_rows * src.width_b) * sizeof(float),
                      KTX_COPY_DEVICE_TO_DEVICE);
}

const TransferStats& Executor::transfers() const { return buffers_->stats; }

template <class Op>
Op& Executor::pick(const ModuleOps& m, int64_t n_tokens) const {
  ops::Operator* op = (n_tokens > 1 && m.prefill) ? m.prefill.get() : m.generate.get();
  return *static_cast<Op*>(op);  // create_op checked the interface
}

void Executor::time(ModuleKind kind, std::chrono::steady_clock::time_point start) {
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (KindTiming& t : timings_) {
    if (t.kind == kind) {
      t.seconds += s;
      t.calls += 1;
    }
  }
}

void Executor::reset_timings() {
  for (KindTiming& t : timings_) t = {t.kind, 0, 0};
  buffers_->stats = {};
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
  const Sequence one{&cache, pos0};
  run(ctx, tokens, {&one, 1}, logits, all_logits);
}

void Executor::forward_batch(ops::ExecContext& ctx, std::span<const int32_t> tokens,
                             std::span<const Sequence> sequences, float* logits) {
  if (tokens.size() != sequences.size()) {
    throw Error(ErrorCode::kInternal, fmt::format("forward_batch: {} tokens for {} sequences",
                                                  tokens.size(), sequences.size()));
  }
  if (tokens.empty()) return;
  for (size_t i = 0; i < sequences.size(); ++i) {
    const Sequence& s = sequences[i];
    if (s.cache == nullptr || s.pos < 0 || s.pos >= s.cache->n_ctx) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("sequence {}: position {} does not fit its context of {} tokens", i,
                              s.pos, s.cache ? s.cache->n_ctx : 0));
    }
    for (size_t j = 0; j < i; ++j) {
      if (sequences[j].cache == s.cache) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("sequences {} and {} share one KV cache", j, i));
      }
    }
  }
  run(ctx, tokens, sequences, logits, /*all_logits=*/true);
}

// One forward pass over `tokens`: either one sequence's consecutive tokens (`sequences` holds
// it alone), or one token of each of several sequences. Every module but the attention sees
// all the rows as one batch (the experts' GEMMs, the head); the attention runs per sequence,
// over its own cache. Logits: every row's when all_logits, else the last row's.
void Executor::run(ops::ExecContext& ctx, std::span<const int32_t> tokens,
                   std::span<const Sequence> sequences, float* logits, bool all_logits) {
  const int64_t n = static_cast<int64_t>(tokens.size());
  const bool one_sequence = sequences.size() == 1;
  Buffers& b = *buffers_;
  const int64_t d = config_.n_embd;
  const auto act = static_cast<size_t>(n * d);  // floats of one [n][n_embd] activation
  const auto routes = static_cast<size_t>(n * std::max<int64_t>(config_.n_expert_used, 1));
  const registry::Device cpu = registry::Device::cpu();
  // Which phase's operator and device each module uses: a decode step of several sequences is
  // decode (their generate operators), though it has several rows.
  const int64_t phase_n = one_sequence ? n : 1;
  auto on = [phase_n](const ModuleOps& m) -> const registry::Device& { return m.device(phase_n); };
  using clock = std::chrono::steady_clock;

  auto t0 = clock::now();
  pick<ops::EmbeddingOp>(*embed_, phase_n)
      .forward(ctx, tokens, b.h.write_as<float>(on(*embed_), act));
  time(ModuleKind::kEmbedding, t0);

  // out = h + a (+ c): the residual add, on the host (see Buffers).
  auto add_to_residual = [&](Activation& a, Activation* c) {
    const float* av = a.read_as<float>(cpu, act);
    const float* cv = c != nullptr ? c->read_as<float>(cpu, act) : nullptr;
    float* h = b.h.update_as<float>(cpu, act);
    if (cv == nullptr) {
      for (size_t i = 0; i < act; ++i) h[i] += av[i];
    } else {
      for (size_t i = 0; i < act; ++i) h[i] += av[i] + cv[i];
    }
  };
  // Runs a norm module on its device: x = norm(rows of h).
  auto norm = [&](const ModuleOps& m, int64_t rows, size_t first_row) {
    const registry::Device& dev = on(m);
    const float* in = b.h.read_as<float>(dev, act) + first_row * static_cast<size_t>(d);
    pick<ops::RmsNormOp>(m, phase_n)
        .forward(ctx, rows, in, b.x.write_as<float>(dev, static_cast<size_t>(rows * d)));
  };

  for (size_t l = 0; l < layers_.size(); ++l) {
    const LayerOps& L = layers_[l];
    t0 = clock::now();
    norm(*L.attn_norm, n, 0);
    time(ModuleKind::kRmsNorm, t0);

    t0 = clock::now();
    if (one_sequence) {
      const registry::Device& dev = on(*L.attn);
      const float* x = b.x.read_as<float>(dev, act);
      pick<ops::AttentionOp>(*L.attn, phase_n)
          .forward(ctx, ops::Batch{n, sequences[0].pos}, x, b.attn_out.write_as<float>(dev, act),
                   sequences[0].cache->layers[l]);
    } else {
      // A decode step of each sequence (the attention's prefill and generation devices are one:
      // its cache lives there), its row of x to its row of attn_out.
      const registry::Device& dev = L.attn->device(1);
      const float* x = b.x.read_as<float>(dev, act);
      float* out = b.attn_out.write_as<float>(dev, act);
      auto& attn = pick<ops::AttentionOp>(*L.attn, 1);
      for (size_t i = 0; i < sequences.size(); ++i) {
        attn.forward(ctx, ops::Batch{1, sequences[i].pos}, x + i * static_cast<size_t>(d),
                     out + i * static_cast<size_t>(d), sequences[i].cache->layers[l]);
      }
    }
    time(L.attn->desc->kind, t0);
    add_to_residual(b.attn_out, nullptr);

    t0 = clock::now();
    norm(*L.ffn_norm, n, 0);
    time(ModuleKind::kRmsNorm, t0);

    if (L.mlp != nullptr) {
      t0 = clock::now();
      const registry::Device& dev = on(*L.mlp);
      const float* x = b.x.read_as<float>(dev, act);
      pick<ops::MlpOp>(*L.mlp, phase_n).forward(ctx, n, x, b.ffn_out.write_as<float>(dev, act));
      time(ModuleKind::kMlp, t0);
      add_to_residual(b.ffn_out, nullptr);
      continue;
    }
    t0 = clock::now();
    {
      const registry::Device& dev = on(*L.gate);
      const float* x = b.x.read_as<float>(dev, act);
      pick<ops::MoeGateOp>(*L.gate, phase_n)
          .forward(ctx, n, x, b.ids.write_as<int32_t>(dev, routes),
                   b.weights.write_as<float>(dev, routes));
    }
    time(ModuleKind::kMoeGate, t0);
    // Routed experts start on the CPU pool. Shared experts placed on an accelerator run
    // meanwhile; on the CPU they would only compete for the same cores and memory bandwidth, so
    // they run after the join with the whole pool.
    t0 = clock::now();
    auto& experts = pick<ops::ExpertsOp>(*L.experts, phase_n);
    ops::ExpertsOp* hot =
        L.experts->hot ? static_cast<ops::ExpertsOp*>(L.experts->hot.get()) : nullptr;
    Activation* cold_ids = &b.ids;
    if (hot != nullptr) {
      // Each part sees only its own routes; the other part's are kNoExpert.
      const int32_t* all = b.ids.read_as<int32_t>(cpu, routes);
      int32_t* c = b.cold_ids.write_as<int32_t>(cpu, routes);
      int32_t* h = b.hot_ids.write_as<int32_t>(cpu, routes);
      for (size_t i = 0; i < routes; ++i) {
        if (all[i] < 0 || all[i] >= config_.n_expert) {
          throw Error(
              ErrorCode::kInternal,
              fmt::format("{}: the router chose expert {} for token {}, outside [0, {})",
                          L.gate->desc->name, all[i],
                          static_cast<int64_t>(i) / config_.n_expert_used, config_.n_expert));
        }
        const bool is_hot = L.experts->is_hot[static_cast<size_t>(all[i])] != 0;
        c[i] = is_hot ? ops::ExpertsOp::kNoExpert : all[i];
        h[i] = is_hot ? all[i] : ops::ExpertsOp::kNoExpert;
      }
      cold_ids = &b.cold_ids;
    }
    {
      const registry::Device& dev = on(*L.experts);
      const float* x = b.x.read_as<float>(dev, act);
      const int32_t* ids = cold_ids->read_as<int32_t>(dev, routes);
      const float* w = b.weights.read_as<float>(dev, routes);
      experts.submit(ctx, n, x, ids, w, b.routed.write_as<float>(dev, act));
    }
    auto run_shared = [&] {
      const registry::Device& dev = on(*L.shared);
      const float* x = b.x.read_as<float>(dev, act);
      pick<ops::MlpOp>(*L.shared, phase_n).forward(ctx, n, x, b.ffn_out.write_as<float>(dev, act));
    };
    const bool shared_overlaps = L.shared != nullptr && !on(*L.shared).is_cpu();
    bool hot_submitted = false;
    try {
      if (hot != nullptr) {
        const registry::Device& dev = L.experts->hot_device;
        const float* x = b.x.read_as<float>(dev, act);
        const int32_t* ids = b.hot_ids.read_as<int32_t>(dev, routes);
        const float* w = b.weights.read_as<float>(dev, routes);
        hot->submit(ctx, n, x, ids, w, b.hot_routed.write_as<float>(dev, act));
        hot_submitted = true;
      }
      if (shared_overlaps) run_shared();
      if (hot_submitted) {
        hot_submitted = false;
        hot->wait(ctx);
      }
    } catch (...) {
      // Both parts may still run over these buffers: finish them before they can go.
      try {
        if (hot_submitted) hot->wait(ctx);
      } catch (...) {
      }
      try {
        experts.wait(ctx);
      } catch (...) {
      }
      throw;
    }
    experts.wait(ctx);
    time(ModuleKind::kExperts, t0);
    if (L.shared != nullptr && !shared_overlaps) {
      t0 = clock::now();
      run_shared();
      time(ModuleKind::kMlp, t0);
    }
    if (hot != nullptr) add_to_residual(b.hot_routed, nullptr);
    add_to_residual(b.routed, L.shared != nullptr ? &b.ffn_out : nullptr);
  }

  // Only the rows whose logits are wanted go through the final norm and the head.
  const int64_t n_out = all_logits ? n : 1;
  t0 = clock::now();
  norm(*final_norm_, n_out, static_cast<size_t>(all_logits ? 0 : n - 1));
  time(ModuleKind::kRmsNorm, t0);
  t0 = clock::now();
  // The head runs in the step's phase, its operator on its device (for a prefill whose last row
  // alone is wanted too: the operator chosen by the row count and the device by the phase could
  // be on two devices).
  const registry::Device& head = on(*lm_head_);
  const float* x = b.x.read_as<float>(head, static_cast<size_t>(n_out * d));
  const auto n_logits = static_cast<size_t>(n_out * config_.n_vocab);
  if (head.is_cpu()) {
    pick<ops::LmHeadOp>(*lm_head_, phase_n).forward(ctx, n_out, x, logits);
  } else {
    pick<ops::LmHeadOp>(*lm_head_, phase_n)
        .forward(ctx, n_out, x, b.logits.write_as<float>(head, n_logits));
    b.logits.read_into(logits, n_logits * sizeof(float));
  }
  time(ModuleKind::kLmHead, t0);
}

}  // namespace ktx::exec
