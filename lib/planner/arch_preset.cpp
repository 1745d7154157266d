// DeepSeek configs by name, and their tensor lists with the types llama.cpp's presets give them.
#include "planner/arch_preset.h"

#include <fmt/format.h>

#include <map>

#include "ktx/error.h"

namespace ktx::planner {
namespace {

using model::ModuleKind;

model::ModelConfig deepseek2_common() {
  model::ModelConfig c;
  c.arch = model::Architecture::kDeepseek2;
  c.arch_name = "deepseek2";
  c.kv_lora_rank = 512;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  c.v_head_dim = 128;
  c.n_vocab = 102400;
  c.n_ctx_train = 163840;
  c.rope.n_dims = 64;
  c.rope.scaling = model::RopeScaling::kYarn;
  c.rope.factor = 40.0f;
  c.rope.original_context = 4096;
  return c;
}

}  // namespace

std::vector<ArchPresetInfo> arch_presets() {
  return {
      {ArchPreset::kDeepseekV2, "deepseek-v2",
       "DeepSeek-V2 / V2-Chat / Coder-V2 (236B, 21B active)"},
      {ArchPreset::kDeepseekV2Lite, "deepseek-v2-lite",
       "DeepSeek-V2-Lite / Coder-V2-Lite (15.7B, 2.4B active)"},
      {ArchPreset::kDeepseekV3, "deepseek-v3", "DeepSeek-V3 / R1 (671B, 37B active)"},
  };
}

std::optional<ArchPreset> arch_preset_from_name(std::string_view name) {
  for (const ArchPresetInfo& info : arch_presets()) {
    if (info.name == name) return info.preset;
  }
  if (name == "deepseek-r1") return ArchPreset::kDeepseekV3;
  return std::nullopt;
}

ArchPreset parse_arch_preset(std::string_view name) {
  if (std::optional<ArchPreset> p = arch_preset_from_name(name)) return *p;
  std::string names;
  for (const ArchPresetInfo& info : arch_presets()) names += fmt::format(" {}", info.name);
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("unknown architecture preset '{}'; known:{} (deepseek-r1 = deepseek-v3)",
                          name, names));
}

model::ModelConfig arch_preset_config(ArchPreset preset) {
  model::ModelConfig c = deepseek2_common();
  switch (preset) {
    case ArchPreset::kDeepseekV2:
      c.n_layer = 60;
      c.n_embd = 5120;
      c.n_head = c.n_head_kv = 128;
      c.q_lora_rank = 1536;
      c.n_ff = 12288;
      c.n_layer_dense_lead = 1;
      c.n_expert = 160;
      c.n_expert_used = 6;
      c.n_expert_shared = 2;
      c.n_ff_exp = 1536;
      c.expert_weights_scale = 16.0f;
      c.n_group = 8;
      c.n_group_used = 3;
      c.rope.yarn_log_multiplier = 0.0707f;
      break;
    case ArchPreset::kDeepseekV2Lite:
      c.n_layer = 27;
      c.n_embd = 2048;
      c.n_head = c.n_head_kv = 16;
      c.q_lora_rank = 0;
      c.n_ff = 10944;
      c.n_layer_dense_lead = 1;
      c.n_expert = 64;
      c.n_expert_used = 6;
      c.n_expert_shared = 2;
      c.n_ff_exp = 1408;
      c.rope.yarn_log_multiplier = 0.0707f;
      break;
    case ArchPreset::kDeepseekV3:
      c.n_layer = 61;
      c.n_embd = 7168;
      c.n_head = c.n_head_kv = 128;
      c.q_lora_rank = 1536;
      c.n_ff = 18432;
      c.n_layer_dense_lead = 3;
      c.n_expert = 256;
      c.n_expert_used = 8;
      c.n_expert_shared = 1;
      c.n_ff_exp = 2048;
      c.n_vocab = 129280;
      c.gating = model::GatingFunc::kSigmoid;
      c.expert_weights_norm = true;
      c.expert_weights_scale = 2.5f;
      c.n_group = 8;
      c.n_group_used = 4;
      c.rope.yarn_log_multiplier = 0.1f;
      break;
  }
  return c;
}

uint64_t SyntheticModel::total_bytes() const {
  uint64_t n = 0;
  for (const gguf::TensorInfo& t : tensors) n += t.n_bytes;
  return n;
}

uint64_t SyntheticModel::total_parameters() const {
  uint64_t n = 0;
  for (const gguf::TensorInfo& t : tensors) n += t.n_elements;
  return n;
}

std::unique_ptr<SyntheticModel> synthesize_deepseek2(const model::ModelConfig& c,
                                                     std::optional<quantize::Preset> quant,
                                                     std::string description) {
  // 1. The tensor list of a converted file, in the converter's types.
  std::vector<quantize::TensorDesc> descs;
  auto add = [&](std::string name, std::vector<int64_t> shape, bool matrix = true) {
    descs.push_back(
        {std::move(name), matrix ? TensorType::BF16 : TensorType::F32, std::move(shape)});
  };
  auto blk = [](int64_t il, std::string_view what) { return fmt::format("blk.{}.{}", il, what); };
  const int64_t qk_head = c.qk_nope_head_dim + c.qk_rope_head_dim;
  add("token_embd.weight", {c.n_embd, c.n_vocab});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    add(blk(il, "attn_norm.weight"), {c.n_embd}, false);
    if (c.q_lora_rank > 0) {
      add(blk(il, "attn_q_a.weight"), {c.n_embd, c.q_lora_rank});
      add(blk(il, "attn_q_a_norm.weight"), {c.q_lora_rank}, false);
      add(blk(il, "attn_q_b.weight"), {c.q_lora_rank, c.n_head * qk_head});
    } else {
      add(blk(il, "attn_q.weight"), {c.n_embd, c.n_head * qk_head});
    }
    add(blk(il, "attn_kv_a_mqa.weight"), {c.n_embd, c.kv_lora_rank + c.qk_rope_head_dim});
    add(blk(il, "attn_kv_a_norm.weight"), {c.kv_lora_rank}, false);
    if (c.mla_split_kv_b) {  // newer MLA files: the up-projection split per head into K and V
      add(blk(il, "attn_k_b.weight"), {c.qk_nope_head_dim, c.kv_lora_rank, c.n_head});
      add(blk(il, "attn_v_b.weight"), {c.kv_lora_rank, c.v_head_dim, c.n_head});
    } else {
      add(blk(il, "attn_kv_b.weight"),
          {c.kv_lora_rank, c.n_head * (c.qk_nope_head_dim + c.v_head_dim)});
    }
    add(blk(il, "attn_output.weight"), {c.n_head * c.v_head_dim, c.n_embd});
    add(blk(il, "ffn_norm.weight"), {c.n_embd}, false);
    if (!c.is_moe_layer(il)) {
      add(blk(il, "ffn_gate.weight"), {c.n_embd, c.n_ff});
      add(blk(il, "ffn_up.weight"), {c.n_embd, c.n_ff});
      add(blk(il, "ffn_down.weight"), {c.n_ff, c.n_embd});
      continue;
    }
    add(blk(il, "ffn_gate_inp.weight"), {c.n_embd, c.n_expert}, false);
    if (c.gating == model::GatingFunc::kSigmoid)
      add(blk(il, "exp_probs_b.bias"), {c.n_expert}, false);
    add(blk(il, "ffn_gate_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert});
    add(blk(il, "ffn_up_exps.weight"), {c.n_embd, c.n_ff_exp, c.n_expert});
    add(blk(il, "ffn_down_exps.weight"), {c.n_ff_exp, c.n_embd, c.n_expert});
    if (c.n_expert_shared > 0) {
      const int64_t ff = c.n_ff_exp * c.n_expert_shared;
      add(blk(il, "ffn_gate_shexp.weight"), {c.n_embd, ff});
      add(blk(il, "ffn_up_shexp.weight"), {c.n_embd, ff});
      add(blk(il, "ffn_down_shexp.weight"), {ff, c.n_embd});
    }
  }
  add("output_norm.weight", {c.n_embd}, false);
  add("output.weight", {c.n_embd, c.n_vocab});

  // 2. The preset's types (plan_types returns them in its own order; map back by index).
  std::vector<TensorType> types(descs.size());
  for (size_t i = 0; i < descs.size(); ++i) types[i] = descs[i].type;
  if (quant) {
    quantize::ModelInfo info;
    info.architecture = c.arch_name.empty() ? "deepseek2" : c.arch_name;
    info.n_layer = c.n_layer;
    info.n_expert = c.n_expert;
    info.n_head = c.n_head;
    info.n_head_kv = c.n_head_kv;
    for (const quantize::TensorPlan& p : quantize::plan_types(info, descs, *quant)) {
      types[p.index] = p.to;
    }
  }

  auto model = std::make_unique<SyntheticModel>();
  model->description = std::move(description);
  model->config = c;
  model->tensors.reserve(descs.size());  // modules point into it: never reallocate
  std::map<std::string, const gguf::TensorInfo*, std::less<>> by_name;
  for (size_t i = 0; i < descs.size(); ++i) {
    gguf::TensorInfo t;
    t.name = descs[i].name;
    t.type = types[i];
    t.shape = descs[i].shape;
    t.n_elements = 1;
    for (int64_t d : t.shape) t.n_elements *= static_cast<uint64_t>(d);
    t.n_bytes = row_size(t.type, t.shape[0]) * static_cast<uint64_t>(t.rows());
    model->tensors.push_back(std::move(t));
    by_name.emplace(model->tensors.back().name, &model->tensors.back());
  }

  // 3. Modules, named and ordered as build_module_tree does.
  auto& modules = model->modules;
  auto module = [&](std::string name, ModuleKind kind, int64_t layer,
                    std::vector<std::pair<std::string, std::string>> roles) {
    model::ModuleDesc m{std::move(name), kind, layer, {}};
    for (auto& [role, tensor] : roles) {
      auto it = by_name.find(tensor);
      if (it != by_name.end()) m.weights.emplace(role, it->second);
    }
    modules.push_back(std::move(m));
  };
  module("model.embed_tokens", ModuleKind::kEmbedding, -1, {{"weight", "token_embd.weight"}});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const std::string p = fmt::format("model.layers.{}", il);
    module(p + ".input_layernorm", ModuleKind::kRmsNorm, il,
           {{"weight", blk(il, "attn_norm.weight")}});
    module(p + ".self_attn", ModuleKind::kMlaAttention, il,
           {{"q", blk(il, "attn_q.weight")},
            {"q_a", blk(il, "attn_q_a.weight")},
            {"q_a_norm", blk(il, "attn_q_a_norm.weight")},
            {"q_b", blk(il, "attn_q_b.weight")},
            {"kv_a_mqa", blk(il, "attn_kv_a_mqa.weight")},
            {"kv_a_norm", blk(il, "attn_kv_a_norm.weight")},
            {"kv_b", blk(il, "attn_kv_b.weight")},
            {"k_b", blk(il, "attn_k_b.weight")},
            {"v_b", blk(il, "attn_v_b.weight")},
            {"output", blk(il, "attn_output.weight")}});
    module(p + ".post_attention_layernorm", ModuleKind::kRmsNorm, il,
           {{"weight", blk(il, "ffn_norm.weight")}});
    if (!c.is_moe_layer(il)) {
      module(p + ".mlp", ModuleKind::kMlp, il,
             {{"gate", blk(il, "ffn_gate.weight")},
              {"up", blk(il, "ffn_up.weight")},
              {"down", blk(il, "ffn_down.weight")}});
      continue;
    }
    module(p + ".mlp.gate", ModuleKind::kMoeGate, il,
           {{"weight", blk(il, "ffn_gate_inp.weight")}, {"bias", blk(il, "exp_probs_b.bias")}});
    module(p + ".mlp.experts", ModuleKind::kExperts, il,
           {{"gate_exps", blk(il, "ffn_gate_exps.weight")},
            {"up_exps", blk(il, "ffn_up_exps.weight")},
            {"down_exps", blk(il, "ffn_down_exps.weight")}});
    if (c.n_expert_shared > 0) {
      module(p + ".mlp.shared_experts", ModuleKind::kMlp, il,
             {{"gate", blk(il, "ffn_gate_shexp.weight")},
              {"up", blk(il, "ffn_up_shexp.weight")},
              {"down", blk(il, "ffn_down_shexp.weight")}});
    }
  }
  module("model.norm", ModuleKind::kRmsNorm, -1, {{"weight", "output_norm.weight"}});
  module("lm_head", ModuleKind::kLmHead, -1, {{"weight", "output.weight"}});
  return model;
}

std::unique_ptr<SyntheticModel> synthesize_model(ArchPreset preset,
                                                 std::optional<quantize::Preset> quant) {
  std::string name;
  for (const ArchPresetInfo& info : arch_presets()) {
    if (info.preset == preset) name = std::string(info.name);
  }
  const std::string description = fmt::format(
      "{} at {}", name, quant ? std::string(quantize::preset_info(*quant).name) : "BF16");
  return synthesize_deepseek2(arch_preset_config(preset), quant, description);
}

}  // namespace ktx::planner
