// build_module_tree: the model as HF/KTransformers-named modules in execution order, each with
// its GGUF tensors by role. Every tensor's shape is checked against the config with the shapes
// llama.cpp's loader expects (src/llama-model.cpp, create_tensor for LLM_ARCH_LLAMA and
// LLM_ARCH_DEEPSEEK2), so operators can index weights without checking again.
#include "model/module_tree.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>
#include <utility>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::model {
namespace {

using Shape = std::vector<int64_t>;

// GGUF leaves trailing 1-dimensions out, but a writer may keep them ([n, 1] for [n]); compare
// shapes the way ggml does, with the missing dimensions read as 1.
Shape trimmed(Shape s) {
  while (s.size() > 1 && s.back() == 1) s.pop_back();
  return s;
}

class TreeBuilder {
 public:
  TreeBuilder(const ModelConfig& config, const gguf::File& file) : c_(config), file_(file) {}

  std::vector<ModuleDesc> build() {
    embedding();
    for (int64_t il = 0; il < c_.n_layer; ++il) layer(il);
    ModuleDesc& norm = add("model.norm", ModuleKind::kRmsNorm, -1);
    need(norm, "weight", "output_norm.weight", {c_.n_embd});
    ModuleDesc& head = add("lm_head", ModuleKind::kLmHead, -1);
    need(head, "weight", c_.tied_embeddings ? "token_embd.weight" : "output.weight",
         {c_.n_embd, c_.n_vocab});
    return std::move(modules_);
  }

 private:
  ModuleDesc& add(std::string name, ModuleKind kind, int64_t layer) {
    modules_.push_back(ModuleDesc{std::move(name), kind, layer, {}});
    return modules_.back();
  }

  static std::string blk(int64_t il, std::string_view what) {
    return fmt::format("blk.{}.{}", il, what);
  }

  void check_shape(const ModuleDesc& m, std::string_view role, const gguf::TensorInfo& t,
                   const Shape& expected) const {
    if (trimmed(t.shape) == trimmed(expected)) return;
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: tensor '{}' ({} of {}): expected shape [{}], file has [{}]",
                            file_.paths().front(), t.name, role, m.name, fmt::join(expected, ", "),
                            fmt::join(t.shape, ", ")));
  }

  // A tensor the module cannot run without.
  void need(ModuleDesc& m, std::string role, const std::string& tensor, const Shape& expected,
            std::string_view hint = {}) {
    const gguf::TensorInfo* t = file_.find_tensor(tensor);
    if (t == nullptr) {
      throw Error(
          ErrorCode::kInvalidFile,
          fmt::format("{}: tensor '{}' is missing; module {} ({}) needs it as '{}'{}",
                      file_.paths().front(), tensor, m.name, module_kind_name(m.kind), role, hint));
    }
    check_shape(m, role, *t, expected);
    m.weights.emplace(std::move(role), t);
  }

  // A tensor the module uses when the file has it (biases, llama3 rope factors …).
  void maybe(ModuleDesc& m, std::string role, const std::string& tensor, const Shape& expected) {
    const gguf::TensorInfo* t = file_.find_tensor(tensor);
    if (t == nullptr) return;
    check_shape(m, role, *t, expected);
    m.weights.emplace(std::move(role), t);
  }

  // llama.cpp also loads a few merged layouts that ktx does not split (yet); say so rather than
  // report the separate tensors as missing.
  void refuse_fused(const ModuleDesc& m, const std::string& separate, const std::string& fused,
                    std::string_view what) const {
    if (file_.find_tensor(separate) != nullptr || file_.find_tensor(fused) == nullptr) return;
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{}: tensor '{}' ({}) for module {} is not supported; ktx reads "
                            "separate tensors such as '{}'",
                            file_.paths().front(), fused, what, m.name, separate));
  }

  void embedding() {
    ModuleDesc& m = add("model.embed_tokens", ModuleKind::kEmbedding, -1);
    need(m, "weight", "token_embd.weight", {c_.n_embd, c_.n_vocab});
  }

  void layer(int64_t il) {
    const std::string prefix = fmt::format("model.layers.{}", il);
    need(add(prefix + ".input_layernorm", ModuleKind::kRmsNorm, il), "weight",
         blk(il, "attn_norm.weight"), {c_.n_embd});
    if (c_.arch == Architecture::kDeepseek2) {
      mla_attention(add(prefix + ".self_attn", ModuleKind::kMlaAttention, il), il);
    } else {
      gqa_attention(add(prefix + ".self_attn", ModuleKind::kGqaAttention, il), il);
    }
    need(add(prefix + ".post_attention_layernorm", ModuleKind::kRmsNorm, il), "weight",
         blk(il, "ffn_norm.weight"), {c_.n_embd});
    if (!c_.is_moe_layer(il)) {
      // Routed experts in a layer the metadata calls dense: the expert keys are what is wrong,
      // not the dense tensors the layer would then need.
      if (file_.find_tensor(blk(il, "ffn_gate_exps.weight")) != nullptr &&
          file_.find_tensor(blk(il, "ffn_gate.weight")) == nullptr) {
        throw Error(ErrorCode::kInvalidFile,
                    fmt::format("{}: layer {} holds routed experts (blk.{}.ffn_gate_exps.weight) "
                                "but the metadata makes it a dense layer: check {}.expert_count "
                                "({}) and {}.leading_dense_block_count ({})",
                                file_.paths().front(), il, il, c_.arch_name, c_.n_expert,
                                c_.arch_name, c_.n_layer_dense_lead));
      }
      mlp(add(prefix + ".mlp", ModuleKind::kMlp, il), il, "", c_.n_ff);
      return;
    }
    ModuleDesc& gate = add(prefix + ".mlp.gate", ModuleKind::kMoeGate, il);
    need(gate, "weight", blk(il, "ffn_gate_inp.weight"), {c_.n_embd, c_.n_expert});
    maybe(gate, "bias", blk(il, "exp_probs_b.bias"), {c_.n_expert});

    ModuleDesc& experts = add(prefix + ".mlp.experts", ModuleKind::kExperts, il);
    refuse_fused(experts, blk(il, "ffn_gate_exps.weight"), blk(il, "ffn_gate_up_exps.weight"),
                 "gate and up experts merged into one tensor");
    const std::string_view hint =
        " (ktx reads experts merged into 3-D tensors, as llama.cpp's converter writes them)";
    need(experts, "gate_exps", blk(il, "ffn_gate_exps.weight"),
         {c_.n_embd, c_.n_ff_exp, c_.n_expert}, hint);
    need(experts, "up_exps", blk(il, "ffn_up_exps.weight"), {c_.n_embd, c_.n_ff_exp, c_.n_expert},
         hint);
    need(experts, "down_exps", blk(il, "ffn_down_exps.weight"),
         {c_.n_ff_exp, c_.n_embd, c_.n_expert}, hint);

    if (c_.n_expert_shared > 0) {
      mlp(add(prefix + ".mlp.shared_experts", ModuleKind::kMlp, il), il, "_shexp",
          c_.n_ff_exp * c_.n_expert_shared);
    }
  }

  // SwiGLU MLP: blk.N.ffn_{gate,up,down}{suffix}.weight.
  void mlp(ModuleDesc& m, int64_t il, std::string_view suffix, int64_t n_ff) {
    need(m, "gate", blk(il, fmt::format("ffn_gate{}.weight", suffix)), {c_.n_embd, n_ff});
    need(m, "up", blk(il, fmt::format("ffn_up{}.weight", suffix)), {c_.n_embd, n_ff});
    need(m, "down", blk(il, fmt::format("ffn_down{}.weight", suffix)), {n_ff, c_.n_embd});
    if (c_.arch == Architecture::kLlama && suffix.empty()) {
      // llama.cpp loads these optional biases for LLM_ARCH_LLAMA.
      maybe(m, "gate_bias", blk(il, "ffn_gate.bias"), {n_ff});
      maybe(m, "up_bias", blk(il, "ffn_up.bias"), {n_ff});
      maybe(m, "down_bias", blk(il, "ffn_down.bias"), {c_.n_embd});
    }
  }

  void mla_attention(ModuleDesc& m, int64_t il) {
    const int64_t qk_head = c_.qk_nope_head_dim + c_.qk_rope_head_dim;
    if (c_.q_lora_rank > 0) {
      need(m, "q_a", blk(il, "attn_q_a.weight"), {c_.n_embd, c_.q_lora_rank});
      need(m, "q_a_norm", blk(il, "attn_q_a_norm.weight"), {c_.q_lora_rank});
      need(m, "q_b", blk(il, "attn_q_b.weight"), {c_.q_lora_rank, c_.n_head * qk_head});
    } else {
      const bool has_q_a = file_.find_tensor(blk(il, "attn_q_a.weight")) != nullptr;
      need(m, "q", blk(il, "attn_q.weight"), {c_.n_embd, c_.n_head * qk_head},
           has_q_a ? " (the file has attn_q_a: is attention.q_lora_rank missing?)" : "");
    }
    need(m, "kv_a_mqa", blk(il, "attn_kv_a_mqa.weight"),
         {c_.n_embd, c_.kv_lora_rank + c_.qk_rope_head_dim});
    need(m, "kv_a_norm", blk(il, "attn_kv_a_norm.weight"), {c_.kv_lora_rank});

    const Shape kv_b{c_.kv_lora_rank, c_.n_head * (c_.qk_nope_head_dim + c_.v_head_dim)};
    const Shape k_b{c_.qk_nope_head_dim, c_.kv_lora_rank, c_.n_head};
    const Shape v_b{c_.kv_lora_rank, c_.v_head_dim, c_.n_head};
    if (c_.mla_split_kv_b) {
      need(m, "k_b", blk(il, "attn_k_b.weight"), k_b);
      need(m, "v_b", blk(il, "attn_v_b.weight"), v_b);
      maybe(m, "kv_b", blk(il, "attn_kv_b.weight"), kv_b);
    } else {
      need(m, "kv_b", blk(il, "attn_kv_b.weight"), kv_b);
      maybe(m, "k_b", blk(il, "attn_k_b.weight"), k_b);
      maybe(m, "v_b", blk(il, "attn_v_b.weight"), v_b);
    }
    need(m, "output", blk(il, "attn_output.weight"), {c_.n_head * c_.v_head_dim, c_.n_embd});
  }

  void gqa_attention(ModuleDesc& m, int64_t il) {
    const int64_t q_width = c_.n_head * c_.head_dim;
    const int64_t kv_width = c_.n_head_kv * c_.head_dim;
    refuse_fused(m, blk(il, "attn_q.weight"), blk(il, "attn_qkv.weight"),
                 "q, k and v merged into one tensor");
    need(m, "q", blk(il, "attn_q.weight"), {c_.n_embd, q_width});
    need(m, "k", blk(il, "attn_k.weight"), {c_.n_embd, kv_width});
    need(m, "v", blk(il, "attn_v.weight"), {c_.n_embd, kv_width});
    need(m, "output", blk(il, "attn_output.weight"), {q_width, c_.n_embd});
    maybe(m, "q_bias", blk(il, "attn_q.bias"), {q_width});
    maybe(m, "k_bias", blk(il, "attn_k.bias"), {kv_width});
    maybe(m, "v_bias", blk(il, "attn_v.bias"), {kv_width});
    maybe(m, "output_bias", blk(il, "attn_output.bias"), {c_.n_embd});
    // Llama 3.1's rope scaling ships as per-frequency divisors, one tensor for all layers.
    maybe(m, "rope_freqs", "rope_freqs.weight", {c_.rope.n_dims / 2});
  }

  const ModelConfig& c_;
  const gguf::File& file_;
  std::vector<ModuleDesc> modules_;
};

}  // namespace

std::string_view module_kind_name(ModuleKind kind) {
  switch (kind) {
    case ModuleKind::kEmbedding:
      return "embedding";
    case ModuleKind::kRmsNorm:
      return "rms_norm";
    case ModuleKind::kMlaAttention:
      return "mla_attention";
    case ModuleKind::kGqaAttention:
      return "gqa_attention";
    case ModuleKind::kMlp:
      return "mlp";
    case ModuleKind::kMoeGate:
      return "moe_gate";
    case ModuleKind::kExperts:
      return "experts";
    case ModuleKind::kLmHead:
      return "lm_head";
  }
  return "unknown";
}

std::optional<ModuleKind> module_kind_from_name(std::string_view name) {
  for (ModuleKind k : {ModuleKind::kEmbedding, ModuleKind::kRmsNorm, ModuleKind::kMlaAttention,
                       ModuleKind::kGqaAttention, ModuleKind::kMlp, ModuleKind::kMoeGate,
                       ModuleKind::kExperts, ModuleKind::kLmHead}) {
    if (module_kind_name(k) == name) return k;
  }
  return std::nullopt;
}

const gguf::TensorInfo* ModuleDesc::find_weight(std::string_view role) const {
  for (const auto& [r, t] : weights) {
    if (r == role) return t;
  }
  return nullptr;
}

const gguf::TensorInfo& ModuleDesc::weight(std::string_view role) const {
  if (const gguf::TensorInfo* t = find_weight(role)) return *t;
  std::vector<std::string_view> roles;
  for (const auto& entry : weights) roles.push_back(entry.first);
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("module {} ({}) has no weight '{}' (it has: {})", name,
                          module_kind_name(kind), role, fmt::join(roles, ", ")));
}

std::vector<ModuleDesc> build_module_tree(const ModelConfig& config, const gguf::File& file) {
  return TreeBuilder(config, file).build();
}

}  // namespace ktx::model
