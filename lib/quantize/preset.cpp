// The quantization presets and the per-tensor type choice. Every rule mirrors a branch of
// llama.cpp's src/llama-quant.cpp (tensor_allows_quantization, llama_tensor_get_type_impl,
// tensor_type_fallback; checked against ggml-org/llama.cpp at 007dbbf3), named in a comment so
// the two can be compared line by line. docs/QUANTIZE.md has the table and the differences.
#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quantize.h"

namespace ktx::quantize {
namespace {

using TT = TensorType;

// Listed in llama-quantize's order (legacy types, then K-quants, then Q8_0).
constexpr std::array kPresets = {
    PresetInfo{Preset::Q4_0, "Q4_0", TT::Q4_0, "4.50 bpw: 4-bit, one f16 scale per 32"},
    PresetInfo{Preset::Q4_1, "Q4_1", TT::Q4_1, "5.00 bpw: 4-bit, scale and minimum per 32"},
    PresetInfo{Preset::Q5_0, "Q5_0", TT::Q5_0, "5.50 bpw: 5-bit, one f16 scale per 32"},
    PresetInfo{Preset::Q5_1, "Q5_1", TT::Q5_1, "6.00 bpw: 5-bit, scale and minimum per 32"},
    PresetInfo{Preset::Q4_K_S, "Q4_K_S", TT::Q4_K, "Q4_K, first attn_v / ffn_down at Q5_K"},
    PresetInfo{Preset::Q4_K_M, "Q4_K_M", TT::Q4_K,
               "Q4_K, half of attn_v / ffn_down at Q6_K (the usual choice)"},
    PresetInfo{Preset::Q5_K_S, "Q5_K_S", TT::Q5_K, "Q5_K throughout"},
    PresetInfo{Preset::Q5_K_M, "Q5_K_M", TT::Q5_K, "Q5_K, half of attn_v / ffn_down at Q6_K"},
    PresetInfo{Preset::Q6_K, "Q6_K", TT::Q6_K, "6.56 bpw: Q6_K throughout"},
    PresetInfo{Preset::Q8_0, "Q8_0", TT::Q8_0, "8.50 bpw: 8-bit, nearly lossless"},
};

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::toupper(static_cast<unsigned char>(x)) ==
                  std::toupper(static_cast<unsigned char>(y));
         });
}

bool contains(std::string_view s, std::string_view part) {
  return s.find(part) != std::string_view::npos;
}

// --- which tensors llama.cpp quantizes at all (tensor_allows_quantization) --------------------

// Substrings that keep a tensor as stored. llama.cpp lists them because these tensors are tiny
// (quantizing saves nothing) or feed a decision rather than a product (the router, whose argmax
// picks experts, and norms, which scale every activation).
struct KeepRule {
  std::string_view part;
  std::string_view why;
};
constexpr KeepRule kKeepIfContains[] = {
    {"_norm.weight", "norm weight"},
    {"ffn_gate_inp.weight", "expert router"},
    {"ffn_gate_tid2eid.weight", "token-to-expert table"},
    {"altup", "small AltUp tensor"},
    {"laurel", "small LAuReL tensor"},
    {"per_layer_model_proj", "small per-layer projection"},
    {"ssm_conv1d", "small conv1d weight"},
    {"shortconv.conv.weight", "small conv weight"},
    {"indexer.k_proj.weight", "small indexer projection"},
    {"indexer.q_proj.weight", "small indexer projection"},
    {"time_mix_first.weight", "small RWKV weight"},
    {"time_mix_w0.weight", "small RWKV weight"},
    {"time_mix_w1.weight", "small RWKV weight"},
    {"time_mix_w2.weight", "small RWKV weight"},
    {"time_mix_v0.weight", "small RWKV weight"},
    {"time_mix_v1.weight", "small RWKV weight"},
    {"time_mix_v2.weight", "small RWKV weight"},
    {"time_mix_a0.weight", "small RWKV weight"},
    {"time_mix_a1.weight", "small RWKV weight"},
    {"time_mix_a2.weight", "small RWKV weight"},
    {"time_mix_g1.weight", "small RWKV weight"},
    {"time_mix_g2.weight", "small RWKV weight"},
    {"time_mix_decay_w1.weight", "small RWKV weight"},
    {"time_mix_decay_w2.weight", "small RWKV weight"},
    {"time_mix_lerp_fused.weight", "small RWKV weight"},
    {"attn_rel_b.weight", "relative position bias"},
    {".position_embd", "multimodal position embedding"},
    {"sam.pos_embd", "multimodal tensor"},
    {"sam.neck.", "multimodal tensor"},
    {"sam.net_", "multimodal tensor"},
    {".rel_pos", "multimodal tensor"},
    {".patch_embd", "multimodal tensor"},
    {".patch_merger", "multimodal tensor"},
    {"a.rvq.codebook", "audio codebook"},
    {"mm.a.code_embd", "audio codebook"},
};

// ggml_n_dims: trailing dimensions of size 1 do not count, so [2048, 1] is 1-D.
int effective_dims(const std::vector<int64_t>& shape) {
  for (size_t i = shape.size(); i-- > 1;) {
    if (shape[i] > 1) return static_cast<int>(i) + 1;
  }
  return 1;
}

// Why llama.cpp leaves this tensor as stored, or nullopt when it quantizes it.
std::optional<std::string> keep_reason(const TensorDesc& t) {
  const int dims = effective_dims(t.shape);
  if (dims < 2) return fmt::format("{}-D: kept as {}", dims, type_name(t.type));
  const std::string_view name = t.name;
  if (!name.ends_with("weight")) return fmt::format("not a weight: kept as {}", type_name(t.type));
  for (const KeepRule& rule : kKeepIfContains) {
    if (contains(name, rule.part))
      return fmt::format("{}: kept as {}", rule.why, type_name(t.type));
  }
  // BERT's absolute position and token-type embeddings (LLM_TN names, the same in every arch).
  if (name == "position_embd.weight" || name == "token_types.weight") {
    return fmt::format("position/type embedding: kept as {}", type_name(t.type));
  }
  return std::nullopt;
}

// --- tensor roles (tensor_get_category) ---------------------------------------------------------

enum class Role {
  kOutput,
  kTokenEmbd,
  kAttnQkv,
  kAttnKvB,
  kAttnV,
  kAttnK,
  kAttnQ,
  kAttnOutput,
  kFfnUp,
  kFfnGate,
  kFfnDown,
  kOther,
};

// Substring tests in llama.cpp's order; the first that matches decides. "ffn_gate" also matches
// ffn_gate_exps / ffn_gate_shexp (and ffn_gate_inp, which is never quantized anyway).
Role role_of(std::string_view name) {
  if (name == "output.weight") return Role::kOutput;
  if (name == "token_embd.weight" || name == "per_layer_token_embd.weight") return Role::kTokenEmbd;
  static constexpr std::pair<std::string_view, Role> kByPart[] = {
      {"attn_qkv.weight", Role::kAttnQkv},
      {"attn_kv_b.weight", Role::kAttnKvB},
      {"attn_v.weight", Role::kAttnV},
      {"attn_k.weight", Role::kAttnK},
      {"attn_q.weight", Role::kAttnQ},
      {"attn_output.weight", Role::kAttnOutput},
      {"ffn_up", Role::kFfnUp},
      {"ffn_gate", Role::kFfnGate},
      {"ffn_down", Role::kFfnDown},
  };
  for (const auto& [part, role] : kByPart) {
    if (contains(name, part)) return role;
  }
  return Role::kOther;
}

// category_is_attn_v: the tensors that produce attention values get extra bits. For DeepSeek's
// MLA that is attn_kv_b (it expands the latent into keys *and* values); fused attn_qkv counts
// too. Newer MLA files split attn_kv_b into attn_k_b / attn_v_b, which match no role at all.
bool is_value_like(Role role) {
  return role == Role::kAttnV || role == Role::kAttnQkv || role == Role::kAttnKvB;
}

// The N of a "blk.N." prefix (what llama.cpp's sscanf reads), or nullopt.
std::optional<int64_t> block_index(std::string_view name) {
  if (!name.starts_with("blk.")) return std::nullopt;
  name.remove_prefix(4);
  int64_t value = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), value);
  if (ec != std::errc()) return std::nullopt;
  return value;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and every third layer in
// between, get the bigger type.
bool use_more_bits(int64_t i_layer, int64_t n_layer) {
  return i_layer < n_layer / 8 || i_layer >= 7 * n_layer / 8 || (i_layer - n_layer / 8) % 3 == 2;
}

// --- the mix rules (llama_tensor_get_type_impl) -------------------------------------------------

struct RuleState {
  const ModelInfo& model;
  Preset preset;
  TensorType base;
  bool tied_embeddings = false;  // no output.weight: token_embd doubles as the output projection
  bool falcon = false;
  bool llama_70b = false;  // LLM_TYPE_70B: llama arch, 80 layers, grouped KV heads
  int64_t n_value_like = 0;
  int64_t i_value_like = 0;  // counters advance in processing order, as in llama.cpp
  int64_t i_ffn_down = 0;
  int64_t i_ffn_gate = 0;
  int64_t i_ffn_up = 0;
};

// llama.cpp's layer_info: a MoE model's FFN tensors are not one per layer in order (Mixtral's
// per-expert tensors are interleaved), so the layer is read from the name; a dense model uses the
// running count of tensors of that role.
int64_t layer_of(const RuleState& s, const TensorDesc& t, int64_t counter) {
  if (std::max<int64_t>(1, s.model.n_expert) <= 1) return counter;
  const std::optional<int64_t> layer = block_index(t.name);
  if (!layer) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("tensor '{}': a MoE model's FFN tensor must be named 'blk.N...' so its "
                            "layer is known (llama.cpp refuses it too)",
                            t.name));
  }
  if (*layer < 0 || *layer >= s.model.n_layer) {
    throw Error(
        ErrorCode::kInvalidFile,
        fmt::format("tensor '{}': layer {} is outside the model's {} layers ({}.block_count)",
                    t.name, *layer, s.model.n_layer, s.model.architecture));
  }
  return *layer;
}

TensorType mix_type(RuleState& s, const TensorDesc& t, Role role, std::string& why) {
  const Preset p = s.preset;
  TensorType type = s.base;
  auto note = [&](std::string_view text, TensorType to) {
    why += fmt::format("{} -> {}", text, type_name(to));
    type = to;
  };

  // The output projection (and a tied embedding, the same matrix) makes the logits directly, so
  // llama.cpp gives it 6 bits, or Q8_0 when its rows do not fit the preset's blocks (or on Falcon).
  if (role == Role::kOutput || (s.tied_embeddings && role == Role::kTokenEmbd)) {
    const char* what = role == Role::kOutput ? "output" : "tied token_embd (is the output)";
    if (s.falcon) {
      note(fmt::format("{}, falcon", what), TT::Q8_0);
    } else if (t.shape[0] % traits(s.base).block_size != 0) {
      note(fmt::format("{}, row {} not a multiple of {}", what, t.shape[0],
                       traits(s.base).block_size),
           TT::Q8_0);
    } else if (s.base != TT::Q8_0) {
      note(what, TT::Q6_K);
    } else {
      note(what, type);
    }
    return type;
  }
  // token_embd: only the IQ and ternary presets (not offered by ktx) change it.
  if (role == Role::kTokenEmbd) {
    note("token_embd", type);
    return type;
  }

  if (is_value_like(role)) {
    const int64_t i = s.i_value_like++;
    const int64_t n = s.n_value_like;
    const std::string what = fmt::format("attn_v-like #{} of {}", i, n);
    note(what, type);
    if ((p == Preset::Q4_K_M || p == Preset::Q5_K_M) && use_more_bits(i, n)) {
      note("; more bits", TT::Q6_K);
    } else if (p == Preset::Q4_K_S && i < 4) {
      note("; one of the first 4", TT::Q5_K);
    }
    // Llama-2-70B's attn_v is 8x smaller than attn_q (8 heads share it): 5 bits cost little.
    if (s.llama_70b && (type == TT::Q3_K || type == TT::Q4_K)) note("; llama 70B", TT::Q5_K);
    // Eight-expert models (Mixtral): attention is a small share of the weights, so Q8_0.
    if (s.model.n_expert == 8) note("; 8 experts", TT::Q8_0);
    return type;
  }

  if (role == Role::kAttnK) {
    if (s.model.n_expert == 8) {
      note("attn_k, 8 experts", TT::Q8_0);
    } else {
      note("attn_k", type);
    }
    return type;
  }

  if (role == Role::kFfnDown) {
    const int64_t i = layer_of(s, t, s.i_ffn_down);
    const int64_t n = s.model.n_layer;
    ++s.i_ffn_down;
    note(fmt::format("ffn_down layer {} of {}", i, n), type);
    if (p == Preset::Q4_K_M) {
      if (s.falcon) {
        if (i < n / 16) {
          note("; falcon, first sixteenth", TT::Q6_K);
        } else if (use_more_bits(i, n)) {
          note("; falcon, more bits", TT::Q5_K);
        }
      } else if (use_more_bits(i, n)) {
        note("; more bits", TT::Q6_K);
      }
    } else if (p == Preset::Q5_K_M && use_more_bits(i, n)) {
      note("; more bits", TT::Q6_K);
    } else if (p == Preset::Q4_K_S && !s.falcon && i < n / 8) {
      note("; first eighth", TT::Q5_K);
    }
    return type;
  }

  if (role == Role::kAttnOutput) {
    if (!s.falcon && s.model.n_expert == 8 && (p == Preset::Q4_K_S || p == Preset::Q4_K_M)) {
      note("attn_output, 8 experts", TT::Q5_K);
    } else {
      note("attn_output", type);
    }
    return type;
  }

  // ffn_gate / ffn_up: only the IQ3_XS preset changes them, but llama.cpp still reads the layer,
  // so a badly named MoE tensor is refused here as there.
  if (role == Role::kFfnGate || role == Role::kFfnUp) {
    int64_t& counter = role == Role::kFfnGate ? s.i_ffn_gate : s.i_ffn_up;
    const int64_t i = layer_of(s, t, counter);
    ++counter;
    note(fmt::format("{} layer {}", role == Role::kFfnGate ? "ffn_gate" : "ffn_up", i), type);
    return type;
  }

  note(role == Role::kAttnQ ? "attn_q" : "base type", type);
  return type;
}


TensorType fit_row(const TensorDesc& t, TensorType type, bool& fallback, std::string& why) {
  const int64_t row = t.shape[0];
  const int64_t block = traits(type).block_size;
  if (row % block == 0) return type;
  const std::optional<TensorType> sub = row_fallback_type(type);
  if (!sub) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("tensor '{}': row length {} is not a multiple of {} (the block of {}), "
                            "and llama.cpp defines no substitute for {}",
                            t.name, row, block, type_name(type), type_name(type)));
  }
  fallback = true;
  // A row that even the 32-wide substitute does not fit is stored as F16, as llama.cpp does.
  const TensorType chosen = row % traits(*sub).block_size == 0 ? *sub : TT::F16;
  why += fmt::format("; row {} not a multiple of {} -> {}", row, block, type_name(chosen));
  return chosen;
}

}  // namespace

// llama.cpp's tensor_type_fallback.
std::optional<TensorType> row_fallback_type(TensorType type) {
  switch (type) {
    case TT::IQ1_S:
    case TT::IQ1_M:
    case TT::IQ2_XXS:
    case TT::IQ2_XS:
    case TT::IQ2_S:
    case TT::IQ3_XXS:
    case TT::IQ3_S:
    case TT::IQ4_XS:
      return TT::IQ4_NL;
    case TT::Q2_K:
    case TT::Q3_K:
    case TT::TQ1_0:
    case TT::TQ2_0:
      return TT::Q4_0;
    case TT::Q4_K:
      return TT::Q5_0;
    case TT::Q5_K:
      return TT::Q5_1;
    case TT::Q6_K:
      return TT::Q8_0;
    default:
      return std::nullopt;
  }
}

std::span<const PresetInfo> presets() { return kPresets; }

const PresetInfo& preset_info(Preset preset) {
  for (const PresetInfo& info : kPresets) {
    if (info.preset == preset) return info;
  }
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("quantization preset number {} is not one ktx offers",
                          static_cast<uint32_t>(preset)));
}

std::optional<Preset> preset_from_name(std::string_view name) {
  for (const PresetInfo& info : kPresets) {
    if (iequals(name, info.name)) return info.preset;
  }
  // llama-quantize's aliases for the K-quant mixes.
  if (iequals(name, "Q4_K")) return Preset::Q4_K_M;
  if (iequals(name, "Q5_K")) return Preset::Q5_K_M;
  // llama-quantize also takes the general.file_type number.
  uint32_t number = 0;
  const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), number);
  if (ec == std::errc() && end == name.data() + name.size() && !name.empty()) {
    for (const PresetInfo& info : kPresets) {
      if (static_cast<uint32_t>(info.preset) == number) return info.preset;
    }
  }
  return std::nullopt;
}

Preset parse_preset(std::string_view name) {
  if (std::optional<Preset> preset = preset_from_name(name)) return *preset;
  std::string valid;
  for (const PresetInfo& info : kPresets) {
    if (!valid.empty()) valid += ", ";
    valid += info.name;
  }
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("unknown quantization type '{}'; valid types: {} (aliases: Q4_K = "
                          "Q4_K_M, Q5_K = Q5_K_M)",
                          name, valid));
}

ModelInfo ModelInfo::from_file(const gguf::File& file) {
  ModelInfo info;
  info.architecture = file.get_string("general.architecture");
  const std::string& arch = info.architecture;
  info.n_layer = file.get_int(arch + ".block_count");
  auto optional_int = [&](const std::string& key) -> int64_t {
    const gguf::Value* value = file.find(key);
    if (value == nullptr) return 0;
    // Some architectures store per-layer head counts as arrays; llama.cpp's n_head() is layer 0's.
    std::optional<int64_t> v = value->is_array()
                                   ? (value->array_size() > 0 ? value->int_at(0) : std::nullopt)
                                   : value->as_int();
    if (!v) {
      throw Error(ErrorCode::kInvalidFile,
                  fmt::format("{}: key '{}' holds {}, expected an integer", file.paths().front(),
                              key, value->to_display_string()));
    }
    return *v;
  };
  info.n_expert = optional_int(arch + ".expert_count");
  info.n_head = optional_int(arch + ".attention.head_count");
  info.n_head_kv = optional_int(arch + ".attention.head_count_kv");
  if (info.n_head_kv == 0) info.n_head_kv = info.n_head;
  return info;
}

std::vector<TensorPlan> plan_types(const ModelInfo& model, const std::vector<TensorDesc>& tensors,
                                   Preset preset, const PlanOptions& options) {
  const PresetInfo& info = preset_info(preset);

  // llama.cpp walks tensors through a map ordered by (layer number, name), tensors outside blocks
  // (layer -1) first; its running counters follow that order, so ours must too.
  std::vector<size_t> order(tensors.size());
  std::vector<int64_t> layer(tensors.size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    if (tensors[i].shape.empty()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("tensor '{}' has no shape", tensors[i].name));
    }
    order[i] = i;
    layer[i] = block_index(tensors[i].name).value_or(-1);
  }
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    if (layer[a] != layer[b]) return layer[a] < layer[b];
    return tensors[a].name < tensors[b].name;
  });

  RuleState state{.model = model, .preset = preset, .base = info.base_type};
  state.tied_embeddings = std::none_of(tensors.begin(), tensors.end(), [](const TensorDesc& t) {
    return t.name == "output.weight";
  });
  state.falcon = model.architecture == "falcon";
  state.llama_70b = model.architecture == "llama" && model.n_expert != 8 && model.n_layer == 80 &&
                    model.n_head != model.n_head_kv;
  for (const TensorDesc& t : tensors) {
    if (is_value_like(role_of(t.name))) ++state.n_value_like;
  }

  std::vector<TensorPlan> plans;
  plans.reserve(tensors.size());
  for (size_t i : order) {
    const TensorDesc& t = tensors[i];
    TensorPlan plan;
    plan.index = i;
    plan.name = t.name;
    plan.shape = t.shape;
    plan.from = t.type;
    if (std::optional<std::string> reason = keep_reason(t)) {
      plan.to = t.type;
      plan.why = std::move(*reason);
    } else {
      plan.quantizable = true;
      TensorType type = info.base_type;
      if (options.pure) {
        plan.why = fmt::format("pure -> {}", type_name(type));
      } else {
        type = mix_type(state, t, role_of(t.name), plan.why);
      }
      plan.to = fit_row(t, type, plan.fallback, plan.why);
    }
    plans.push_back(std::move(plan));
  }
  return plans;
}

}  // namespace ktx::quantize
