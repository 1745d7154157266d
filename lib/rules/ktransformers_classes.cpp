// KTransformers' class names (torch modules it matches, its operator classes it replaces them
// with) and what they mean in ktx, so its optimize_rules/*.yaml files load. docs/RULES.md has the
// same table for people.
#include "rules/rules.h"

namespace ktx::rules {
namespace {

using model::ModuleKind;
using Action = ClassMapping::Action;

struct Entry {
  std::string_view name;  // last dotted component of the class
  Action action;
  std::vector<ModuleKind> kinds;
  std::string_view note;
};

// Classes KTransformers *matches* (torch / HF modeling classes).
const std::vector<Entry>& match_table() {
  static const std::vector<Entry> table = {
      // ktx has no separate linear modules: a Linear rule reaches the modules made only of
      // linear layers (dense MLPs, shared experts, lm_head). Attention projections live inside
      // the attention module, which is matched as a whole.
      {"Linear", Action::kKinds, {ModuleKind::kMlp, ModuleKind::kLmHead}, ""},
      {"Embedding", Action::kKinds, {ModuleKind::kEmbedding}, ""},
      {"DeepseekV2RMSNorm", Action::kKinds, {ModuleKind::kRmsNorm}, ""},
      {"DeepseekV3RMSNorm", Action::kKinds, {ModuleKind::kRmsNorm}, ""},
      {"LlamaRMSNorm", Action::kKinds, {ModuleKind::kRmsNorm}, ""},
      {"DeepseekV2Attention", Action::kKinds, {ModuleKind::kMlaAttention}, ""},
      {"DeepseekV3Attention", Action::kKinds, {ModuleKind::kMlaAttention}, ""},
      {"DeepseekV2FlashAttention2", Action::kKinds, {ModuleKind::kMlaAttention}, ""},
      {"LlamaAttention", Action::kKinds, {ModuleKind::kGqaAttention}, ""},
      {"DeepseekV2MLP", Action::kKinds, {ModuleKind::kMlp}, ""},
      {"DeepseekV3MLP", Action::kKinds, {ModuleKind::kMlp}, ""},
      {"LlamaMLP", Action::kKinds, {ModuleKind::kMlp}, ""},
      {"MoEGate", Action::kKinds, {ModuleKind::kMoeGate}, ""},
      {"DeepseekV2MoE",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are matched on their "
       "own"},
      {"DeepseekV3MoE",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are matched on their "
       "own"},
      {"DeepseekV2YarnRotaryEmbedding",
       Action::kIgnored,
       {},
       "RoPE is part of ktx's attention operator"},
      {"DeepseekV3YarnRotaryEmbedding",
       Action::kIgnored,
       {},
       "RoPE is part of ktx's attention operator"},
      {"DeepseekV2RotaryEmbedding",
       Action::kIgnored,
       {},
       "RoPE is part of ktx's attention operator"},
      {"DeepseekV3RotaryEmbedding",
       Action::kIgnored,
       {},
       "RoPE is part of ktx's attention operator"},
  };
  return table;
}

// Classes KTransformers *replaces with* (its operators). kOp with no kinds: the default ktx
// operator of whatever kind the module is, on the rule's device.
const std::vector<Entry>& replace_table() {
  static const std::vector<Entry> table = {
      {"default", Action::kOp, {}, ""},
      {"KTransformersLinear", Action::kOp, {}, ""},
      {"KTransformerLinear", Action::kOp, {}, ""},  // the spelling of older files
      {"KTransformersExperts", Action::kOp, {ModuleKind::kExperts}, ""},
      {"KTransformersMLPExpert", Action::kOp, {ModuleKind::kExperts}, ""},
      {"KTransformersExpertsV2", Action::kOp, {ModuleKind::kExperts}, ""},  // balance_serve
      // balance_serve's attention ("attention.flashinfer_attn",
      // "balance_serve_attention.flashinfer_attn") and MLP.
      {"flashinfer_attn", Action::kOp, {ModuleKind::kMlaAttention}, ""},
      {"kDeepseekV3MLP", Action::kOp, {ModuleKind::kMlp}, ""},
      {"DeepseekV2AttentionInjected", Action::kOp, {ModuleKind::kMlaAttention}, ""},
      {"KDeepseekV2Attention", Action::kOp, {ModuleKind::kMlaAttention}, ""},
      {"KDeepseekV3Attention", Action::kOp, {ModuleKind::kMlaAttention}, ""},
      {"KMoEGate", Action::kOp, {ModuleKind::kMoeGate}, ""},
      {"KMoEGateDeepSeekV3", Action::kOp, {ModuleKind::kMoeGate}, ""},
      {"RMSNorm", Action::kOp, {ModuleKind::kRmsNorm}, ""},
      {"DeepseekV3RMSNormTorch", Action::kOp, {ModuleKind::kRmsNorm}, ""},
      {"KDeepseekRMSNorm", Action::kOp, {ModuleKind::kRmsNorm}, ""},
      {"DeepseekV2MoEInjected",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are placed by their own "
       "rules"},
      {"KDeepseekV2MoE",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are placed by their own "
       "rules"},
      {"KDeepseekV3MoE",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are placed by their own "
       "rules"},
      {"KDeepseekV3MoEV2",
       Action::kIgnored,
       {},
       "ktx has no MoE block module: its gate, shared_experts and experts are placed by their own "
       "rules"},
      {"YarnRotaryEmbedding", Action::kIgnored, {}, "RoPE is part of ktx's attention operator"},
      {"RotaryEmbeddingV3", Action::kIgnored, {}, "RoPE is part of ktx's attention operator"},
      {"YarnRotaryEmbeddingV3", Action::kIgnored, {}, "RoPE is part of ktx's attention operator"},
      {"RotaryEmbedding", Action::kIgnored, {}, "RoPE is part of ktx's attention operator"},
      {"KDeepseekV2Model",
       Action::kIgnored,
       {},
       "ktx moves activations between devices itself (no transfer_map needed)"},
      {"DeepseekV2ModelPerLayerPrefill",
       Action::kIgnored,
       {},
       "ktx moves activations between devices itself (no layer-wise prefill wrapper)"},
      {"DeepseekV2ModelKTransformers",  // layer_wise_prefill, in older multi-GPU files
       Action::kIgnored,
       {},
       "ktx moves activations between devices itself (no layer-wise prefill wrapper)"},
  };
  return table;
}

std::string_view last_component(std::string_view cls) {
  const size_t dot = cls.rfind('.');
  return dot == std::string_view::npos ? cls : cls.substr(dot + 1);
}

std::optional<ClassMapping> lookup(const std::vector<Entry>& table, std::string_view cls) {
  const std::string_view base = last_component(cls);
  for (const Entry& e : table) {
    if (e.name == base) return ClassMapping{e.action, e.kinds, std::string(e.note)};
  }
  return std::nullopt;
}

}  // namespace

std::optional<ClassMapping> match_class_mapping(std::string_view cls) {
  return lookup(match_table(), cls);
}

std::optional<ClassMapping> replace_class_mapping(std::string_view cls) {
  return lookup(replace_table(), cls);
}

}  // namespace ktx::rules
