// The model as a list of named modules, with the names HF and KTransformers use
// (model.layers.3.self_attn, model.layers.3.mlp.experts …) so that rule files written for
// KTransformers read the same here. Each module knows its kind and the GGUF tensors it owns, by
// role. The tree is pure description; operators (lib/ops) give it behaviour.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"

namespace ktx::gguf {
class File;
struct TensorInfo;
}  // namespace ktx::gguf

namespace ktx::model {

enum class ModuleKind {
  kEmbedding,     // model.embed_tokens            roles: weight
  kRmsNorm,       // *.input_layernorm, *.post_attention_layernorm, model.norm   roles: weight
  kMlaAttention,  // model.layers.N.self_attn (deepseek2)  roles: below
  kGqaAttention,  // model.layers.N.self_attn (llama)      roles: q, k, v, output; optional
                  //   q_bias, k_bias, v_bias, output_bias, rope_freqs (Llama 3.1 frequency
                  //   divisors, rope_freqs.weight, [rope.n_dims / 2], shared by all layers)
  kMlp,           // model.layers.N.mlp (dense) and model.layers.N.mlp.shared_experts
                  //   roles: gate, up, down; optional (llama dense only) gate_bias, up_bias,
                  //   down_bias
  kMoeGate,       // model.layers.N.mlp.gate       roles: weight, bias (exp_probs_b, optional)
  kExperts,       // model.layers.N.mlp.experts    roles: gate_exps, up_exps, down_exps
  kLmHead,        // lm_head                       roles: weight (token_embd when tied)
};

// "embedding", "rms_norm", "mla_attention", "gqa_attention", "mlp", "moe_gate", "experts",
// "lm_head" — the names rule files use (`kind:`) and default implementations are named after
// ("cpu.mla_attention").
std::string_view module_kind_name(ModuleKind kind);
std::optional<ModuleKind> module_kind_from_name(std::string_view name);

// MLA roles: q (no q compression) | q_a, q_a_norm, q_b; kv_a_mqa, kv_a_norm; kv_b | k_b, v_b
// (both sets when the file holds both; config.mla_split_kv_b says which one is certain);
// output.
//
// Shapes, GGUF order (shape[0] contiguous), as llama.cpp creates them; qk = qk_nope + qk_rope:
//   embed/lm_head [n_embd, n_vocab]; norms [width]; MLA q [n_embd, n_head*qk], q_a [n_embd,
//   q_lora], q_b [q_lora, n_head*qk], kv_a_mqa [n_embd, kv_lora + qk_rope], kv_b [kv_lora,
//   n_head*(qk_nope + v_head)], k_b [qk_nope, kv_lora, n_head], v_b [kv_lora, v_head, n_head],
//   output [n_head*v_head, n_embd]; GQA q [n_embd, n_head*head_dim], k/v [n_embd,
//   n_head_kv*head_dim], output [n_head*head_dim, n_embd]; mlp gate/up [n_embd, ff], down [ff,
//   n_embd] (shared experts: ff = n_ff_exp*n_expert_shared); gate weight [n_embd, n_expert],
//   bias [n_expert]; experts gate/up [n_embd, n_ff_exp, n_expert], down [n_ff_exp, n_embd,
//   n_expert].
struct ModuleDesc {
  std::string name;  // "model.layers.3.mlp.experts"
  ModuleKind kind;
  int64_t layer = -1;                                      // -1 outside the blocks
  std::map<std::string, const gguf::TensorInfo*> weights;  // role -> tensor in the file

  // Throws ktx::Error(kInvalidArgument) naming the module, the role and the roles it has.
  const gguf::TensorInfo& weight(std::string_view role) const;
  const gguf::TensorInfo* find_weight(std::string_view role) const;
};

// All modules in execution order: model.embed_tokens; per layer input_layernorm, self_attn,
// post_attention_layernorm, then mlp (dense) or mlp.gate, mlp.experts, mlp.shared_experts (when
// n_expert_shared > 0); model.norm; lm_head. Throws ktx::Error(kInvalidFile) naming the file,
// the tensor and the module that is missing it, or the tensor, role, module and both shapes
// (e.g. "m.gguf: tensor 'blk.3.ffn_gate_exps.weight' (gate_exps of model.layers.3.mlp.experts):
// expected shape [2048, 1408, 64], file has [2048, 1408, 32]"). Tensors no module claims are
// ignored. The descriptors point into `file`, which must outlive them.
std::vector<ModuleDesc> build_module_tree(const ModelConfig& config, const gguf::File& file);

}  // namespace ktx::model
