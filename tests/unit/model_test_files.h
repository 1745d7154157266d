// Tiny but complete `deepseek2` / `llama` GGUF files for tests: every key and tensor a real
// llama.cpp-converted file has, with small sizes and seeded random weights, so config, module
// tree, operator and executor tests all start from the same kind of file. Knobs cover the
// variants real files come in (q_lora on/off, attn_kv_b vs attn_k_b/attn_v_b, gating, groups,
// YaRN, dense lead, shared experts, tied embeddings, quantized weights) plus hooks to break a
// file on purpose (drop or replace a key, drop or reshape a tensor).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gguf_test_helpers.h"  // TempDir
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"

namespace ktx::model::test {

using ktx::gguf::test::TempDir;

struct TinyModelSpec {
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
  int64_t head_dim = 16;
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

  // Storage types. Matrices get weight_type, token_embd embd_type; norms, biases and
  // ffn_gate_inp stay F32 (llama.cpp's quantizer keeps ffn_gate_inp F32 too). A matrix whose row
  // is not a multiple of the type's block falls back to F32, as real files fall back.
  TensorType weight_type = TensorType::F32;
  TensorType embd_type = TensorType::F32;
  std::map<std::string, TensorType> type_of;  // per tensor name, wins over the two above

  uint64_t seed = 1;

  // Hooks for broken files. Keys by full name ("deepseek2.expert_count").
  std::set<std::string> drop_keys;
  std::map<std::string, gguf::Value> set_keys;  // replaces or adds
  std::set<std::string> drop_tensors;
  std::map<std::string, std::vector<int64_t>> reshape;  // writes this shape instead

  // Presets shaped like the real models, scaled down.
  static TinyModelSpec lite() { return {}; }
  static TinyModelSpec v2() {
    TinyModelSpec s;
    s.q_lora_rank = 48;
    s.n_expert_shared = 2;
    s.weights_scale = 16.0f;
    s.yarn = true;
    s.yarn_log_mul = 0.0707f;
    return s;
  }
  static TinyModelSpec v3() {
    TinyModelSpec s;
    s.n_layer = 4;
    s.q_lora_rank = 48;
    s.n_layer_dense_lead = 2;
    s.n_expert = 16;
    s.n_expert_used = 4;
    s.gating = 2;
    s.exp_probs_bias = true;
    s.weights_norm = true;
    s.weights_scale = 2.5f;
    s.n_group = 4;
    s.n_group_used = 2;
    s.yarn = true;
    s.yarn_log_mul = 0.1f;
    s.split_kv_b = true;
    return s;
  }
  static TinyModelSpec llama() {
    TinyModelSpec s;
    s.arch = "llama";
    s.n_layer = 2;
    s.n_layer_dense_lead = 0;
    s.n_expert = 0;
    s.n_expert_used = 0;
    s.n_expert_shared = 0;
    return s;
  }
};

namespace detail {

// splitmix64: the same numbers on every platform (std:: distributions are not portable).
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  float uniform() {  // [-1, 1)
    return static_cast<float>(static_cast<double>(next() >> 11) * 0x1.0p-52 - 1.0);
  }

 private:
  uint64_t state_;
};

inline uint64_t name_hash(const std::string& s) {  // FNV-1a, so a tensor's values do not
  uint64_t h = 0xcbf29ce484222325ull;              // depend on which others the file holds
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

enum class Fill { kMatrix, kNorm, kBias, kRopeFreqs };

class Builder {
 public:
  explicit Builder(const TinyModelSpec& spec) : s_(spec) {}

  gguf::Writer build() {
    keys();
    tensors();
    return std::move(w_);
  }

 private:
  void key(const std::string& suffix, gguf::Value v) { put(s_.arch + "." + suffix, std::move(v)); }
  void put(const std::string& name, gguf::Value v) {
    if (s_.drop_keys.count(name) == 0) w_.set_metadata(name, std::move(v));
  }
  static gguf::Value u32(int64_t v) { return gguf::Value::uint32(static_cast<uint32_t>(v)); }
  static gguf::Value f32(float v) { return gguf::Value::float32(v); }

  void keys() {
    const bool ds = s_.arch == "deepseek2";
    put("general.architecture", gguf::Value::string(s_.arch));
    put("general.name", gguf::Value::string("ktx tiny " + s_.arch));
    key("block_count", u32(s_.n_layer));
    key("context_length", u32(s_.n_ctx));
    key("embedding_length", u32(s_.n_embd));
    key("feed_forward_length", u32(s_.n_ff));
    key("attention.head_count", u32(s_.n_head));
    key("rope.freq_base", f32(s_.rope_freq_base));
    key("attention.layer_norm_rms_epsilon", f32(s_.rms_eps));
    key("vocab_size", u32(s_.n_vocab));
    if (ds) {
      key("attention.head_count_kv", u32(s_.split_kv_b ? 1 : s_.n_head));
      key("leading_dense_block_count", u32(s_.n_layer_dense_lead));
      if (s_.q_lora_rank > 0) key("attention.q_lora_rank", u32(s_.q_lora_rank));
      key("attention.kv_lora_rank", u32(s_.kv_lora_rank));
      if (s_.split_kv_b) {
        key("attention.key_length", u32(s_.kv_lora_rank + s_.qk_rope));
        key("attention.value_length", u32(s_.kv_lora_rank));
        key("attention.key_length_mla", u32(s_.qk_nope + s_.qk_rope));
        key("attention.value_length_mla", u32(s_.v_head));
      } else {
        key("attention.key_length", u32(s_.qk_nope + s_.qk_rope));
        key("attention.value_length", u32(s_.v_head));
      }
      key("rope.dimension_count", u32(s_.qk_rope));
      key("expert_feed_forward_length", u32(s_.n_ff_exp));
    } else {
      key("attention.head_count_kv", u32(s_.n_head_kv));
      key("rope.dimension_count", u32(s_.head_dim));
      if (s_.n_head * s_.head_dim != s_.n_embd) {
        key("attention.key_length", u32(s_.head_dim));
        key("attention.value_length", u32(s_.head_dim));
      }
    }
    if (s_.n_expert > 0) {
      key("expert_count", u32(s_.n_expert));
      key("expert_used_count", u32(s_.n_expert_used));
      if (ds) {
        key("expert_shared_count", u32(s_.n_expert_shared));
        key("expert_weights_scale", f32(s_.weights_scale));
        key("expert_weights_norm", gguf::Value::boolean(s_.weights_norm));
        if (s_.gating != 0) key("expert_gating_func", u32(s_.gating));
      }
      if (s_.n_group > 0) {
        key("expert_group_count", u32(s_.n_group));
        key("expert_group_used_count", u32(s_.n_group_used));
      }
    }
    if (s_.yarn) {
      key("rope.scaling.type", gguf::Value::string("yarn"));
      key("rope.scaling.factor", f32(s_.yarn_factor));
      key("rope.scaling.original_context_length", u32(s_.yarn_orig_ctx));
      if (ds) key("rope.scaling.yarn_log_multiplier", f32(s_.yarn_log_mul));
    }
    for (const auto& [name, value] : s_.set_keys) w_.set_metadata(name, value);
  }

  void tensors() {
    const int64_t E = s_.n_embd;
    matrix("token_embd.weight", {E, s_.n_vocab}, s_.embd_type);
    for (int64_t il = 0; il < s_.n_layer; ++il) {
      const std::string b = "blk." + std::to_string(il) + ".";
      vec(b + "attn_norm.weight", E, Fill::kNorm);
      if (s_.arch == "deepseek2") {
        mla(b);
      } else {
        gqa(b, il);
      }
      vec(b + "ffn_norm.weight", E, Fill::kNorm);
      const bool moe = s_.n_expert > 0 && (s_.arch == "llama" || il >= s_.n_layer_dense_lead);
      if (!moe) {
        matrix(b + "ffn_gate.weight", {E, s_.n_ff});
        matrix(b + "ffn_up.weight", {E, s_.n_ff});
        matrix(b + "ffn_down.weight", {s_.n_ff, E});
        continue;
      }
      const int64_t ff = s_.arch == "llama" ? s_.n_ff : s_.n_ff_exp;
      matrix(b + "ffn_gate_inp.weight", {E, s_.n_expert}, TensorType::F32);
      if (s_.exp_probs_bias) vec(b + "exp_probs_b.bias", s_.n_expert, Fill::kBias);
      matrix(b + "ffn_gate_exps.weight", {E, ff, s_.n_expert});
      matrix(b + "ffn_up_exps.weight", {E, ff, s_.n_expert});
      matrix(b + "ffn_down_exps.weight", {ff, E, s_.n_expert});
      if (s_.arch == "deepseek2" && s_.n_expert_shared > 0) {
        const int64_t sh = s_.n_ff_exp * s_.n_expert_shared;
        matrix(b + "ffn_gate_shexp.weight", {E, sh});
        matrix(b + "ffn_up_shexp.weight", {E, sh});
        matrix(b + "ffn_down_shexp.weight", {sh, E});
      }
    }
    vec("output_norm.weight", E, Fill::kNorm);
    if (!s_.tied) matrix("output.weight", {E, s_.n_vocab});
  }

  void mla(const std::string& b) {
    const int64_t E = s_.n_embd, H = s_.n_head, qk = s_.qk_nope + s_.qk_rope;
    if (s_.q_lora_rank > 0) {
      matrix(b + "attn_q_a.weight", {E, s_.q_lora_rank});
      vec(b + "attn_q_a_norm.weight", s_.q_lora_rank, Fill::kNorm);
      matrix(b + "attn_q_b.weight", {s_.q_lora_rank, H * qk});
    } else {
      matrix(b + "attn_q.weight", {E, H * qk});
    }
    matrix(b + "attn_kv_a_mqa.weight", {E, s_.kv_lora_rank + s_.qk_rope});
    vec(b + "attn_kv_a_norm.weight", s_.kv_lora_rank, Fill::kNorm);
    if (s_.split_kv_b) {
      matrix(b + "attn_k_b.weight", {s_.qk_nope, s_.kv_lora_rank, H});
      matrix(b + "attn_v_b.weight", {s_.kv_lora_rank, s_.v_head, H});
    } else {
      matrix(b + "attn_kv_b.weight", {s_.kv_lora_rank, H * (s_.qk_nope + s_.v_head)});
    }
    matrix(b + "attn_output.weight", {H * s_.v_head, E});
  }

  void gqa(const std::string& b, int64_t il) {
    const int64_t E = s_.n_embd, q = s_.n_head * s_.head_dim, kv = s_.n_head_kv * s_.head_dim;
    matrix(b + "attn_q.weight", {E, q});
    matrix(b + "attn_k.weight", {E, kv});
    matrix(b + "attn_v.weight", {E, kv});
    matrix(b + "attn_output.weight", {q, E});
    if (s_.attn_bias) {
      vec(b + "attn_q.bias", q, Fill::kBias);
      vec(b + "attn_k.bias", kv, Fill::kBias);
      vec(b + "attn_v.bias", kv, Fill::kBias);
      vec(b + "attn_output.bias", E, Fill::kBias);
    }
    if (s_.rope_freqs && il == 0) vec("rope_freqs.weight", s_.head_dim / 2, Fill::kRopeFreqs);
  }

  void vec(const std::string& name, int64_t n, Fill fill) { add(name, {n}, TensorType::F32, fill); }
  void matrix(const std::string& name, std::vector<int64_t> shape) {
    add(name, std::move(shape), s_.weight_type, Fill::kMatrix);
  }
  void matrix(const std::string& name, std::vector<int64_t> shape, TensorType type) {
    add(name, std::move(shape), type, Fill::kMatrix);
  }

  void add(const std::string& name, std::vector<int64_t> shape, TensorType type, Fill fill) {
    if (s_.drop_tensors.count(name) != 0) return;
    if (auto it = s_.reshape.find(name); it != s_.reshape.end()) shape = it->second;
    if (auto it = s_.type_of.find(name); it != s_.type_of.end()) type = it->second;
    if (shape[0] % traits(type).block_size != 0) type = TensorType::F32;

    int64_t rows = 1;
    for (size_t i = 1; i < shape.size(); ++i) rows *= shape[i];
    const int64_t row = shape[0];
    Rng rng(s_.seed ^ name_hash(name));
    const float scale = 1.0f / std::sqrt(static_cast<float>(row));  // keeps x·w near unit size
    std::vector<float> values(static_cast<size_t>(row * rows));
    for (float& v : values) {
      const float u = rng.uniform();
      switch (fill) {
        case Fill::kMatrix:
          v = u * scale;
          break;
        case Fill::kNorm:
          v = 1.0f + 0.25f * u;
          break;
        case Fill::kBias:
          v = 0.1f * u;
          break;
        case Fill::kRopeFreqs:
          v = 4.5f + 3.5f * u;
          break;
      }
    }
    const size_t row_bytes = row_size(type, row);
    std::vector<uint8_t> bytes(row_bytes * static_cast<size_t>(rows));
    for (int64_t r = 0; r < rows; ++r) {
      const float* src = values.data() + r * row;
      uint8_t* dst = bytes.data() + static_cast<size_t>(r) * row_bytes;
      if (type == TensorType::F32) {
        std::memcpy(dst, src, row_bytes);
      } else {
        quant::quantize_row(type, src, dst, row);
      }
    }
    w_.add_tensor(name, type, std::move(shape), bytes.data(), bytes.size());
  }

  const TinyModelSpec& s_;
  gguf::Writer w_;
};

}  // namespace detail

// A writer holding the whole file, for tests that want to add to it before writing.
inline gguf::Writer tiny_model_writer(const TinyModelSpec& spec) {
  return detail::Builder(spec).build();
}

// Writes the tiny model to `path`.
inline void write_tiny_model(const TinyModelSpec& spec, const std::string& path) {
  tiny_model_writer(spec).write(path);
}

// A tensor's values as f32, whatever its stored type (for reference computations).
inline std::vector<float> tensor_to_f32(const gguf::TensorInfo& t) {
  const int64_t row = t.shape.at(0);
  const int64_t rows = t.rows();
  std::vector<float> out(static_cast<size_t>(row * rows));
  const size_t row_bytes = row_size(t.type, row);
  for (int64_t r = 0; r < rows; ++r) {
    quant::dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes, out.data() + r * row,
                          row);
  }
  return out;
}

}  // namespace ktx::model::test
