// Random-weight GGUF models (`ktx make-model`): every key and tensor a llama.cpp-converted
// `deepseek2` or `llama` file has, at any shape and in any type ktx can write, with seeded weights
// scaled so activations stay near unit size — for tests, benchmarks and users without a model.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/quantize.h"
#include "ktx/tensor_type.h"

namespace ktx::model {

// What a matrix gets when its row is not a multiple of its type's block. (A preset's rules bring
// llama.cpp's substitutes of their own; this decides only rows no 32-wide block fits.)
enum class RowFallback {
  // llama.cpp's substitute (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K -> Q4_0,
  // IQ4_XS -> IQ4_NL), F16 when the substitute does not fit either. Where llama.cpp has no
  // substitute (Q8_0, Q4_0 …) it refuses; a random model takes F16 instead.
  kLlamaCpp,
  kF32,  // F32, whatever the type (the tiny test files' habit)
};

struct RandomModelSpec {
  std::string arch = "deepseek2";  // "deepseek2" or "llama"
  int64_t n_layer = 3;
  int64_t n_embd = 64;
  int64_t n_vocab = 96;
  int64_t n_ctx = 512;
  int64_t n_head = 4;
  float rms_eps = 1e-6f;
  float rope_freq_base = 10000.0f;

  // llama: GQA.
  int64_t n_head_kv = 2;
  int64_t head_dim = 0;     // 0: n_embd / n_head (which must divide)
  bool attn_bias = false;   // llama: blk.N.attn_{q,k,v,output}.bias
  bool rope_freqs = false;  // llama: rope_freqs.weight (Llama 3.1 style), values in [1, 8]

  // Dense FFN width (llama, and deepseek2's leading dense layers).
  int64_t n_ff = 96;

  // deepseek2: MLA.
  int64_t q_lora_rank = 0;  // 0: attn_q (V2-Lite); > 0: attn_q_a / attn_q_a_norm / attn_q_b
  int64_t kv_lora_rank = 32;
  int64_t qk_nope = 16;
  int64_t qk_rope = 8;
  int64_t v_head = 16;
  // false: the older flavour (key_length = qk_nope + qk_rope, value_length = v_head,
  // head_count_kv = n_head, attn_kv_b). true: llama.cpp's newer MLA flavour (key_length =
  // kv_lora_rank + qk_rope, value_length = kv_lora_rank, head_count_kv = 1, *_mla keys,
  // attn_k_b / attn_v_b).
  bool split_kv_b = false;

  // MoE (deepseek2; llama too when n_expert > 0, Mixtral style, every layer MoE, n_ff wide).
  int64_t n_layer_dense_lead = 1;
  int64_t n_expert = 8;
  int64_t n_expert_used = 2;
  int64_t n_expert_shared = 1;
  int64_t n_ff_exp = 32;
  int gating = 0;               // expert_gating_func: 0 leaves the key out (= softmax), 1, 2
  bool exp_probs_bias = false;  // blk.N.exp_probs_b.bias (V3)
  bool weights_norm = false;
  float weights_scale = 1.0f;
  int64_t n_group = 0;  // 0 leaves expert_group_count / _used_count out
  int64_t n_group_used = 0;

  // YaRN (rope.scaling.*). yarn_log_mul is the stored value, 0.1 * mscale_all_dim.
  bool yarn = false;
  float yarn_factor = 40.0f;
  int64_t yarn_orig_ctx = 64;
  float yarn_log_mul = 0.1f;

  bool tied = false;  // no output.weight

  // Storage types. Without a preset, matrices get weight_type and token_embd embd_type; norms,
  // biases and ffn_gate_inp stay F32 (llama.cpp's quantizer keeps ffn_gate_inp F32 too). With a
  // preset, llama.cpp's per-tensor rules choose (ktx::quantize::plan_types), as if the F32 model
  // had been run through llama-quantize. type_of wins over both; then a row that does not fit its
  // type's block takes row_fallback.
  TensorType weight_type = TensorType::F32;
  TensorType embd_type = TensorType::F32;
  std::optional<quantize::Preset> preset;
  std::map<std::string, TensorType> type_of;  // per tensor name
  RowFallback row_fallback = RowFallback::kLlamaCpp;

  uint64_t seed = 1;
  std::string name;            // general.name; empty: "ktx random <arch>"
  std::string tokenizer_from;  // a GGUF file whose tokenizer.* keys are copied (n_vocab must
                               // equal its token count); empty: no tokenizer keys at all

  // check_random_model_spec before writing. Off, the file says whatever the spec says, even
  // what ktx refuses to load (tests build broken files on purpose).
  bool check = true;

  // Hooks for broken files. Keys by full name ("deepseek2.expert_count").
  std::set<std::string> drop_keys;
  std::map<std::string, gguf::Value> set_keys;  // replaces or adds
  std::set<std::string> drop_tensors;
  std::map<std::string, std::vector<int64_t>> reshape;  // writes this shape instead

  // llama's head size: head_dim, or n_embd / n_head when head_dim is 0.
  int64_t effective_head_dim() const {
    return head_dim > 0 || n_head <= 0 ? head_dim : n_embd / n_head;
  }
};

// A named starting point: a real model's shape or a small one for tests.
struct RandomModelPreset {
  std::string_view name;         // "deepseek-v2-lite"
  std::string_view description;  // one line for `ktx make-model --help`
};

// All presets: tiny-deepseek2, tiny-deepseek-v2, tiny-deepseek-v3, tiny-llama (test sizes),
// deepseek-v2-lite, deepseek-v2, deepseek-v3 (full width and depth), llama (Llama-3.2-1B shape).
std::span<const RandomModelPreset> random_model_presets();

// The spec of a preset; throws ktx::Error(kInvalidArgument) listing the names otherwise.
RandomModelSpec random_model_preset(std::string_view name);

// Throws ktx::Error(kInvalidArgument) naming the field, its value and what it must be when the
// spec describes a model ktx would refuse to load (n_expert_used > n_expert, heads that do not
// divide the hidden size, a type ktx cannot write …).
void check_random_model_spec(const RandomModelSpec& spec);

// One tensor as it will be written.
struct RandomTensor {
  std::string name;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the row
  TensorType type = TensorType::F32;
  bool fallback = false;  // the row length forced a substitute type
  std::string why;        // how the type was chosen ("--type Q4_K; row 1408 ... -> Q5_0")
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
};

// Every tensor of the file, in writing order, with its type. Checks the spec first (when
// spec.check) and throws as check_random_model_spec and plan_types do.
std::vector<RandomTensor> random_model_tensors(const RandomModelSpec& spec);

struct RandomModelProgress {
  size_t done = 0;  // tensors finished, of count
  size_t count = 0;
  uint64_t bytes_done = 0;  // tensor data finished, of bytes_total
  uint64_t bytes_total = 0;
  const RandomTensor* tensor = nullptr;  // the one just finished
};

struct RandomModelOptions {
  int threads = 0;  // generating and quantizing threads; 0 = all hardware threads
  // Tensor data is staged in memory up to this many bytes until the file is written; above it,
  // in an unlinked scratch file next to the output (disk instead of RAM).
  uint64_t memory_limit = uint64_t{4} << 30;
  std::function<void(const RandomModelProgress&)> progress;  // on the calling thread
};

struct RandomModelSummary {
  size_t n_tensors = 0;
  size_t n_fallback = 0;
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;                    // tensor data, headers excluded
  std::vector<quantize::TypeCount> types;  // by type id
  double seconds = 0;
};

// Writes the model to `path` (through a temporary file renamed at the end). Each tensor is
// generated and quantized row by row on `threads` workers straight into its place in the staging
// area, so the peak memory is the output's size (or less, see memory_limit), never the f32
// model's. The same spec gives the same bytes, whatever the thread count. Throws ktx::Error.
RandomModelSummary write_random_model(const RandomModelSpec& spec, const std::string& path,
                                      const RandomModelOptions& options = {});

// The whole file in a writer that owns its bytes, for tests that add to it before writing.
gguf::Writer random_model_writer(const RandomModelSpec& spec, int threads = 1);

}  // namespace ktx::model
