// Random models: presets, spec checks, the tensor layout llama.cpp's converter produces, the type
// of each tensor (a fixed type with llama.cpp's row fallbacks, or a preset's per-tensor rules),
// and seeded weights generated and quantized row by row on worker threads.
#include "model/random_model.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <mutex>
#include <thread>
#include <utility>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "ktx/quantize.h"
#include "quantize/staging.h"
#include "runtime/thread_pool.h"

namespace ktx::model {
namespace {

using TT = TensorType;

// --- presets ------------------------------------------------------------------------------------

RandomModelSpec tiny_deepseek2() { return {}; }

RandomModelSpec tiny_deepseek_v2() {
  RandomModelSpec s;
  s.q_lora_rank = 48;
  s.n_expert_shared = 2;
  s.weights_scale = 16.0f;
  s.yarn = true;
  s.yarn_log_mul = 0.0707f;
  return s;
}

RandomModelSpec tiny_deepseek_v3() {
  RandomModelSpec s;
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

RandomModelSpec tiny_llama() {
  RandomModelSpec s;
  s.arch = "llama";
  s.n_layer = 2;
  s.n_layer_dense_lead = 0;
  s.n_expert = 0;
  s.n_expert_used = 0;
  s.n_expert_shared = 0;
  return s;
}

// The sizes of DeepSeek's config.json files, as llama.cpp's converter stores them (softmax
// gating written as expert_gating_func 1, YaRN log multiplier = 0.1 * mscale_all_dim).
RandomModelSpec deepseek_v2_lite() {
  RandomModelSpec s;
  s.n_layer = 27;
  s.n_embd = 2048;
  s.n_vocab = 102400;
  s.n_ctx = 163840;
  s.n_head = 16;
  s.q_lora_rank = 0;
  s.kv_lora_rank = 512;
  s.qk_nope = 128;
  s.qk_rope = 64;
  s.v_head = 128;
  s.n_ff = 10944;
  s.n_layer_dense_lead = 1;
  s.n_expert = 64;
  s.n_expert_used = 6;
  s.n_expert_shared = 2;
  s.n_ff_exp = 1408;
  s.gating = 1;
  s.weights_scale = 1.0f;
  s.yarn = true;
  s.yarn_factor = 40.0f;
  s.yarn_orig_ctx = 4096;
  s.yarn_log_mul = 0.0707f;
  return s;
}

RandomModelSpec deepseek_v2() {
  RandomModelSpec s = deepseek_v2_lite();
  s.n_layer = 60;
  s.n_embd = 5120;
  s.n_head = 128;
  s.q_lora_rank = 1536;
  s.n_ff = 12288;
  s.n_expert = 160;
  s.n_ff_exp = 1536;
  s.weights_scale = 16.0f;
  s.n_group = 8;  // topk_method group_limited_greedy: 3 of 8 device groups
  s.n_group_used = 3;
  return s;
}

RandomModelSpec deepseek_v3() {
  RandomModelSpec s = deepseek_v2();
  s.n_layer = 61;
  s.n_embd = 7168;
  s.n_vocab = 129280;
  s.n_ff = 18432;
  s.n_layer_dense_lead = 3;
  s.n_expert = 256;
  s.n_expert_used = 8;
  s.n_expert_shared = 1;
  s.n_ff_exp = 2048;
  s.gating = 2;
  s.exp_probs_bias = true;
  s.weights_norm = true;
  s.weights_scale = 2.5f;
  s.n_group = 8;
  s.n_group_used = 4;
  s.yarn_log_mul = 0.1f;
  return s;
}

RandomModelSpec llama_small() {  // Llama-3.2-1B's shape
  RandomModelSpec s = tiny_llama();
  s.n_layer = 16;
  s.n_embd = 2048;
  s.n_vocab = 128256;
  s.n_ctx = 131072;
  s.n_head = 32;
  s.n_head_kv = 8;
  s.n_ff = 8192;
  s.rms_eps = 1e-5f;
  s.rope_freq_base = 500000.0f;
  s.rope_freqs = true;
  s.tied = true;
  return s;
}

struct PresetEntry {
  RandomModelPreset info;
  RandomModelSpec (*make)();
};

constexpr std::array kPresets = {
    PresetEntry{{"tiny-deepseek2", "3 layers, hidden 64, 8 experts: V2-Lite's layout (no q_lora)"},
                tiny_deepseek2},
    PresetEntry{{"tiny-deepseek-v2", "tiny-deepseek2 with q_lora, YaRN, 2 shared experts, x16"},
                tiny_deepseek_v2},
    PresetEntry{
        {"tiny-deepseek-v3", "4 layers, 16 experts: sigmoid + bias, groups 4/2, attn_k_b/attn_v_b"},
        tiny_deepseek_v3},
    PresetEntry{{"tiny-llama", "2 layers, hidden 64, GQA 4/2 heads, dense"}, tiny_llama},
    PresetEntry{{"deepseek-v2-lite",
                 "27 layers, hidden 2048, 16 heads, 64 experts (6 used, 2 shared), 15.7B"},
                deepseek_v2_lite},
    PresetEntry{
        {"deepseek-v2", "60 layers, hidden 5120, 128 heads, q_lora 1536, 160 experts, 236B"},
        deepseek_v2},
    PresetEntry{
        {"deepseek-v3", "61 layers, hidden 7168, 256 experts, sigmoid + bias, groups 8/4, 671B"},
        deepseek_v3},
    PresetEntry{{"llama", "Llama-3.2-1B's shape: 16 layers, hidden 2048, GQA 32/8, tied"},
                llama_small},
};

// --- seeded values ------------------------------------------------------------------------------

// splitmix64 is a counter-based generator: draw k of a stream is mix(base + (k + 1) * gamma), so
// any row can start at its own place and the values never depend on how rows are split among
// threads. Integer arithmetic only: the same numbers on every platform.
constexpr uint64_t kGamma = 0x9E3779B97F4A7C15ull;

uint64_t mix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t name_hash(std::string_view s) {  // FNV-1a, so a tensor's values do not depend on
  uint64_t h = 0xcbf29ce484222325ull;     // which other tensors the file holds
  for (unsigned char ch : s) h = (h ^ ch) * 0x100000001b3ull;
  return h;
}

// Irwin-Hall of four 16-bit uniforms: close to a normal, tails cut at 3.46 sigma, one draw per
// value. The sum is exact, so one float multiply makes the value on every platform alike.
constexpr float kIrwinHallStd = 37837.2265f;  // 65536 / sqrt(3)
float centred_sum(uint64_t z) {
  const int64_t s =
      static_cast<int64_t>((z & 0xffff) + ((z >> 16) & 0xffff) + ((z >> 32) & 0xffff) + (z >> 48));
  return static_cast<float>(s - 131070);
}
float uniform(uint64_t z) {  // [-1, 1)
  return static_cast<float>(static_cast<double>(z >> 11) * 0x1.0p-52 - 1.0);
}

enum class Fill { kMatrix, kNorm, kBias, kRopeFreqs };

// --- the layout ---------------------------------------------------------------------------------

enum class Kind { kEmbedding, kRouter, kMatrix, kVector };

struct TensorDef {
  RandomTensor out;
  Kind kind = Kind::kMatrix;
  Fill fill = Fill::kMatrix;
  float std = 1.0f;  // kMatrix: the values' standard deviation
};

std::string list_presets() {
  std::string out;
  for (const PresetEntry& p : kPresets)
    out += fmt::format("{}{}", out.empty() ? "" : ", ", p.info.name);
  return out;
}

[[noreturn]] void refuse(std::string message) {
  throw Error(ErrorCode::kInvalidArgument, std::move(message));
}

// Writes the keys and lists the tensors, as llama.cpp's converter names and orders them.
class Layout {
 public:
  explicit Layout(const RandomModelSpec& spec) : s_(spec) {}

  std::vector<TensorDef> tensors() {
    const int64_t E = s_.n_embd;
    embedding();
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
      add(b + "ffn_gate_inp.weight", {E, s_.n_expert}, Kind::kRouter, Fill::kMatrix);
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
    return std::move(defs_);
  }

  void keys(gguf::Writer& w, uint32_t file_type) const {
    const bool ds = s_.arch == "deepseek2";
    auto put = [&](const std::string& name, gguf::Value v) {
      if (s_.drop_keys.count(name) == 0) w.set_metadata(name, std::move(v));
    };
    auto key = [&](const std::string& suffix, gguf::Value v) { put(s_.arch + "." + suffix, v); };
    auto u32 = [](int64_t v) { return gguf::Value::uint32(static_cast<uint32_t>(v)); };
    auto f32 = [](float v) { return gguf::Value::float32(v); };

    put("general.architecture", gguf::Value::string(s_.arch));
    put("general.name", gguf::Value::string(s_.name.empty() ? "ktx random " + s_.arch : s_.name));
    put("general.description",
        gguf::Value::string(
            fmt::format("random weights (ktx make-model, seed {}): not a trained model", s_.seed)));
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
      const int64_t head_dim = s_.effective_head_dim();
      key("attention.head_count_kv", u32(s_.n_head_kv));
      key("rope.dimension_count", u32(head_dim));
      if (s_.n_head * head_dim != s_.n_embd) {
        key("attention.key_length", u32(head_dim));
        key("attention.value_length", u32(head_dim));
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
    put("general.file_type", gguf::Value::uint32(file_type));
    put("general.quantization_version", gguf::Value::uint32(2));  // GGML_QNT_VERSION
    if (!s_.tokenizer_from.empty()) {
      copy_tokenizer(w);
    } else {
      // Random weights have no vocabulary. Saying so the way llama.cpp reads it (its "no vocab"
      // type) lets llama.cpp load these files too, for comparisons on the same bytes.
      put("tokenizer.ggml.model", gguf::Value::string("none"));
    }
    for (const auto& [name, value] : s_.set_keys) w.set_metadata(name, value);
  }

 private:
  void copy_tokenizer(gguf::Writer& w) const {
    const gguf::File f = gguf::File::open(s_.tokenizer_from);
    const gguf::Value* tokens = f.find("tokenizer.ggml.tokens");
    if (tokens == nullptr || tokens->strings() == nullptr) {
      refuse(fmt::format("{}: no tokenizer.ggml.tokens list to copy the tokenizer from",
                         s_.tokenizer_from));
    }
    if (static_cast<int64_t>(tokens->array_size()) != s_.n_vocab) {
      refuse(
          fmt::format("{}: the tokenizer has {} tokens, but the model's n_vocab is {}; make "
                      "them equal",
                      s_.tokenizer_from, tokens->array_size(), s_.n_vocab));
    }
    for (const gguf::KeyValue& kv : f.metadata()) {
      if (kv.key.starts_with("tokenizer.") && s_.drop_keys.count(kv.key) == 0) {
        w.set_metadata(kv.key, kv.value);
      }
    }
  }

  void embedding() {
    // A tied embedding is also the output projection, so its rows must give unit-size logits;
    // an untied one is looked up, so unit-size entries start the residual stream at unit size.
    const float std = s_.tied ? 1.0f / std::sqrt(static_cast<float>(s_.n_embd)) : 1.0f;
    add("token_embd.weight", {s_.n_embd, s_.n_vocab}, Kind::kEmbedding, Fill::kMatrix, std);
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
    const int64_t head_dim = s_.effective_head_dim();
    const int64_t E = s_.n_embd, q = s_.n_head * head_dim, kv = s_.n_head_kv * head_dim;
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
    if (s_.rope_freqs && il == 0) vec("rope_freqs.weight", head_dim / 2, Fill::kRopeFreqs);
  }

  void vec(const std::string& name, int64_t n, Fill fill) { add(name, {n}, Kind::kVector, fill); }
  void matrix(const std::string& name, std::vector<int64_t> shape) {
    add(name, std::move(shape), Kind::kMatrix, Fill::kMatrix);
  }

  // Matrices draw with std 1/sqrt(row): a row dotted with a unit-size input gives a unit-size
  // output, so every projection keeps activations near 1 and the router's logits are spread
  // enough that its top-k is not degenerate.
  void add(const std::string& name, std::vector<int64_t> shape, Kind kind, Fill fill,
           float std = 0.0f) {
    if (s_.drop_tensors.count(name) != 0) return;
    if (auto it = s_.reshape.find(name); it != s_.reshape.end()) shape = it->second;
    TensorDef d;
    d.kind = kind;
    d.fill = fill;
    d.std =
        std > 0.0f ? std : 1.0f / std::sqrt(static_cast<float>(std::max<int64_t>(1, shape.at(0))));
    d.out.name = name;
    d.out.shape = std::move(shape);
    defs_.push_back(std::move(d));
  }

  const RandomModelSpec& s_;
  std::vector<TensorDef> defs_;
};

// --- types --------------------------------------------------------------------------------------

void fit_row(TensorDef& d, RowFallback policy) {
  RandomTensor& t = d.out;
  const int64_t row = t.shape.at(0);
  const int64_t block = traits(t.type).block_size;
  if (row % block == 0) return;
  TT chosen = TT::F32;
  if (policy == RowFallback::kLlamaCpp) {
    const std::optional<TT> sub = quantize::row_fallback_type(t.type);
    chosen = sub && row % traits(*sub).block_size == 0 ? *sub : TT::F16;
  }
  t.why += fmt::format("; row {} not a multiple of {} -> {}", row, block, type_name(chosen));
  t.type = chosen;
  t.fallback = true;
}

bool writable_weight_type(TT type) {
  return quant::can_quantize(type) && type != TT::Q8_1 && type != TT::Q8_K;
}

// llama.cpp's LLAMA_FTYPE for a file whose matrices are all `type` (K-quants: the _S mix, the
// closest to "everything in this type").
uint32_t file_type_of(TT type) {
  switch (type) {
    case TT::F32:
      return 0;
    case TT::F16:
      return 1;
    case TT::Q4_0:
      return 2;
    case TT::Q4_1:
      return 3;
    case TT::Q8_0:
      return 7;
    case TT::Q5_0:
      return 8;
    case TT::Q5_1:
      return 9;
    case TT::Q2_K:
      return 10;
    case TT::Q3_K:
      return 11;
    case TT::Q4_K:
      return 14;
    case TT::Q5_K:
      return 16;
    case TT::Q6_K:
      return 18;
    case TT::IQ4_NL:
      return 25;
    case TT::IQ4_XS:
      return 30;
    case TT::BF16:
      return 32;
    default:
      return 0;
  }
}

void choose_types(const RandomModelSpec& s, std::vector<TensorDef>& defs) {
  if (s.preset) {
    quantize::ModelInfo info;
    info.architecture = s.arch;
    info.n_layer = s.n_layer;
    info.n_expert = s.n_expert;
    info.n_head = s.n_head;
    info.n_head_kv = s.arch == "deepseek2" ? (s.split_kv_b ? 1 : s.n_head) : s.n_head_kv;
    // A row no 32-wide block fits gets F16 from llama.cpp or a refusal (when the rules pick a
    // type without a substitute); a random model takes F16 either way (F32 under kF32). Such rows
    // are planned as 256 wide so that llama.cpp's running counters still see the tensor.
    std::vector<quantize::TensorDesc> descs;
    descs.reserve(defs.size());
    for (const TensorDef& d : defs) {
      std::vector<int64_t> shape = d.out.shape;
      if (shape.at(0) % 32 != 0) shape[0] = 256;
      descs.push_back({d.out.name, TT::F32, std::move(shape)});
    }
    const std::string_view preset_name = quantize::preset_info(*s.preset).name;
    for (const quantize::TensorPlan& p : quantize::plan_types(info, descs, *s.preset)) {
      RandomTensor& t = defs[p.index].out;
      t.type = p.to;
      t.fallback = p.fallback;
      t.why = fmt::format("{}: {}", preset_name, p.why);
      if (p.quantizable && t.shape[0] % 32 != 0) {
        t.type = s.row_fallback == RowFallback::kF32 ? TT::F32 : TT::F16;
        t.fallback = true;
        t.why = fmt::format("{}: row {} not a multiple of 32 -> {}", preset_name, t.shape[0],
                            type_name(t.type));
      }
    }
  } else {
    for (TensorDef& d : defs) {
      switch (d.kind) {
        case Kind::kEmbedding:
          d.out.type = s.embd_type;
          d.out.why = fmt::format("embedding type {}", type_name(s.embd_type));
          break;
        case Kind::kMatrix:
          d.out.type = s.weight_type;
          d.out.why = fmt::format("weight type {}", type_name(s.weight_type));
          break;
        case Kind::kRouter:
          d.out.type = TT::F32;
          d.out.why = "expert router: F32, as llama.cpp keeps it";
          break;
        case Kind::kVector:
          d.out.type = TT::F32;
          d.out.why = "1-D: F32";
          break;
      }
      fit_row(d, s.row_fallback);
    }
  }
  for (TensorDef& d : defs) {
    if (auto it = s.type_of.find(d.out.name); it != s.type_of.end()) {
      d.out.type = it->second;
      d.out.fallback = false;
      d.out.why = fmt::format("type_of: {}", type_name(it->second));
      fit_row(d, s.row_fallback);
    }
    if (!writable_weight_type(d.out.type)) {
      refuse(fmt::format("tensor '{}': ktx cannot write type {} ({})", d.out.name,
                         type_name(d.out.type), d.out.why));
    }
    d.out.n_elements = 1;
    for (int64_t dim : d.out.shape)
      d.out.n_elements *= static_cast<uint64_t>(std::max<int64_t>(0, dim));
    const int64_t rows =
        d.out.shape.at(0) == 0 ? 0 : static_cast<int64_t>(d.out.n_elements) / d.out.shape[0];
    d.out.n_bytes = row_size(d.out.type, d.out.shape[0]) * static_cast<uint64_t>(rows);
  }
}

std::vector<TensorDef> layout(const RandomModelSpec& spec) {
  if (spec.check) check_random_model_spec(spec);
  std::vector<TensorDef> defs = Layout(spec).tensors();
  choose_types(spec, defs);
  return defs;
}

uint32_t file_type(const RandomModelSpec& s) {
  return s.preset ? static_cast<uint32_t>(*s.preset) : file_type_of(s.weight_type);
}

// --- generation ---------------------------------------------------------------------------------

// Rows are handed out in chunks of about this many values: the shared counter is touched rarely
// and the last chunk does not leave threads idle.
constexpr int64_t kChunkElements = 64 * 1024;

void generate_row(const TensorDef& d, uint64_t base, int64_t r, float* out) {
  const int64_t n = d.out.shape[0];
  uint64_t state = base + static_cast<uint64_t>(r) * static_cast<uint64_t>(n) * kGamma;
  switch (d.fill) {
    case Fill::kMatrix: {
      const float k = d.std / kIrwinHallStd;
      for (int64_t i = 0; i < n; ++i) out[i] = centred_sum(mix64(state += kGamma)) * k;
      break;
    }
    case Fill::kNorm:  // near 1, so each norm scales but never flips or kills a channel
      for (int64_t i = 0; i < n; ++i) out[i] = 1.0f + 0.25f * uniform(mix64(state += kGamma));
      break;
    case Fill::kBias:
      for (int64_t i = 0; i < n; ++i) out[i] = 0.1f * uniform(mix64(state += kGamma));
      break;
    case Fill::kRopeFreqs:  // Llama 3.1's frequency divisors lie in [1, 8]
      for (int64_t i = 0; i < n; ++i) out[i] = 4.5f + 3.5f * uniform(mix64(state += kGamma));
      break;
  }
}

// Generates every row of `d` and stores it as d.out.type at `dst`, rows spread over the pool.
void fill_tensor(const TensorDef& d, uint64_t seed, uint8_t* dst, runtime::ThreadPool& pool) {
  const int64_t row = d.out.shape[0];
  if (row == 0 || d.out.n_elements == 0) return;
  const int64_t rows = static_cast<int64_t>(d.out.n_elements) / row;
  const size_t row_bytes = row_size(d.out.type, row);
  const uint64_t base = mix64(seed) ^ name_hash(d.out.name);
  pool.parallel_for(rows, std::max<int64_t>(1, kChunkElements / row), [&](int64_t r0, int64_t r1) {
    std::vector<float> values(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      uint8_t* out = dst + static_cast<uint64_t>(r) * row_bytes;
      generate_row(d, base, r, values.data());
      if (d.out.type == TT::F32) {
        std::memcpy(out, values.data(), row_bytes);
      } else {
        quant::quantize_row(d.out.type, values.data(), out, row);
      }
    }
  });
}

int thread_count(int threads) {
  if (threads > 0) return threads;
  return runtime::default_thread_count();
}

}  // namespace

std::span<const RandomModelPreset> random_model_presets() {
  static const std::vector<RandomModelPreset> infos = [] {
    std::vector<RandomModelPreset> out;
    for (const PresetEntry& p : kPresets) out.push_back(p.info);
    return out;
  }();
  return infos;
}

RandomModelSpec random_model_preset(std::string_view name) {
  for (const PresetEntry& p : kPresets) {
    if (p.info.name == name) {
      RandomModelSpec s = p.make();
      s.name = fmt::format("ktx random {}", name);
      return s;
    }
  }
  refuse(fmt::format("unknown model preset '{}'; presets: {}", name, list_presets()));
}

void check_random_model_spec(const RandomModelSpec& s) {
  const bool ds = s.arch == "deepseek2";
  if (!ds && s.arch != "llama") {
    refuse(fmt::format("arch '{}': ktx makes deepseek2 and llama models", s.arch));
  }
  // Sizes are stored as UINT32 keys; a dimension product must also stay far from int64's end.
  constexpr int64_t kMax = std::numeric_limits<int32_t>::max();
  auto range = [&](std::string_view field, int64_t v, int64_t min) {
    if (v < min || v > kMax) {
      refuse(fmt::format("{} is {}, but it must be from {} to {}", field, v, min, kMax));
    }
  };
  range("n_layer", s.n_layer, 1);
  range("n_embd", s.n_embd, 1);
  range("n_vocab", s.n_vocab, 1);
  range("n_ctx", s.n_ctx, 1);
  range("n_head", s.n_head, 1);
  range("n_expert", s.n_expert, 0);
  range("n_layer_dense_lead", s.n_layer_dense_lead, 0);
  if (!(s.rms_eps > 0.0f) || !std::isfinite(s.rms_eps)) {
    refuse(fmt::format("rms_eps is {}, but it must be positive", s.rms_eps));
  }
  if (!(s.rope_freq_base > 0.0f) || !std::isfinite(s.rope_freq_base)) {
    refuse(fmt::format("rope_freq_base is {}, but it must be positive", s.rope_freq_base));
  }

  if (ds) {
    range("q_lora_rank", s.q_lora_rank, 0);
    range("kv_lora_rank", s.kv_lora_rank, 1);
    range("qk_nope", s.qk_nope, 1);
    range("qk_rope", s.qk_rope, 2);
    range("v_head", s.v_head, 1);
    if (s.qk_rope % 2 != 0) {
      refuse(fmt::format("qk_rope is {}, but RoPE turns pairs: it must be even", s.qk_rope));
    }
    if (s.n_layer_dense_lead > s.n_layer) {
      refuse(fmt::format("n_layer_dense_lead is {}, more than n_layer ({})", s.n_layer_dense_lead,
                         s.n_layer));
    }
  } else {
    range("n_head_kv", s.n_head_kv, 1);
    if (s.head_dim == 0 && s.n_embd % s.n_head != 0) {
      refuse(
          fmt::format("n_embd {} is not divisible by n_head {}, so the head size is unknown; "
                      "choose sizes that divide or give head_dim",
                      s.n_embd, s.n_head));
    }
    range("head_dim", s.effective_head_dim(), 2);
    if (s.effective_head_dim() % 2 != 0) {
      refuse(fmt::format("head_dim is {}, but RoPE turns pairs: it must be even",
                         s.effective_head_dim()));
    }
    if (s.n_head % s.n_head_kv != 0) {
      refuse(
          fmt::format("n_head_kv {} does not divide n_head {} (each key/value head serves a "
                      "whole group of query heads)",
                      s.n_head_kv, s.n_head));
    }
  }
  const bool any_dense = s.n_expert == 0 || (ds && s.n_layer_dense_lead > 0);
  if (any_dense || !ds) range("n_ff", s.n_ff, 1);

  if (s.n_expert > 0) {
    range("n_expert_used", s.n_expert_used, 1);
    if (s.n_expert_used > s.n_expert) {
      refuse(
          fmt::format("n_expert_used is {}, more than n_expert ({})", s.n_expert_used, s.n_expert));
    }
    if (ds) {
      range("n_ff_exp", s.n_ff_exp, 1);
      range("n_expert_shared", s.n_expert_shared, 0);
      if (s.gating < 0 || s.gating > 2) {
        refuse(
            fmt::format("gating is {}: expected 0 (key left out, softmax), 1 (softmax) or 2 "
                        "(sigmoid)",
                        s.gating));
      }
      if (!std::isfinite(s.weights_scale) || !(s.weights_scale > 0.0f)) {
        refuse(fmt::format("weights_scale is {}, but it must be positive", s.weights_scale));
      }
    }
    if (s.n_group > 0) {
      if (s.n_expert % s.n_group != 0) {
        refuse(fmt::format("n_group {} does not divide n_expert {}", s.n_group, s.n_expert));
      }
      range("n_group_used", s.n_group_used, 1);
      if (s.n_group_used > s.n_group) {
        refuse(
            fmt::format("n_group_used is {}, more than n_group ({})", s.n_group_used, s.n_group));
      }
      if (s.n_group_used * (s.n_expert / s.n_group) < s.n_expert_used) {
        refuse(fmt::format("n_expert_used is {}, but {} of {} groups hold only {} experts",
                           s.n_expert_used, s.n_group_used, s.n_group,
                           s.n_group_used * (s.n_expert / s.n_group)));
      }
    } else if (s.n_group < 0 || s.n_group_used != 0) {
      refuse(fmt::format("n_group_used is {} without expert groups (n_group {})", s.n_group_used,
                         s.n_group));
    }
  }
  if (s.yarn) {
    if (!std::isfinite(s.yarn_factor) || !(s.yarn_factor > 0.0f)) {
      refuse(fmt::format("yarn_factor is {}, but it must be positive", s.yarn_factor));
    }
    range("yarn_orig_ctx", s.yarn_orig_ctx, 1);
  }
  if (s.preset) quantize::preset_info(*s.preset);  // refuses a number that is not a preset
  for (const auto& [what, type] :
       {std::pair{"weight_type", s.weight_type}, std::pair{"embd_type", s.embd_type}}) {
    if (!s.preset && !writable_weight_type(type)) {
      refuse(fmt::format("{} {}: ktx cannot write that type", what, type_name(type)));
    }
  }
}

std::vector<RandomTensor> random_model_tensors(const RandomModelSpec& spec) {
  std::vector<RandomTensor> out;
  for (TensorDef& d : layout(spec)) out.push_back(std::move(d.out));
  return out;
}

RandomModelSummary write_random_model(const RandomModelSpec& spec, const std::string& path,
                                      const RandomModelOptions& options) {
  const auto start = std::chrono::steady_clock::now();
  if (path.empty()) refuse("write_random_model: empty output path");
  const std::vector<TensorDef> defs = layout(spec);
  runtime::ThreadPool pool(thread_count(options.threads));

  // Every tensor's bytes wait in one staging area, at a cache-line boundary so that two
  // workers never write the same line, until the writer lays the file out.
  constexpr uint64_t kAlign = 64;
  std::vector<uint64_t> offsets(defs.size());
  uint64_t staged = 0, total = 0;
  for (size_t i = 0; i < defs.size(); ++i) {
    offsets[i] = staged;
    staged += (defs[i].out.n_bytes + kAlign - 1) / kAlign * kAlign;
    total += defs[i].out.n_bytes;
  }
  const std::filesystem::path dir = std::filesystem::path(path).parent_path();
  quantize::detail::Staging staging(staged, options.memory_limit,
                                    dir.empty() ? std::string(".") : dir.string());

  gguf::Writer writer(3);
  Layout(spec).keys(writer, file_type(spec));
  RandomModelSummary summary;
  std::map<uint32_t, quantize::TypeCount> by_type;
  for (size_t i = 0; i < defs.size(); ++i) {
    const RandomTensor& t = defs[i].out;
    uint8_t* dst = staging.data() + offsets[i];
    fill_tensor(defs[i], spec.seed, dst, pool);
    writer.add_tensor(t.name, t.type, t.shape, dst, t.n_bytes, /*borrow=*/true);
    quantize::TypeCount& c = by_type[static_cast<uint32_t>(t.type)];
    c.type = t.type;
    ++c.tensors;
    c.bytes += t.n_bytes;
    ++summary.n_tensors;
    summary.n_fallback += t.fallback ? 1 : 0;
    summary.n_elements += t.n_elements;
    summary.n_bytes += t.n_bytes;
    if (options.progress) {
      options.progress({.done = i + 1,
                        .count = defs.size(),
                        .bytes_done = summary.n_bytes,
                        .bytes_total = total,
                        .tensor = &t});
    }
  }
  writer.write(path);
  for (const auto& [id, count] : by_type) summary.types.push_back(count);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

gguf::Writer random_model_writer(const RandomModelSpec& spec, int threads) {
  const std::vector<TensorDef> defs = layout(spec);
  gguf::Writer writer(3);
  Layout(spec).keys(writer, file_type(spec));
  std::vector<uint8_t> bytes;
  runtime::ThreadPool pool(thread_count(threads));
  for (const TensorDef& d : defs) {
    bytes.assign(d.out.n_bytes, 0);
    fill_tensor(d, spec.seed, bytes.data(), pool);
    writer.add_tensor(d.out.name, d.out.type, d.out.shape, bytes.data(), bytes.size());
  }
  return writer;
}

}  // namespace ktx::model
