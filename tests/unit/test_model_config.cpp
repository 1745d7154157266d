// ModelConfig::from_gguf and build_module_tree on tiny files of every flavour real GGUFs come in,
// and the refusals: each message must name the file, the key or tensor, and what was expected.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <functional>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "model_test_files.h"

namespace ktx::model {
namespace {

using test::TinyModelSpec;
using Shape = std::vector<int64_t>;

struct Loaded {
  std::string path;
  gguf::File file;
  ModelConfig config;
  std::vector<ModuleDesc> modules;
};

Loaded load(const test::TempDir& dir, const TinyModelSpec& spec,
            const std::string& name = "m.gguf") {
  const std::string path = dir.file(name);
  test::write_tiny_model(spec, path);
  gguf::File file = gguf::File::open(path);
  ModelConfig config = ModelConfig::from_gguf(file);
  std::vector<ModuleDesc> modules = build_module_tree(config, file);
  return Loaded{path, std::move(file), std::move(config), std::move(modules)};
}

// Writes `spec`, loads it, and requires a ktx::Error of `code` whose message holds every part
// (and the file's path).
void require_refusal(const TinyModelSpec& spec, ErrorCode code,
                     std::initializer_list<std::string> parts) {
  test::TempDir dir;
  const std::string path = dir.file("bad.gguf");
  test::write_tiny_model(spec, path);
  try {
    gguf::File file = gguf::File::open(path);
    const ModelConfig config = ModelConfig::from_gguf(file);
    (void)build_module_tree(config, file);
  } catch (const Error& e) {
    const std::string what = e.what();
    INFO(what);
    CHECK(e.code() == code);
    CHECK_THAT(what, Catch::Contains(path));
    for (const std::string& part : parts) CHECK_THAT(what, Catch::Contains(part));
    return;
  }
  FAIL("expected a ktx::Error");
}

struct Expected {
  std::string name;
  ModuleKind kind;
  int64_t layer;
  std::vector<std::string> roles;  // sorted, as the map keeps them
};

std::vector<std::string> roles_of(const ModuleDesc& m) {
  std::vector<std::string> out;
  for (const auto& entry : m.weights) out.push_back(entry.first);
  return out;
}

void check_modules(const std::vector<ModuleDesc>& modules, const std::vector<Expected>& expected) {
  REQUIRE(modules.size() == expected.size());
  for (size_t i = 0; i < modules.size(); ++i) {
    INFO("module " << i << ": " << modules[i].name);
    CHECK(modules[i].name == expected[i].name);
    CHECK(modules[i].kind == expected[i].kind);
    CHECK(modules[i].layer == expected[i].layer);
    CHECK(roles_of(modules[i]) == expected[i].roles);
  }
}

// The expected deepseek2 module list: dense layers below `dense_lead`, MoE after.
std::vector<Expected> deepseek2_modules(int64_t n_layer, int64_t dense_lead,
                                        std::vector<std::string> attn_roles, bool gate_bias,
                                        bool shared) {
  std::vector<Expected> out{{"model.embed_tokens", ModuleKind::kEmbedding, -1, {"weight"}}};
  for (int64_t il = 0; il < n_layer; ++il) {
    const std::string p = "model.layers." + std::to_string(il);
    out.push_back({p + ".input_layernorm", ModuleKind::kRmsNorm, il, {"weight"}});
    out.push_back({p + ".self_attn", ModuleKind::kMlaAttention, il, attn_roles});
    out.push_back({p + ".post_attention_layernorm", ModuleKind::kRmsNorm, il, {"weight"}});
    if (il < dense_lead) {
      out.push_back({p + ".mlp", ModuleKind::kMlp, il, {"down", "gate", "up"}});
      continue;
    }
    out.push_back({p + ".mlp.gate", ModuleKind::kMoeGate, il,
                   gate_bias ? std::vector<std::string>{"bias", "weight"}
                             : std::vector<std::string>{"weight"}});
    out.push_back(
        {p + ".mlp.experts", ModuleKind::kExperts, il, {"down_exps", "gate_exps", "up_exps"}});
    if (shared) {
      out.push_back({p + ".mlp.shared_experts", ModuleKind::kMlp, il, {"down", "gate", "up"}});
    }
  }
  out.push_back({"model.norm", ModuleKind::kRmsNorm, -1, {"weight"}});
  out.push_back({"lm_head", ModuleKind::kLmHead, -1, {"weight"}});
  return out;
}

const ModuleDesc& module(const Loaded& m, const std::string& name) {
  for (const ModuleDesc& d : m.modules) {
    if (d.name == name) return d;
  }
  throw std::logic_error("no module " + name);
}

Shape shape_of(const ModuleDesc& m, const std::string& role) { return m.weight(role).shape; }

}  // namespace

TEST_CASE("deepseek2 V2-Lite shape: no q compression, attn_kv_b, softmax", "[model][config]") {
  test::TempDir dir;
  const Loaded m = load(dir, TinyModelSpec::lite());
  const ModelConfig& c = m.config;

  CHECK(c.arch == Architecture::kDeepseek2);
  CHECK(c.arch_name == "deepseek2");
  CHECK(c.n_layer == 3);
  CHECK(c.n_embd == 64);
  CHECK(c.n_vocab == 96);
  CHECK(c.n_ctx_train == 512);
  CHECK(c.rms_eps == 1e-6f);
  CHECK(c.rope.n_dims == 8);
  CHECK(c.rope.freq_base == 10000.0f);
  CHECK(c.rope.interleaved);
  CHECK(c.rope.scaling == RopeScaling::kNone);
  CHECK(c.rope.factor == 1.0f);
  CHECK(c.rope.yarn_log_multiplier == 0.0f);
  CHECK(c.n_head == 4);
  CHECK(c.n_head_kv == 4);
  CHECK(c.head_dim == 24);
  CHECK(c.q_lora_rank == 0);
  CHECK(c.kv_lora_rank == 32);
  CHECK(c.qk_nope_head_dim == 16);
  CHECK(c.qk_rope_head_dim == 8);
  CHECK(c.v_head_dim == 16);
  CHECK_FALSE(c.mla_split_kv_b);
  CHECK(c.n_ff == 96);
  CHECK(c.n_layer_dense_lead == 1);
  CHECK(c.n_expert == 8);
  CHECK(c.n_expert_used == 2);
  CHECK(c.n_expert_shared == 1);
  CHECK(c.n_ff_exp == 32);
  CHECK(c.gating == GatingFunc::kSoftmax);  // key absent, as in V2 files
  CHECK_FALSE(c.expert_weights_norm);
  CHECK(c.expert_weights_scale == 1.0f);
  CHECK(c.n_group == 0);
  CHECK(c.n_group_used == 0);
  CHECK_FALSE(c.tied_embeddings);
  CHECK_FALSE(c.is_moe_layer(0));
  CHECK(c.is_moe_layer(1));
  CHECK(c.is_moe_layer(2));
  CHECK(c.attention_scale() == Approx(1.0 / std::sqrt(24.0)));
  CHECK(c.kv_values_per_token() == 32 + 8);

  check_modules(m.modules, deepseek2_modules(3, 1, {"kv_a_mqa", "kv_a_norm", "kv_b", "output", "q"},
                                             false, true));

  const ModuleDesc& attn = module(m, "model.layers.0.self_attn");
  CHECK(attn.weight("q").name == "blk.0.attn_q.weight");
  CHECK(shape_of(attn, "q") == Shape{64, 4 * 24});
  CHECK(shape_of(attn, "kv_a_mqa") == Shape{64, 32 + 8});
  CHECK(shape_of(attn, "kv_a_norm") == Shape{32});
  CHECK(shape_of(attn, "kv_b") == Shape{32, 4 * (16 + 16)});
  CHECK(shape_of(attn, "output") == Shape{4 * 16, 64});
  CHECK(attn.find_weight("k_b") == nullptr);
  CHECK(module(m, "model.layers.0.mlp").weight("down").name == "blk.0.ffn_down.weight");
  const ModuleDesc& experts = module(m, "model.layers.2.mlp.experts");
  CHECK(experts.weight("gate_exps").name == "blk.2.ffn_gate_exps.weight");
  CHECK(shape_of(experts, "gate_exps") == Shape{64, 32, 8});
  CHECK(shape_of(experts, "up_exps") == Shape{64, 32, 8});
  CHECK(shape_of(experts, "down_exps") == Shape{32, 64, 8});
  const ModuleDesc& shared = module(m, "model.layers.2.mlp.shared_experts");
  CHECK(shared.weight("up").name == "blk.2.ffn_up_shexp.weight");
  CHECK(shape_of(shared, "down") == Shape{32, 64});
  CHECK(module(m, "model.layers.1.mlp.gate").weight("weight").name == "blk.1.ffn_gate_inp.weight");
  CHECK(module(m, "model.embed_tokens").weight("weight").name == "token_embd.weight");
  CHECK(module(m, "model.norm").weight("weight").name == "output_norm.weight");
  CHECK(module(m, "lm_head").weight("weight").name == "output.weight");
}

TEST_CASE("deepseek2 V2 shape: q compression, YaRN, two shared experts", "[model][config]") {
  test::TempDir dir;
  const Loaded m = load(dir, TinyModelSpec::v2());
  const ModelConfig& c = m.config;

  CHECK(c.q_lora_rank == 48);
  CHECK(c.n_expert_shared == 2);
  CHECK(c.expert_weights_scale == 16.0f);
  CHECK(c.rope.scaling == RopeScaling::kYarn);
  CHECK(c.rope.factor == 40.0f);
  CHECK(c.rope.original_context == 64);
  CHECK(c.rope.yarn_log_multiplier == 0.0707f);
  CHECK(c.rope.yarn_beta_fast == 32.0f);
  CHECK(c.rope.yarn_beta_slow == 1.0f);
  const double mscale = 1.0 + 0.0707 * std::log(40.0);
  CHECK(c.attention_scale() == Approx(mscale * mscale / std::sqrt(24.0)).epsilon(1e-5));

  check_modules(
      m.modules,
      deepseek2_modules(3, 1, {"kv_a_mqa", "kv_a_norm", "kv_b", "output", "q_a", "q_a_norm", "q_b"},
                        false, true));
  const ModuleDesc& attn = module(m, "model.layers.1.self_attn");
  CHECK(shape_of(attn, "q_a") == Shape{64, 48});
  CHECK(shape_of(attn, "q_a_norm") == Shape{48});
  CHECK(shape_of(attn, "q_b") == Shape{48, 4 * 24});
  CHECK(attn.find_weight("q") == nullptr);
  CHECK(shape_of(module(m, "model.layers.1.mlp.shared_experts"), "gate") == Shape{64, 2 * 32});
}

TEST_CASE("deepseek2 V3 shape: sigmoid, exp_probs_b, groups, attn_k_b/attn_v_b",
          "[model][config]") {
  test::TempDir dir;
  const Loaded m = load(dir, TinyModelSpec::v3());
  const ModelConfig& c = m.config;

  CHECK(c.n_layer == 4);
  CHECK(c.n_layer_dense_lead == 2);
  CHECK(c.n_expert == 16);
  CHECK(c.n_expert_used == 4);
  CHECK(c.gating == GatingFunc::kSigmoid);
  CHECK(c.expert_weights_norm);
  CHECK(c.expert_weights_scale == 2.5f);
  CHECK(c.n_group == 4);
  CHECK(c.n_group_used == 2);
  // The newer flavour stores the absorbed view under key_length / value_length / head_count_kv;
  // the per-head sizes come from the *_mla keys.
  CHECK(c.mla_split_kv_b);
  CHECK(c.qk_nope_head_dim == 16);
  CHECK(c.qk_rope_head_dim == 8);
  CHECK(c.v_head_dim == 16);
  CHECK(c.head_dim == 24);
  CHECK(c.n_head_kv == 4);
  CHECK(c.kv_values_per_token() == 40);
  const double mscale = 1.0 + 0.1 * std::log(40.0);
  CHECK(c.attention_scale() == Approx(mscale * mscale / std::sqrt(24.0)).epsilon(1e-5));

  check_modules(m.modules, deepseek2_modules(4, 2,
                                             {"k_b", "kv_a_mqa", "kv_a_norm", "output", "q_a",
                                              "q_a_norm", "q_b", "v_b"},
                                             true, true));
  const ModuleDesc& attn = module(m, "model.layers.3.self_attn");
  CHECK(attn.weight("k_b").name == "blk.3.attn_k_b.weight");
  CHECK(shape_of(attn, "k_b") == Shape{16, 32, 4});
  CHECK(shape_of(attn, "v_b") == Shape{32, 16, 4});
  const ModuleDesc& gate = module(m, "model.layers.2.mlp.gate");
  CHECK(gate.weight("bias").name == "blk.2.exp_probs_b.bias");
  CHECK(shape_of(gate, "bias") == Shape{16});
  CHECK(shape_of(gate, "weight") == Shape{64, 16});
}

TEST_CASE("attention_scale at DeepSeek's real sizes", "[model][config]") {
  ModelConfig c;
  c.arch = Architecture::kDeepseek2;
  c.qk_nope_head_dim = 128;
  c.qk_rope_head_dim = 64;
  CHECK(c.attention_scale() == Approx(1.0 / std::sqrt(192.0)));
  c.rope.scaling = RopeScaling::kYarn;
  c.rope.factor = 40.0f;
  c.rope.yarn_log_multiplier = 0.1f;  // V3: mscale_all_dim 1.0
  CHECK(c.attention_scale() == Approx(0.135234).epsilon(1e-5));
  c.rope.yarn_log_multiplier = 0.0707f;  // V2: mscale_all_dim 0.707
  CHECK(c.attention_scale() == Approx(0.114721).epsilon(1e-5));
  c.rope.factor = 1.0f;  // YaRN with factor 1 is no scaling
  CHECK(c.attention_scale() == Approx(1.0 / std::sqrt(192.0)));
  c.rope.factor = 40.0f;
  c.rope.scaling = RopeScaling::kLinear;
  CHECK(c.attention_scale() == Approx(1.0 / std::sqrt(192.0)));
  c.kv_lora_rank = 512;
  CHECK(c.kv_values_per_token() == 576);
}

TEST_CASE("deepseek2 flavours: k_b/v_b without q compression, and a file with both",
          "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::lite();
  spec.split_kv_b = true;
  const Loaded split = load(dir, spec, "split.gguf");
  CHECK(split.config.mla_split_kv_b);
  CHECK(split.config.qk_nope_head_dim == 16);
  CHECK(split.config.v_head_dim == 16);
  CHECK(roles_of(module(split, "model.layers.0.self_attn")) ==
        std::vector<std::string>{"k_b", "kv_a_mqa", "kv_a_norm", "output", "q", "v_b"});

  // Older keys with the newer tensors (k_b/v_b): the tensors decide the layout.
  spec.split_kv_b = false;
  spec.drop_tensors.clear();
  auto writer = test::tiny_model_writer(spec);
  for (int il = 0; il < 3; ++il) {
    const std::vector<float> kb(16 * 32 * 4, 0.5f), vb(32 * 16 * 4, 0.5f);
    writer.add_tensor("blk." + std::to_string(il) + ".attn_k_b.weight", TensorType::F32,
                      {16, 32, 4}, kb.data(), kb.size() * 4);
    writer.add_tensor("blk." + std::to_string(il) + ".attn_v_b.weight", TensorType::F32,
                      {32, 16, 4}, vb.data(), vb.size() * 4);
  }
  writer.write(dir.file("both.gguf"));
  gguf::File both = gguf::File::open(dir.file("both.gguf"));
  const ModelConfig c = ModelConfig::from_gguf(both);
  CHECK(c.mla_split_kv_b);
  CHECK(c.head_dim == 24);
  const auto modules = build_module_tree(c, both);
  CHECK(roles_of(modules[2]) ==
        std::vector<std::string>{"k_b", "kv_a_mqa", "kv_a_norm", "kv_b", "output", "q", "v_b"});
}

TEST_CASE("deepseek2 without routed experts is dense everywhere", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::lite();
  spec.n_expert = 0;
  spec.n_layer_dense_lead = 0;
  const Loaded m = load(dir, spec);
  CHECK(m.config.n_expert == 0);
  CHECK_FALSE(m.config.is_moe_layer(2));
  CHECK(module(m, "model.layers.2.mlp").kind == ModuleKind::kMlp);
  CHECK(m.modules.size() == 1 + 3 * 4 + 2);
}

TEST_CASE("llama: GQA, dense, optional biases and rope_freqs", "[model][config]") {
  test::TempDir dir;
  const Loaded m = load(dir, TinyModelSpec::llama());
  const ModelConfig& c = m.config;
  CHECK(c.arch == Architecture::kLlama);
  CHECK(c.arch_name == "llama");
  CHECK(c.n_layer == 2);
  CHECK(c.n_head == 4);
  CHECK(c.n_head_kv == 2);
  CHECK(c.head_dim == 16);  // n_embd / n_head: the file has no key_length
  CHECK(c.rope.n_dims == 16);
  CHECK(c.n_ff == 96);
  CHECK(c.n_expert == 0);
  CHECK(c.kv_lora_rank == 0);
  CHECK_FALSE(c.is_moe_layer(1));
  CHECK(c.attention_scale() == Approx(0.25));
  CHECK(c.kv_values_per_token() == 2 * 2 * 16);

  std::vector<Expected> expected{{"model.embed_tokens", ModuleKind::kEmbedding, -1, {"weight"}}};
  for (int il = 0; il < 2; ++il) {
    const std::string p = "model.layers." + std::to_string(il);
    expected.push_back({p + ".input_layernorm", ModuleKind::kRmsNorm, il, {"weight"}});
    expected.push_back(
        {p + ".self_attn", ModuleKind::kGqaAttention, il, {"k", "output", "q", "v"}});
    expected.push_back({p + ".post_attention_layernorm", ModuleKind::kRmsNorm, il, {"weight"}});
    expected.push_back({p + ".mlp", ModuleKind::kMlp, il, {"down", "gate", "up"}});
  }
  expected.push_back({"model.norm", ModuleKind::kRmsNorm, -1, {"weight"}});
  expected.push_back({"lm_head", ModuleKind::kLmHead, -1, {"weight"}});
  check_modules(m.modules, expected);
  const ModuleDesc& attn = module(m, "model.layers.1.self_attn");
  CHECK(shape_of(attn, "q") == Shape{64, 64});
  CHECK(shape_of(attn, "k") == Shape{64, 32});
  CHECK(shape_of(attn, "v") == Shape{64, 32});
  CHECK(shape_of(attn, "output") == Shape{64, 64});

  TinyModelSpec spec = TinyModelSpec::llama();
  spec.attn_bias = true;
  spec.rope_freqs = true;
  spec.head_dim = 32;  // n_head * head_dim != n_embd: key_length is written and used
  const Loaded b = load(dir, spec, "bias.gguf");
  CHECK(b.config.head_dim == 32);
  const ModuleDesc& battn = module(b, "model.layers.1.self_attn");
  CHECK(roles_of(battn) == std::vector<std::string>{"k", "k_bias", "output", "output_bias", "q",
                                                    "q_bias", "rope_freqs", "v", "v_bias"});
  CHECK(shape_of(battn, "q") == Shape{64, 128});
  CHECK(shape_of(battn, "k_bias") == Shape{64});
  CHECK(battn.weight("rope_freqs").name == "rope_freqs.weight");
  CHECK(shape_of(battn, "rope_freqs") == Shape{16});
}

TEST_CASE("llama with experts (Mixtral style)", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::llama();
  spec.n_expert = 4;
  spec.n_expert_used = 2;
  const Loaded m = load(dir, spec);
  CHECK(m.config.n_expert == 4);
  CHECK(m.config.n_ff_exp == 96);
  CHECK(m.config.expert_weights_norm);
  CHECK(m.config.gating == GatingFunc::kSoftmax);
  CHECK(m.config.is_moe_layer(0));
  CHECK(module(m, "model.layers.0.mlp.gate").kind == ModuleKind::kMoeGate);
  CHECK(shape_of(module(m, "model.layers.0.mlp.experts"), "down_exps") == Shape{96, 64, 4});
  for (const ModuleDesc& d : m.modules) CHECK(d.name.find("shared_experts") == std::string::npos);
}

TEST_CASE("tied embeddings: lm_head reuses token_embd", "[model][config]") {
  test::TempDir dir;
  for (TinyModelSpec spec : {TinyModelSpec::lite(), TinyModelSpec::llama()}) {
    spec.tied = true;
    const Loaded m = load(dir, spec, spec.arch + ".gguf");
    CHECK(m.config.tied_embeddings);
    CHECK(&module(m, "lm_head").weight("weight") ==
          &module(m, "model.embed_tokens").weight("weight"));
    CHECK(module(m, "lm_head").weight("weight").name == "token_embd.weight");
  }
}

TEST_CASE("n_vocab: token_embd rows, else vocab_size", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::lite();
  spec.drop_keys = {"deepseek2.vocab_size"};
  CHECK(load(dir, spec, "a.gguf").config.n_vocab == 96);

  spec = TinyModelSpec::lite();
  spec.drop_tensors = {"token_embd.weight"};
  test::write_tiny_model(spec, dir.file("b.gguf"));
  gguf::File file = gguf::File::open(dir.file("b.gguf"));
  CHECK(ModelConfig::from_gguf(file).n_vocab == 96);
}

TEST_CASE("per-layer arrays are accepted when all layers agree", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::llama();
  spec.set_keys.emplace("llama.attention.head_count", gguf::Value::int32_array({4, 4}));
  spec.set_keys.emplace("llama.attention.head_count_kv", gguf::Value::int32_array({2, 2}));
  spec.set_keys.emplace("llama.feed_forward_length", gguf::Value::int32_array({96, 96}));
  const Loaded m = load(dir, spec);
  CHECK(m.config.n_head == 4);
  CHECK(m.config.n_head_kv == 2);
  CHECK(m.config.n_ff == 96);

  spec.set_keys["llama.attention.head_count_kv"] = gguf::Value::int32_array({2, 4});
  require_refusal(spec, ErrorCode::kUnsupported,
                  {"'llama.attention.head_count_kv'", "differs between layers", "layer 1: 4"});
  spec.set_keys["llama.attention.head_count_kv"] = gguf::Value::int32_array({2, 2, 2});
  require_refusal(spec, ErrorCode::kInvalidFile,
                  {"'llama.attention.head_count_kv'", "3 entries", "expected 2"});
}

TEST_CASE("rope scaling types", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::llama();
  spec.set_keys.emplace("llama.rope.scaling.type", gguf::Value::string("linear"));
  spec.set_keys.emplace("llama.rope.scaling.factor", gguf::Value::float32(4.0f));
  ModelConfig c = load(dir, spec, "linear.gguf").config;
  CHECK(c.rope.scaling == RopeScaling::kLinear);
  CHECK(c.rope.factor == 4.0f);

  spec = TinyModelSpec::llama();
  spec.set_keys.emplace("llama.rope.scale_linear", gguf::Value::float32(2.0f));  // older files
  c = load(dir, spec, "old_linear.gguf").config;
  CHECK(c.rope.scaling == RopeScaling::kLinear);
  CHECK(c.rope.factor == 2.0f);

  spec = TinyModelSpec::lite();
  spec.set_keys.emplace("deepseek2.rope.scaling.type", gguf::Value::string("none"));
  CHECK(load(dir, spec, "none.gguf").config.rope.scaling == RopeScaling::kNone);

  spec = TinyModelSpec::v3();
  spec.set_keys.emplace("deepseek2.rope.scaling.yarn_beta_fast", gguf::Value::float32(16.0f));
  spec.set_keys.emplace("deepseek2.rope.scaling.yarn_beta_slow", gguf::Value::float32(2.0f));
  spec.drop_keys = {"deepseek2.rope.scaling.original_context_length"};
  c = load(dir, spec, "beta.gguf").config;
  CHECK(c.rope.yarn_beta_fast == 16.0f);
  CHECK(c.rope.yarn_beta_slow == 2.0f);
  CHECK(c.rope.original_context == 512);  // falls back to context_length

  spec = TinyModelSpec::lite();
  spec.set_keys.emplace("deepseek2.rope.scaling.type", gguf::Value::string("longrope"));
  require_refusal(spec, ErrorCode::kUnsupported,
                  {"'deepseek2.rope.scaling.type'", "\"longrope\"", "\"yarn\""});
  spec = TinyModelSpec::v2();
  spec.drop_keys = {"deepseek2.rope.scaling.factor"};
  require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.rope.scaling.factor'", "missing"});
  spec = TinyModelSpec::v2();
  spec.yarn_factor = -2.0f;
  require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.rope.scaling.factor'", "is -2"});
}

TEST_CASE("quantized tiny models", "[model][config]") {
  test::TempDir dir;
  TinyModelSpec spec = TinyModelSpec::v3();
  spec.weight_type = TensorType::Q8_0;
  spec.embd_type = TensorType::Q4_K;  // 64-wide rows are not a multiple of 256: F32 fallback
  const Loaded m = load(dir, spec);
  const ModuleDesc& attn = module(m, "model.layers.0.self_attn");
  CHECK(attn.weight("q_a").type == TensorType::Q8_0);
  CHECK(attn.weight("q_b").type == TensorType::F32);  // 48-wide rows: F32 fallback
  CHECK(attn.weight("q_a_norm").type == TensorType::F32);
  CHECK(module(m, "model.layers.3.mlp.gate").weight("weight").type == TensorType::F32);
  CHECK(module(m, "model.layers.3.mlp.experts").weight("down_exps").type == TensorType::Q8_0);
  CHECK(module(m, "model.embed_tokens").weight("weight").type == TensorType::F32);

  // Q8_0 keeps the values to about 1% of their range; same seed, same values as F32.
  TinyModelSpec f32_spec = TinyModelSpec::v3();
  const Loaded ref = load(dir, f32_spec, "f32.gguf");
  const auto q = test::tensor_to_f32(attn.weight("q_a"));
  const auto r = test::tensor_to_f32(module(ref, "model.layers.0.self_attn").weight("q_a"));
  REQUIRE(q.size() == r.size());
  double max_err = 0, max_abs = 0;
  for (size_t i = 0; i < q.size(); ++i) {
    max_err = std::max(max_err, static_cast<double>(std::abs(q[i] - r[i])));
    max_abs = std::max(max_abs, static_cast<double>(std::abs(r[i])));
  }
  CHECK(max_abs > 0.05);
  CHECK(max_err < 0.01 * max_abs);
}

TEST_CASE("module_kind_name and weight lookups", "[model][config]") {
  CHECK(module_kind_name(ModuleKind::kEmbedding) == "embedding");
  CHECK(module_kind_name(ModuleKind::kRmsNorm) == "rms_norm");
  CHECK(module_kind_name(ModuleKind::kMlaAttention) == "mla_attention");
  CHECK(module_kind_name(ModuleKind::kGqaAttention) == "gqa_attention");
  CHECK(module_kind_name(ModuleKind::kMlp) == "mlp");
  CHECK(module_kind_name(ModuleKind::kMoeGate) == "moe_gate");
  CHECK(module_kind_name(ModuleKind::kExperts) == "experts");
  CHECK(module_kind_name(ModuleKind::kLmHead) == "lm_head");

  test::TempDir dir;
  const Loaded m = load(dir, TinyModelSpec::lite());
  const ModuleDesc& gate = module(m, "model.layers.1.mlp.gate");
  CHECK(gate.find_weight("bias") == nullptr);
  try {
    (void)gate.weight("bias");
    FAIL("expected a ktx::Error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(e.what(), Catch::Contains("model.layers.1.mlp.gate") && Catch::Contains("'bias'") &&
                             Catch::Contains("has: weight"));
  }
}

TEST_CASE("refused: missing required keys", "[model][config][errors]") {
  struct Case {
    TinyModelSpec spec;
    std::string key;
  };
  std::vector<Case> cases;
  for (std::string k : {"block_count", "embedding_length", "context_length", "attention.head_count",
                        "attention.layer_norm_rms_epsilon", "attention.kv_lora_rank",
                        "rope.dimension_count", "attention.key_length", "attention.value_length",
                        "expert_used_count", "expert_feed_forward_length", "feed_forward_length"}) {
    cases.push_back({TinyModelSpec::lite(), "deepseek2." + k});
  }
  for (std::string k : {"attention.key_length_mla", "attention.value_length_mla"}) {
    cases.push_back({TinyModelSpec::v3(), "deepseek2." + k});
  }
  for (std::string k : {"block_count", "embedding_length", "context_length", "attention.head_count",
                        "attention.layer_norm_rms_epsilon", "feed_forward_length"}) {
    cases.push_back({TinyModelSpec::llama(), "llama." + k});
  }
  for (Case& c : cases) {
    SECTION(c.key) {
      c.spec.drop_keys.insert(c.key);
      require_refusal(c.spec, ErrorCode::kInvalidFile, {"'" + c.key + "'", "is missing"});
    }
  }
  SECTION("general.architecture") {
    TinyModelSpec spec;
    spec.drop_keys = {"general.architecture"};
    require_refusal(spec, ErrorCode::kInvalidFile, {"'general.architecture'", "missing"});
  }
  SECTION("feed_forward_length may be absent when every layer is MoE") {
    TinyModelSpec spec;
    spec.n_layer_dense_lead = 0;
    spec.drop_keys = {"deepseek2.feed_forward_length"};
    test::TempDir dir;
    CHECK(load(dir, spec).config.n_ff == 0);
  }
  SECTION("optional deepseek2 keys have llama.cpp's defaults") {
    TinyModelSpec spec;
    spec.drop_keys = {"deepseek2.expert_shared_count", "deepseek2.expert_weights_scale",
                      "deepseek2.expert_weights_norm", "deepseek2.leading_dense_block_count",
                      "deepseek2.rope.freq_base",      "deepseek2.attention.head_count_kv"};
    spec.n_expert_shared = 0;
    spec.n_layer_dense_lead = 0;
    test::TempDir dir;
    const ModelConfig c = load(dir, spec).config;
    CHECK(c.n_expert_shared == 0);
    CHECK(c.expert_weights_scale == 1.0f);
    CHECK_FALSE(c.expert_weights_norm);
    CHECK(c.n_layer_dense_lead == 0);
    CHECK(c.rope.freq_base == 10000.0f);
    CHECK(c.n_head_kv == 4);
  }
}

TEST_CASE("refused: keys of the wrong type", "[model][config][errors]") {
  TinyModelSpec spec;
  SECTION("integer as string") {
    spec.set_keys.emplace("deepseek2.block_count", gguf::Value::string("3"));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.block_count'", "STRING"});
  }
  SECTION("float as integer") {
    spec.set_keys.emplace("deepseek2.attention.layer_norm_rms_epsilon", gguf::Value::uint32(1));
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.attention.layer_norm_rms_epsilon'", "UINT32", "FLOAT32"});
  }
  SECTION("bool as integer") {
    spec.set_keys.emplace("deepseek2.expert_weights_norm", gguf::Value::uint8(1));
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.expert_weights_norm'", "UINT8", "BOOL"});
  }
  SECTION("string as integer") {
    spec.yarn = true;
    spec.set_keys.emplace("deepseek2.rope.scaling.type", gguf::Value::uint32(2));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.rope.scaling.type'", "STRING"});
  }
  SECTION("array where a scalar belongs") {
    spec.set_keys.emplace("deepseek2.expert_count", gguf::Value::int32_array({8, 8, 8}));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.expert_count'", "array"});
  }
  SECTION("per-layer array of floats") {
    spec.set_keys.emplace("deepseek2.attention.head_count",
                          gguf::Value::float32_array({4.0f, 4.0f, 4.0f}));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.attention.head_count'", "FLOAT32"});
  }
}

TEST_CASE("refused: sizes out of range and inconsistent", "[model][config][errors]") {
  TinyModelSpec spec;
  SECTION("zero") {
    spec.set_keys.emplace("deepseek2.embedding_length", gguf::Value::uint32(0));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.embedding_length'", "is 0"});
  }
  SECTION("negative") {
    spec.set_keys.emplace("deepseek2.attention.head_count", gguf::Value::int32(-4));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.attention.head_count'", "is -4"});
  }
  SECTION("absurdly large") {
    spec.set_keys.emplace("deepseek2.attention.kv_lora_rank", gguf::Value::uint64(1ull << 40));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.attention.kv_lora_rank'"});
  }
  SECTION("n_expert_used > n_expert") {
    spec.n_expert_used = 9;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.expert_used_count'", "is 9", "deepseek2.expert_count (8)"});
  }
  SECTION("n_group_used > n_group") {
    spec.n_group = 2;
    spec.n_group_used = 3;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.expert_group_used_count'", "is 3", "(2)"});
  }
  SECTION("n_expert % n_group != 0") {
    spec.n_group = 3;
    spec.n_group_used = 1;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.expert_group_count'", "is 3", "does not divide"});
  }
  SECTION("groups too few for top-k") {
    spec.n_group = 4;  // 2 experts per group, 1 group kept: 2 < 3 used
    spec.n_group_used = 1;
    spec.n_expert_used = 3;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.expert_used_count'", "is 3", "1 of 4 groups"});
  }
  SECTION("leading dense layers past the model") {
    spec.n_layer_dense_lead = 4;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.leading_dense_block_count'", "is 4", "block_count 3"});
  }
  SECTION("key_length not above the rope part") {
    spec.set_keys.emplace("deepseek2.attention.key_length", gguf::Value::uint32(8));
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.attention.key_length'", "is 8", "rope.dimension_count 8"});
  }
  SECTION("MLA flavour: key_length disagrees with kv_lora_rank + rope") {
    spec = TinyModelSpec::v3();
    spec.set_keys.emplace("deepseek2.attention.key_length", gguf::Value::uint32(24));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.attention.key_length'", "40"});
  }
  SECTION("MLA flavour: value_length disagrees with kv_lora_rank") {
    spec = TinyModelSpec::v3();
    spec.set_keys.emplace("deepseek2.attention.value_length", gguf::Value::uint32(16));
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'deepseek2.attention.value_length'", "is 16", "32"});
  }
  SECTION("odd rope dimension") {
    spec.set_keys.emplace("deepseek2.rope.dimension_count", gguf::Value::uint32(7));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.rope.dimension_count'", "is 7"});
  }
  SECTION("vocab_size disagrees with token_embd") {
    spec.set_keys.emplace("deepseek2.vocab_size", gguf::Value::uint32(100));
    require_refusal(spec, ErrorCode::kInvalidFile, {"'deepseek2.vocab_size'", "is 100", "96 rows"});
  }
  SECTION("gating function ktx lacks") {
    spec.gating = 3;
    require_refusal(spec, ErrorCode::kUnsupported, {"'deepseek2.expert_gating_func'", "is 3"});
  }
  SECTION("llama: head_count_kv does not divide head_count") {
    spec = TinyModelSpec::llama();
    spec.n_head_kv = 3;
    require_refusal(spec, ErrorCode::kInvalidFile, {"'llama.attention.head_count_kv'", "is 3"});
  }
  SECTION("llama: value_length != key_length") {
    spec = TinyModelSpec::llama();
    spec.set_keys.emplace("llama.attention.value_length", gguf::Value::uint32(8));
    require_refusal(spec, ErrorCode::kUnsupported, {"'llama.attention.value_length'", "is 8"});
  }
  SECTION("llama: head size cannot be derived") {
    spec = TinyModelSpec::llama();
    spec.set_keys.emplace("llama.attention.head_count", gguf::Value::uint32(5));
    spec.n_head_kv = 1;
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'llama.attention.key_length'", "missing", "head_count 5"});
  }
}

TEST_CASE("refused: architectures ktx does not run", "[model][config][errors]") {
  TinyModelSpec spec;
  spec.set_keys.emplace("general.architecture", gguf::Value::string("qwen2"));
  require_refusal(spec, ErrorCode::kUnsupported, {"\"qwen2\"", "llama, deepseek2"});
  TinyModelSpec empty;
  empty.set_keys.emplace("general.architecture", gguf::Value::string(""));
  require_refusal(empty, ErrorCode::kInvalidFile, {"general.architecture is empty"});
}

TEST_CASE("refused: tensors of the wrong shape", "[model][config][errors]") {
  TinyModelSpec spec;
  SECTION("3-D experts") {
    spec.reshape["blk.1.ffn_gate_exps.weight"] = {64, 32, 4};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.1.ffn_gate_exps.weight'", "gate_exps of model.layers.1.mlp.experts",
                     "expected shape [64, 32, 8], file has [64, 32, 4]"});
  }
  SECTION("MLA kv_b") {
    spec.reshape["blk.0.attn_kv_b.weight"] = {32, 64};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.0.attn_kv_b.weight'", "model.layers.0.self_attn",
                     "expected shape [32, 128], file has [32, 64]"});
  }
  SECTION("k_b transposed") {
    spec = TinyModelSpec::v3();
    spec.reshape["blk.2.attn_k_b.weight"] = {32, 16, 4};
    require_refusal(
        spec, ErrorCode::kInvalidFile,
        {"'blk.2.attn_k_b.weight'", "expected shape [16, 32, 4], file has [32, 16, 4]"});
  }
  SECTION("norm") {
    spec.reshape["output_norm.weight"] = {32};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'output_norm.weight'", "model.norm", "expected shape [64], file has [32]"});
  }
  SECTION("gate bias") {
    spec = TinyModelSpec::v3();
    spec.reshape["blk.3.exp_probs_b.bias"] = {8};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.3.exp_probs_b.bias'", "bias of model.layers.3.mlp.gate"});
  }
  SECTION("llama k") {
    spec = TinyModelSpec::llama();
    spec.reshape["blk.1.attn_k.weight"] = {64, 64};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.1.attn_k.weight'", "expected shape [64, 32], file has [64, 64]"});
  }
  SECTION("trailing 1-dimensions are the same shape") {
    spec.reshape["output_norm.weight"] = {64, 1};
    test::TempDir dir;
    CHECK(load(dir, spec).modules.back().name == "lm_head");
  }
}

TEST_CASE("refused: missing tensors", "[model][config][errors]") {
  TinyModelSpec spec;
  SECTION("MLA norm") {
    spec.drop_tensors = {"blk.2.attn_kv_a_norm.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.2.attn_kv_a_norm.weight' is missing", "model.layers.2.self_attn",
                     "mla_attention", "'kv_a_norm'"});
  }
  SECTION("shared expert") {
    spec.drop_tensors = {"blk.1.ffn_down_shexp.weight"};
    require_refusal(
        spec, ErrorCode::kInvalidFile,
        {"'blk.1.ffn_down_shexp.weight' is missing", "model.layers.1.mlp.shared_experts"});
  }
  SECTION("experts stored one per tensor") {
    spec.drop_tensors = {"blk.1.ffn_up_exps.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.1.ffn_up_exps.weight' is missing", "model.layers.1.mlp.experts", "3-D"});
  }
  SECTION("expert_count key lost: the layers with experts are named, not their dense tensors") {
    spec.drop_keys = {"deepseek2.expert_count"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"layer 1 holds routed experts", "deepseek2.expert_count (0)"});
  }
  SECTION("q_lora_rank key lost") {
    spec = TinyModelSpec::v2();
    spec.drop_keys = {"deepseek2.attention.q_lora_rank"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.0.attn_q.weight' is missing", "q_lora_rank"});
  }
  SECTION("k_b / v_b flavour loses v_b in one layer") {
    spec = TinyModelSpec::v3();
    spec.drop_tensors = {"blk.3.attn_v_b.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.3.attn_v_b.weight' is missing", "model.layers.3.self_attn"});
  }
  SECTION("embedding") {
    spec.drop_tensors = {"token_embd.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'token_embd.weight' is missing", "model.embed_tokens"});
  }
  SECTION("tied head without an embedding") {
    spec.tied = true;
    spec.drop_tensors = {"token_embd.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile, {"'token_embd.weight' is missing"});
  }
  SECTION("merged gate/up experts") {
    spec.drop_tensors = {"blk.1.ffn_gate_exps.weight", "blk.1.ffn_up_exps.weight"};
    auto writer = test::tiny_model_writer(spec);
    const std::vector<float> gate_up(64 * 64 * 8, 0.01f);
    writer.add_tensor("blk.1.ffn_gate_up_exps.weight", TensorType::F32, {64, 64, 8}, gate_up.data(),
                      gate_up.size() * 4);
    test::TempDir dir;
    writer.write(dir.file("fused.gguf"));
    gguf::File file = gguf::File::open(dir.file("fused.gguf"));
    try {
      (void)build_module_tree(ModelConfig::from_gguf(file), file);
      FAIL("expected a ktx::Error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kUnsupported);
      CHECK_THAT(e.what(), Catch::Contains("'blk.1.ffn_gate_up_exps.weight'") &&
                               Catch::Contains("model.layers.1.mlp.experts") &&
                               Catch::Contains("'blk.1.ffn_gate_exps.weight'"));
    }
  }
  SECTION("llama dense ffn") {
    spec = TinyModelSpec::llama();
    spec.drop_tensors = {"blk.1.ffn_gate.weight"};
    require_refusal(spec, ErrorCode::kInvalidFile,
                    {"'blk.1.ffn_gate.weight' is missing", "model.layers.1.mlp", "'gate'"});
  }
}

}  // namespace ktx::model
