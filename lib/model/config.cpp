// ModelConfig::from_gguf: the hyper-parameters of a `llama` or `deepseek2` GGUF, read the way
// llama.cpp reads them (src/llama-model.cpp, load_hparams) and checked so that later code can
// trust every size. Every refusal names the file and the key.
#include "model/config.h"

#include <fmt/format.h>

#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::model {
namespace {

// No real model comes near this; the cap keeps every product of two sizes inside int64 and
// turns a corrupted 2^60 into a named refusal instead of an overflow.
constexpr int64_t kMaxSize = int64_t{1} << 31;

constexpr std::string_view kSupported = "llama, deepseek2";

std::string describe(const gguf::Value& v) {
  if (v.is_array()) {
    return fmt::format("an array of {} × {}", gguf::value_type_name(v.array_type()),
                       v.array_size());
  }
  return fmt::format("{} {}", gguf::value_type_name(v.type()), v.to_display_string());
}

// Typed access to the `<arch>.` keys of one file, with errors that name file and key.
class Keys {
 public:
  Keys(const gguf::File& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  const std::string& path() const { return file_.paths().front(); }
  std::string key(std::string_view suffix) const { return fmt::format("{}.{}", arch_, suffix); }
  const gguf::Value* find(std::string_view suffix) const { return file_.find(key(suffix)); }
  bool has(std::string_view suffix) const { return find(suffix) != nullptr; }

  [[noreturn]] void invalid(std::string_view suffix, const std::string& problem) const {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: metadata key '{}' {}", path(), key(suffix), problem));
  }
  [[noreturn]] void unsupported(std::string_view suffix, const std::string& problem) const {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{}: metadata key '{}' {}", path(), key(suffix), problem));
  }
  [[noreturn]] void missing(std::string_view suffix, std::string_view why) const {
    invalid(suffix, fmt::format("is missing ({})", why));
  }

  // An integer, or nullopt when absent. Refuses other types, arrays included.
  std::optional<int64_t> opt_int(std::string_view suffix) const {
    const gguf::Value* v = find(suffix);
    if (v == nullptr) return std::nullopt;
    if (auto i = v->as_int()) return *i;
    invalid(suffix, fmt::format("holds {}, expected an integer", describe(*v)));
  }

  // A size: an integer in [min, kMaxSize].
  int64_t checked_size(std::string_view suffix, int64_t value, int64_t min) const {
    if (value < min || value > kMaxSize) {
      invalid(suffix, fmt::format("is {}, expected {} to {}", value,
                                  min == 0 ? "a size from 0" : "a size from 1", kMaxSize));
    }
    return value;
  }
  int64_t size(std::string_view suffix, std::string_view why) const {
    auto v = opt_int(suffix);
    if (!v) missing(suffix, why);
    return checked_size(suffix, *v, 1);
  }
  int64_t size_or(std::string_view suffix, int64_t fallback, int64_t min = 0) const {
    auto v = opt_int(suffix);
    return v ? checked_size(suffix, *v, min) : fallback;
  }

  // llama.cpp accepts a per-layer array for some keys (get_key_or_arr). ktx runs one shape for
  // all layers, so an array is accepted when it has n_layer equal entries.
  std::optional<int64_t> opt_per_layer(std::string_view suffix, int64_t n_layer,
                                       int64_t min) const {
    const gguf::Value* v = find(suffix);
    if (v == nullptr) return std::nullopt;
    if (!v->is_array()) return checked_size(suffix, *opt_int(suffix), min);
    if (static_cast<int64_t>(v->array_size()) != n_layer) {
      invalid(suffix, fmt::format("is a per-layer array of {} entries, expected {} "
                                  "(block_count)",
                                  v->array_size(), n_layer));
    }
    std::optional<int64_t> first;
    for (uint64_t i = 0; i < v->array_size(); ++i) {
      auto item = v->int_at(i);
      if (!item) invalid(suffix, fmt::format("holds {}, expected integers", describe(*v)));
      if (!first) {
        first = item;
      } else if (*item != *first) {
        unsupported(suffix, fmt::format("differs between layers (layer 0: {}, layer {}: {}); "
                                        "ktx needs one value for all layers",
                                        *first, i, *item));
      }
    }
    return checked_size(suffix, *first, min);
  }

  int64_t per_layer_size(std::string_view suffix, int64_t n_layer, std::string_view why) const {
    auto v = opt_per_layer(suffix, n_layer, 1);
    if (!v) missing(suffix, why);
    return *v;
  }

  std::optional<double> opt_float(std::string_view suffix) const {
    const gguf::Value* v = find(suffix);
    if (v == nullptr) return std::nullopt;
    if (auto f = v->as_float()) {
      if (!std::isfinite(*f)) invalid(suffix, fmt::format("is {}, expected a finite number", *f));
      return *f;
    }
    invalid(suffix, fmt::format("holds {}, expected a FLOAT32 or FLOAT64", describe(*v)));
  }

  bool flag_or(std::string_view suffix, bool fallback) const {
    const gguf::Value* v = find(suffix);
    if (v == nullptr) return fallback;
    if (auto b = v->as_bool()) return *b;
    invalid(suffix, fmt::format("holds {}, expected a BOOL", describe(*v)));
  }

  const std::string* opt_string(std::string_view suffix) const {
    const gguf::Value* v = find(suffix);
    if (v == nullptr) return nullptr;
    if (const std::string* s = v->as_string()) return s;
    invalid(suffix, fmt::format("holds {}, expected a STRING", describe(*v)));
  }

 private:
  const gguf::File& file_;
  std::string arch_;
};

// n_vocab from token_embd's rows, as llama.cpp sizes the embedding; vocab_size and the
// tokenizer list serve when the tensor is absent (build_module_tree then names it).
int64_t read_vocab(const gguf::File& file, const Keys& keys) {
  const auto vocab_key = keys.opt_int("vocab_size");
  if (const gguf::TensorInfo* embd = file.find_tensor("token_embd.weight");
      embd != nullptr && embd->shape.size() == 2) {
    const int64_t rows = embd->shape[1];
    if (vocab_key && *vocab_key != rows) {
      keys.invalid("vocab_size",
                   fmt::format("is {}, but token_embd.weight has {} rows", *vocab_key, rows));
    }
    if (rows < 1 || rows > kMaxSize) {
      throw Error(ErrorCode::kInvalidFile,
                  fmt::format("{}: tensor 'token_embd.weight' has {} rows, expected 1 to {}",
                              keys.path(), rows, kMaxSize));
    }
    return rows;
  }
  if (vocab_key) return keys.checked_size("vocab_size", *vocab_key, 1);
  if (const gguf::Value* tokens = file.find("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->strings() != nullptr && !tokens->strings()->empty()) {
    return static_cast<int64_t>(tokens->strings()->size());
  }
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}: cannot tell the vocabulary size: no 2-D tensor "
                          "'token_embd.weight', no key '{}', no 'tokenizer.ggml.tokens'",
                          keys.path(), keys.key("vocab_size")));
}

void read_rope_scaling(const Keys& keys, ModelConfig& c) {
  RopeConfig& r = c.rope;
  r.original_context = keys.size_or("rope.scaling.original_context_length", c.n_ctx_train, 1);
  const std::string* type = keys.opt_string("rope.scaling.type");
  const auto factor = keys.opt_float("rope.scaling.factor");
  if (type == nullptr) {
    // Files older than rope.scaling.type carry linear scaling as rope.scale_linear.
    if (auto linear = keys.opt_float("rope.scale_linear"); linear && *linear != 1.0) {
      if (*linear <= 0)
        keys.invalid("rope.scale_linear", fmt::format("is {}, expected > 0", *linear));
      r.scaling = RopeScaling::kLinear;
      r.factor = static_cast<float>(*linear);
    }
    return;
  }
  if (*type == "none") {
    r.scaling = RopeScaling::kNone;
    return;
  }
  if (*type == "linear") {
    r.scaling = RopeScaling::kLinear;
  } else if (*type == "yarn") {
    r.scaling = RopeScaling::kYarn;
  } else {
    keys.unsupported(
        "rope.scaling.type",
        fmt::format("is \"{}\"; ktx implements \"none\", \"linear\" and \"yarn\"", *type));
  }
  const auto value = factor ? factor : keys.opt_float("rope.scale_linear");
  if (!value) keys.missing("rope.scaling.factor", fmt::format("needed by \"{}\" scaling", *type));
  if (*value <= 0) {
    keys.invalid(factor ? "rope.scaling.factor" : "rope.scale_linear",
                 fmt::format("is {}, expected > 0", *value));
  }
  r.factor = static_cast<float>(*value);
  if (r.scaling != RopeScaling::kYarn) return;

  if (auto m = keys.opt_float("rope.scaling.yarn_log_multiplier")) {
    if (*m < 0) {
      keys.invalid("rope.scaling.yarn_log_multiplier", fmt::format("is {}, expected >= 0", *m));
    }
    r.yarn_log_multiplier = static_cast<float>(*m);
  }
  if (auto b = keys.opt_float("rope.scaling.yarn_beta_fast"))
    r.yarn_beta_fast = static_cast<float>(*b);
  if (auto b = keys.opt_float("rope.scaling.yarn_beta_slow"))
    r.yarn_beta_slow = static_cast<float>(*b);
  if (!(r.yarn_beta_fast > r.yarn_beta_slow && r.yarn_beta_slow > 0)) {
    keys.invalid("rope.scaling.yarn_beta_fast",
                 fmt::format("is {} with yarn_beta_slow {}, expected beta_fast > beta_slow > 0",
                             r.yarn_beta_fast, r.yarn_beta_slow));
  }
}

// The routed-expert keys shared by both architectures' MoE layers.
void read_experts(const Keys& keys, ModelConfig& c) {
  c.n_expert_used = keys.size("expert_used_count", "needed when expert_count is set");
  if (c.n_expert_used > c.n_expert) {
    keys.invalid("expert_used_count", fmt::format("is {}, more than {} ({})", c.n_expert_used,
                                                  keys.key("expert_count"), c.n_expert));
  }
  c.n_group = keys.size_or("expert_group_count", 0);
  c.n_group_used = keys.size_or("expert_group_used_count", 0);
  if (c.n_group > 1) {
    if (c.n_expert % c.n_group != 0) {
      keys.invalid("expert_group_count",
                   fmt::format("is {}, which does not divide {} ({})", c.n_group,
                               keys.key("expert_count"), c.n_expert));
    }
    if (c.n_group_used < 1) {
      keys.invalid("expert_group_used_count",
                   fmt::format("is {}, expected 1 to {} ({})", c.n_group_used,
                               keys.key("expert_group_count"), c.n_group));
    }
  }
  if (c.n_group_used > c.n_group) {
    keys.invalid("expert_group_used_count", fmt::format("is {}, more than {} ({})", c.n_group_used,
                                                        keys.key("expert_group_count"), c.n_group));
  }
  if (c.n_group > 1 && c.n_expert_used > c.n_group_used * (c.n_expert / c.n_group)) {
    keys.invalid("expert_used_count",
                 fmt::format("is {}, more than the {} experts group-limited routing can reach "
                             "({} of {} groups, {} experts each)",
                             c.n_expert_used, c.n_group_used * (c.n_expert / c.n_group),
                             c.n_group_used, c.n_group, c.n_expert / c.n_group));
  }
}

void read_llama(const Keys& keys, ModelConfig& c) {
  c.n_head = keys.per_layer_size("attention.head_count", c.n_layer, "required for llama");
  c.n_head_kv = keys.opt_per_layer("attention.head_count_kv", c.n_layer, 1).value_or(c.n_head);
  if (c.n_head % c.n_head_kv != 0) {
    keys.invalid("attention.head_count_kv",
                 fmt::format("is {}, which does not divide {} ({})", c.n_head_kv,
                             keys.key("attention.head_count"), c.n_head));
  }
  if (keys.has("attention.key_length")) {
    c.head_dim = keys.size("attention.key_length", "");
  } else {
    if (c.n_embd % c.n_head != 0) {
      keys.missing("attention.key_length",
                   fmt::format("embedding_length {} is not a multiple of head_count {}", c.n_embd,
                               c.n_head));
    }
    c.head_dim = c.n_embd / c.n_head;
  }
  if (auto v = keys.opt_int("attention.value_length"); v && *v != c.head_dim) {
    keys.unsupported(
        "attention.value_length",
        fmt::format("is {}, key_length is {}; ktx's GQA needs them equal", *v, c.head_dim));
  }
  c.rope.n_dims = keys.size_or("rope.dimension_count", c.head_dim, 1);
  if (c.rope.n_dims > c.head_dim || c.rope.n_dims % 2 != 0) {
    keys.invalid("rope.dimension_count",
                 fmt::format("is {}, expected an even number up to the head size {}", c.rope.n_dims,
                             c.head_dim));
  }
  c.n_ff = keys.per_layer_size("feed_forward_length", c.n_layer, "required for llama");
  // Mixtral-style MoE is `llama` with experts: softmax over all experts, top-k, renormalised
  // (llama.cpp's build_moe_ffn for LLM_ARCH_LLAMA); every layer is MoE, experts as wide as n_ff.
  c.n_expert = keys.size_or("expert_count", 0);
  if (c.n_expert > 0) {
    read_experts(keys, c);
    c.n_ff_exp = c.n_ff;
    c.expert_weights_norm = true;
  }
}

void read_deepseek2(const gguf::File& file, const Keys& keys, ModelConfig& c) {
  c.n_head = keys.per_layer_size("attention.head_count", c.n_layer, "required for deepseek2");
  // head_count_kv is n_head in older files and 1 in the newer absorbed flavour; only its type
  // is checked, the naive view below is what ktx reports.
  (void)keys.opt_per_layer("attention.head_count_kv", c.n_layer, 1);
  c.n_head_kv = c.n_head;

  c.q_lora_rank = keys.size_or("attention.q_lora_rank", 0);  // absent or 0: V2-Lite's attn_q
  c.kv_lora_rank = keys.size("attention.kv_lora_rank", "required for deepseek2");
  c.qk_rope_head_dim =
      keys.size("rope.dimension_count", "required for deepseek2: the rotary part of each head");
  c.rope.n_dims = c.qk_rope_head_dim;
  if (c.qk_rope_head_dim % 2 != 0) {
    keys.invalid("rope.dimension_count",
                 fmt::format("is {}, expected an even number", c.qk_rope_head_dim));
  }

  // Two flavours. Older files: key_length = qk_nope + qk_rope (192), value_length = v_head_dim.
  // llama.cpp's newer MLA files store the absorbed MQA view there (key_length = kv_lora_rank +
  // qk_rope = 576, value_length = kv_lora_rank = 512) and the per-head sizes under *_mla.
  const bool has_k_mla = keys.has("attention.key_length_mla");
  const bool has_v_mla = keys.has("attention.value_length_mla");
  int64_t qk_head = 0;
  if (has_k_mla || has_v_mla) {
    if (!has_k_mla) keys.missing("attention.key_length_mla", "value_length_mla is set");
    if (!has_v_mla) keys.missing("attention.value_length_mla", "key_length_mla is set");
    qk_head = keys.size("attention.key_length_mla", "");
    c.v_head_dim = keys.size("attention.value_length_mla", "");
    if (auto k = keys.opt_int("attention.key_length");
        k && *k != c.kv_lora_rank + c.qk_rope_head_dim) {
      keys.invalid("attention.key_length",
                   fmt::format("is {}, expected kv_lora_rank + rope.dimension_count = {} in a "
                               "file with key_length_mla",
                               *k, c.kv_lora_rank + c.qk_rope_head_dim));
    }
    if (auto v = keys.opt_int("attention.value_length"); v && *v != c.kv_lora_rank) {
      keys.invalid("attention.value_length",
                   fmt::format("is {}, expected kv_lora_rank = {} in a file with "
                               "value_length_mla",
                               *v, c.kv_lora_rank));
    }
  } else {
    qk_head = keys.size("attention.key_length",
                        "required for deepseek2 without key_length_mla: qk_nope + qk_rope");
    c.v_head_dim =
        keys.size("attention.value_length", "required for deepseek2 without value_length_mla");
  }
  const std::string_view k_key = has_k_mla ? "attention.key_length_mla" : "attention.key_length";
  if (qk_head <= c.qk_rope_head_dim) {
    keys.invalid(k_key, fmt::format("is {}, not more than rope.dimension_count {}: no room for "
                                    "the non-rotary part of the head",
                                    qk_head, c.qk_rope_head_dim));
  }
  c.qk_nope_head_dim = qk_head - c.qk_rope_head_dim;
  c.head_dim = qk_head;

  // The weights' layout, from layer 0 (build_module_tree checks every layer).
  c.mla_split_kv_b = file.find_tensor("blk.0.attn_k_b.weight") != nullptr;

  c.n_layer_dense_lead = keys.size_or("leading_dense_block_count", 0);
  if (c.n_layer_dense_lead > c.n_layer) {
    keys.invalid("leading_dense_block_count",
                 fmt::format("is {}, more than block_count {}", c.n_layer_dense_lead, c.n_layer));
  }
  c.n_expert = keys.size_or("expert_count", 0);
  const bool any_dense = c.n_expert == 0 || c.n_layer_dense_lead > 0;
  c.n_ff = any_dense
               ? keys.per_layer_size("feed_forward_length", c.n_layer, "the dense layers need it")
               : keys.opt_per_layer("feed_forward_length", c.n_layer, 0).value_or(0);
  if (c.n_expert == 0) return;

  read_experts(keys, c);
  c.n_expert_shared = keys.size_or("expert_shared_count", 0);
  c.n_ff_exp = keys.size("expert_feed_forward_length", "needed when expert_count is set");
  if (auto s = keys.opt_float("expert_weights_scale")) {
    if (*s <= 0) keys.invalid("expert_weights_scale", fmt::format("is {}, expected > 0", *s));
    c.expert_weights_scale = static_cast<float>(*s);
  }
  c.expert_weights_norm = keys.flag_or("expert_weights_norm", false);
  // Missing (DeepSeek-V2 / V2.5 files predate the key) or 0 ("none") mean softmax, as in
  // llama.cpp.
  const int64_t gating = keys.opt_int("expert_gating_func").value_or(0);
  if (gating == 0 || gating == 1) {
    c.gating = GatingFunc::kSoftmax;
  } else if (gating == 2) {
    c.gating = GatingFunc::kSigmoid;
  } else {
    keys.unsupported("expert_gating_func",
                     fmt::format("is {}; ktx implements 1 (softmax) and 2 (sigmoid)", gating));
  }
}

}  // namespace

float ModelConfig::attention_scale() const {
  if (arch == Architecture::kLlama) return 1.0f / std::sqrt(static_cast<float>(head_dim));
  double mscale = 1.0;
  if (rope.scaling == RopeScaling::kYarn && rope.factor > 1.0f) {
    mscale = 1.0 + static_cast<double>(rope.yarn_log_multiplier) * std::log(rope.factor);
  }
  return static_cast<float>(mscale * mscale /
                            std::sqrt(static_cast<double>(qk_nope_head_dim + qk_rope_head_dim)));
}

int64_t ModelConfig::kv_values_per_token() const {
  if (arch == Architecture::kDeepseek2) return kv_lora_rank + qk_rope_head_dim;
  return 2 * n_head_kv * head_dim;
}

ModelConfig ModelConfig::from_gguf(const gguf::File& file) {
  const std::string& path = file.paths().front();
  ModelConfig c;
  if (const gguf::Value* type = file.find("general.type");
      type && type->as_string() && *type->as_string() == "ktx.session") {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: a ktx session file (a session's saved state), not a model: load "
                            "the model it was saved from, then the file into a session of it "
                            "(ktx_session_load, Session.load, ktx generate --prompt-cache)",
                            path));
  }
  c.arch_name = file.get_string("general.architecture");
  if (c.arch_name == "llama") {
    c.arch = Architecture::kLlama;
  } else if (c.arch_name == "deepseek2") {
    c.arch = Architecture::kDeepseek2;
  } else if (c.arch_name.empty()) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: general.architecture is empty: the file does not say which "
                            "model it holds (ktx runs {})",
                            path, kSupported));
  } else {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{}: architecture \"{}\" (general.architecture) is not supported; "
                            "ktx runs {}",
                            path, c.arch_name, kSupported));
  }
  const Keys keys(file, c.arch_name);

  c.n_layer = keys.size("block_count", "the number of layers");
  c.n_embd = keys.size("embedding_length", "the hidden size");
  c.n_ctx_train = keys.size("context_length", "the training context");
  const auto eps = keys.opt_float("attention.layer_norm_rms_epsilon");
  if (!eps) keys.missing("attention.layer_norm_rms_epsilon", "the RMSNorm epsilon");
  if (*eps <= 0 || *eps >= 1) {
    keys.invalid("attention.layer_norm_rms_epsilon",
                 fmt::format("is {}, expected a small positive number", *eps));
  }
  c.rms_eps = static_cast<float>(*eps);
  if (auto base = keys.opt_float("rope.freq_base")) {
    if (*base <= 1) keys.invalid("rope.freq_base", fmt::format("is {}, expected > 1", *base));
    c.rope.freq_base = static_cast<float>(*base);
  }
  c.rope.interleaved = true;  // both architectures use ggml's "NORM" rope: pairs (2i, 2i+1)

  if (c.arch == Architecture::kLlama) {
    read_llama(keys, c);
  } else {
    read_deepseek2(file, keys, c);
  }
  read_rope_scaling(keys, c);
  c.n_vocab = read_vocab(file, keys);
  c.tied_embeddings = file.find_tensor("output.weight") == nullptr;
  return c;
}

}  // namespace ktx::model
