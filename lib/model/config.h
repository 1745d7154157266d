// Model hyper-parameters read from GGUF metadata, for the architectures ktx runs: `llama` (dense,
// GQA) and `deepseek2` (MLA attention + MoE; DeepSeek-V2, V2-Lite, V3, R1). Pure description: no
// weights, no kernels. Names follow the GGUF keys and the DeepSeek papers.
#pragma once

#include <cstdint>
#include <string>

namespace ktx::gguf {
class File;
}

namespace ktx::model {

enum class Architecture { kLlama, kDeepseek2 };

enum class GatingFunc { kSoftmax = 1, kSigmoid = 2 };  // the GGUF expert_gating_func values

enum class RopeScaling { kNone, kLinear, kYarn };

struct RopeConfig {
  int64_t n_dims = 0;          // rope.dimension_count: how many dimensions of a head rotate
  float freq_base = 10000.0f;  // rope.freq_base
  bool interleaved = true;     // pairs (2i, 2i+1) as llama/deepseek2 GGUF store them ("NORM")
  RopeScaling scaling = RopeScaling::kNone;
  float factor = 1.0f;           // rope.scaling.factor (or the older rope.scale_linear)
  int64_t original_context = 0;  // rope.scaling.original_context_length, else n_ctx_train
  // rope.scaling.yarn_log_multiplier as stored: 0.1 * mscale_all_dim for deepseek2 (llama.cpp's
  // loader divides it by 0.1 again; ktx keeps the stored value). 0 when absent.
  float yarn_log_multiplier = 0.0f;
  float yarn_beta_fast = 32.0f;  // YaRN ramp bounds: rope.scaling.yarn_beta_fast / _slow when
  float yarn_beta_slow = 1.0f;   // stored, else DeepSeek's defaults
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;
  std::string arch_name;  // general.architecture as stored

  int64_t n_layer = 0;      // block_count
  int64_t n_embd = 0;       // embedding_length (hidden size)
  int64_t n_vocab = 0;      // rows of token_embd (else vocab_size, else the tokenizer's list)
  int64_t n_ctx_train = 0;  // context_length
  float rms_eps = 1e-6f;    // attention.layer_norm_rms_epsilon
  RopeConfig rope;

  // Attention heads. For llama: GQA with n_head_kv key/value heads of head_dim each. For
  // deepseek2 the naive (decompressed) view: n_head_kv = n_head, head_dim = qk_nope_head_dim +
  // qk_rope_head_dim (192) — whatever head_count_kv / key_length the file stores, since the newer
  // GGUF flavour stores the absorbed view there (1 head of kv_lora_rank + qk_rope_head_dim).
  int64_t n_head = 0;
  int64_t n_head_kv = 0;
  int64_t head_dim = 0;

  // Multi-head latent attention (deepseek2).
  int64_t q_lora_rank = 0;       // 0: no query compression (V2-Lite)
  int64_t kv_lora_rank = 0;      // width of the cached latent c_kv (512)
  int64_t qk_nope_head_dim = 0;  // 128
  int64_t qk_rope_head_dim = 0;  // 64: the rotary part, k_pe shared by all heads
  int64_t v_head_dim = 0;        // 128
  // The file stores attn_k_b / attn_v_b (llama.cpp's newer MLA files) rather than attn_kv_b,
  // judged from layer 0's tensors. A file holding both keeps all three roles on self_attn.
  bool mla_split_kv_b = false;

  // Feed-forward.
  int64_t n_ff = 0;                // dense FFN width (feed_forward_length); 0 when no layer is
                                   // dense and the file leaves it out
  int64_t n_layer_dense_lead = 0;  // leading_dense_block_count: first layers are dense
  int64_t n_expert = 0;            // 0 for a dense model
  int64_t n_expert_used = 0;       // top-k
  int64_t n_expert_shared = 0;
  int64_t n_ff_exp = 0;  // expert_feed_forward_length (llama MoE: feed_forward_length)
  GatingFunc gating = GatingFunc::kSoftmax;  // expert_gating_func; missing or 0 = softmax
  bool expert_weights_norm = false;          // llama MoE (Mixtral): always true
  float expert_weights_scale = 1.0f;         // routed_scaling_factor
  int64_t n_group = 0;  // expert_group_count (0 or 1: no group-limited routing)
  int64_t n_group_used = 0;

  bool tied_embeddings = false;  // no output.weight: lm_head reuses token_embd

  // Softmax scale of attention. llama: 1/sqrt(head_dim). deepseek2: mscale^2 / sqrt(qk_nope +
  // qk_rope), where under YaRN with factor > 1 mscale = 1 + yarn_log_multiplier * ln(factor)
  // (= 0.1 * mscale_all_dim * ln(factor) + 1, DeepSeek's yarn_get_mscale), else 1. The same
  // scale serves the naive and the absorbed paths. DeepSeek's rotary cos/sin carry no extra
  // magnitude factor (its mscale / mscale_all_dim ratio is 1 for V2 and V3): the whole YaRN
  // correction lives here.
  float attention_scale() const;
  bool is_moe_layer(int64_t layer) const { return n_expert > 0 && layer >= n_layer_dense_lead; }
  // Values cached per token per layer: MLA keeps kv_lora_rank + qk_rope_head_dim; GQA 2 *
  // n_head_kv * head_dim.
  int64_t kv_values_per_token() const;

  // Reads and validates the metadata; throws ktx::Error naming the file and the key that is
  // missing, of the wrong type or out of range, and kUnsupported for other architectures, for
  // per-layer arrays (head_count, head_count_kv, feed_forward_length) whose values differ, and
  // for gating functions / RoPE scaling types ktx does not implement. Reads tensor shapes only
  // for n_vocab, tied_embeddings and mla_split_kv_b; build_module_tree checks the rest.
  static ModelConfig from_gguf(const gguf::File& file);
};

}  // namespace ktx::model
