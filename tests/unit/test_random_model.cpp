// Random models (lib/model/random_model.h): every preset, shrunk, loads through ModelConfig and
// the module tree; full-size presets have the real models' parameter counts; types follow a
// fixed type (with llama.cpp's row fallbacks) or a preset's per-tensor rules; the same seed gives
// the same bytes whatever the threads; values have the intended scale; bad specs are refused.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "gguf_test_helpers.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/quantize.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "model/random_model.h"

namespace ktx::model {
namespace {

using gguf::test::TempDir;
using TT = TensorType;

// A preset at test size: few layers (at least one MoE layer), narrow, few experts, but the same
// flavour (q_lora or not, split kv_b or not, gating, groups, tied head).
RandomModelSpec shrink(RandomModelSpec s) {
  s.n_layer = std::min<int64_t>(s.n_layer, s.n_layer_dense_lead + 2);
  if (s.n_embd > 128) {
    s.n_embd = 128;
    s.n_vocab = 256;
    s.n_ff = 256;
    s.n_head = 4;
    if (s.arch == "llama") s.n_head_kv = 2;
    if (s.q_lora_rank > 0) s.q_lora_rank = 64;
    s.kv_lora_rank = 64;
    s.qk_nope = 32;
    s.qk_rope = 16;
    s.v_head = 32;
    s.n_ff_exp = 64;
    if (s.n_expert > 16) s.n_expert = 16;
  }
  return s;
}

struct Opened {
  gguf::File file;
  ModelConfig config;
  std::vector<ModuleDesc> modules;
};

Opened open(const std::string& path) {
  gguf::File file = gguf::File::open(path);
  ModelConfig config = ModelConfig::from_gguf(file);
  std::vector<ModuleDesc> modules = build_module_tree(config, file);
  return {std::move(file), std::move(config), std::move(modules)};
}

std::vector<float> values_of(const gguf::TensorInfo& t) {
  const int64_t row = t.shape.at(0);
  std::vector<float> out(static_cast<size_t>(row * t.rows()));
  const size_t row_bytes = row_size(t.type, row);
  for (int64_t r = 0; r < t.rows(); ++r) {
    quant::dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes, out.data() + r * row,
                          row);
  }
  return out;
}

RandomModelOptions with_threads(int threads) {
  RandomModelOptions options;
  options.threads = threads;
  return options;
}

std::map<std::string, TT> types_of(const std::vector<RandomTensor>& tensors) {
  std::map<std::string, TT> out;
  for (const RandomTensor& t : tensors) out[t.name] = t.type;
  return out;
}

uint64_t parameters(const RandomModelSpec& spec) {
  uint64_t n = 0;
  for (const RandomTensor& t : random_model_tensors(spec)) n += t.n_elements;
  return n;
}

void require_refusal(const RandomModelSpec& spec, std::initializer_list<std::string> parts) {
  try {
    (void)random_model_tensors(spec);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == ErrorCode::kInvalidArgument);
    for (const std::string& part : parts) CHECK_THAT(e.what(), Catch::Contains(part));
    return;
  }
  FAIL("expected a ktx::Error");
}

}  // namespace

TEST_CASE("every preset, shrunk, loads with the shape and flavour it asked for",
          "[model][random]") {
  TempDir dir;
  REQUIRE(random_model_presets().size() == 8);
  for (const RandomModelPreset& preset : random_model_presets()) {
    SECTION(std::string(preset.name)) {
      const RandomModelSpec spec = shrink(random_model_preset(preset.name));
      const std::string path = dir.file(std::string(preset.name) + ".gguf");
      const RandomModelSummary summary = write_random_model(spec, path, with_threads(2));
      const Opened m = open(path);
      const ModelConfig& c = m.config;
      CHECK(c.arch_name == spec.arch);
      CHECK(c.n_layer == spec.n_layer);
      CHECK(c.n_embd == spec.n_embd);
      CHECK(c.n_vocab == spec.n_vocab);
      CHECK(c.n_head == spec.n_head);
      CHECK(c.n_expert == spec.n_expert);
      CHECK(c.tied_embeddings == spec.tied);
      CHECK(c.rope.scaling == (spec.yarn ? RopeScaling::kYarn : RopeScaling::kNone));
      if (spec.arch == "deepseek2") {
        CHECK(c.q_lora_rank == spec.q_lora_rank);
        CHECK(c.kv_lora_rank == spec.kv_lora_rank);
        CHECK(c.mla_split_kv_b == spec.split_kv_b);
        CHECK(c.n_expert_used == spec.n_expert_used);
        CHECK(c.n_expert_shared == spec.n_expert_shared);
        CHECK(c.n_layer_dense_lead == spec.n_layer_dense_lead);
        CHECK(c.gating == (spec.gating == 2 ? GatingFunc::kSigmoid : GatingFunc::kSoftmax));
        CHECK(c.expert_weights_norm == spec.weights_norm);
        CHECK(c.expert_weights_scale == spec.weights_scale);
        CHECK(c.n_group == spec.n_group);
        CHECK(c.n_group_used == spec.n_group_used);
      } else {
        CHECK(c.n_head_kv == spec.n_head_kv);
        CHECK(c.head_dim == spec.n_embd / spec.n_head);
      }
      CHECK(m.modules.front().name == "model.embed_tokens");
      CHECK(m.modules.back().name == "lm_head");
      CHECK(summary.n_tensors == m.file.tensors().size());
      CHECK(m.file.find("tokenizer.ggml.tokens") == nullptr);  // no vocabulary unless asked
      CHECK_THAT(m.file.get_string("general.description"), Catch::Contains("random"));
    }
  }
}

TEST_CASE("full-size presets have the real models' parameter counts", "[model][random]") {
  // Totals as DeepSeek and Meta state them (V3 without its multi-token-prediction layer, which
  // GGUF files leave out); the random file holds exactly the tensors a converted one does.
  CHECK(parameters(random_model_preset("deepseek-v2-lite")) / 1e9 == Approx(15.7).epsilon(0.01));
  CHECK(parameters(random_model_preset("deepseek-v2")) / 1e9 == Approx(236).epsilon(0.01));
  CHECK(parameters(random_model_preset("deepseek-v3")) / 1e9 == Approx(671).epsilon(0.01));
  CHECK(parameters(random_model_preset("llama")) / 1e9 == Approx(1.24).epsilon(0.01));

  const RandomModelSpec lite = random_model_preset("deepseek-v2-lite");
  CHECK(lite.n_layer == 27);
  CHECK(lite.n_embd == 2048);
  CHECK(lite.n_ff == 10944);
  CHECK(lite.n_ff_exp == 1408);
  CHECK(lite.n_expert == 64);
  CHECK(lite.q_lora_rank == 0);
  const RandomModelSpec v3 = random_model_preset("deepseek-v3");
  CHECK(v3.n_layer == 61);
  CHECK(v3.n_layer_dense_lead == 3);
  CHECK(v3.gating == 2);
  CHECK(v3.n_group == 8);
  CHECK(v3.n_group_used == 4);
}

TEST_CASE("a preset's mix: V2-Lite, 8 layers, Q4_K_M as llama-quantize makes it",
          "[model][random][types]") {
  RandomModelSpec spec = random_model_preset("deepseek-v2-lite");
  spec.n_layer = 8;
  spec.preset = quantize::Preset::Q4_K_M;
  const std::vector<RandomTensor> tensors = random_model_tensors(spec);
  std::set<TT> used;
  for (const RandomTensor& t : tensors) used.insert(t.type);
  CHECK(used == std::set<TT>{TT::F32, TT::Q4_K, TT::Q5_0, TT::Q6_K, TT::Q8_0});

  const auto types = types_of(tensors);
  CHECK(types.at("token_embd.weight") == TT::Q4_K);
  CHECK(types.at("output.weight") == TT::Q6_K);
  CHECK(types.at("output_norm.weight") == TT::F32);
  CHECK(types.at("blk.3.ffn_gate_inp.weight") == TT::F32);
  CHECK(types.at("blk.3.attn_q.weight") == TT::Q4_K);
  CHECK(types.at("blk.3.ffn_gate_exps.weight") == TT::Q4_K);
  // 1408-wide rows: Q4_K falls back to Q5_0 and, in the "more bits" layers, Q6_K to Q8_0.
  // llama.cpp's "more bits" layers of 8 are 0, 3, 6 and 7.
  CHECK(types.at("blk.0.ffn_down.weight") == TT::Q8_0);  // dense, row 10944
  CHECK(types.at("blk.3.ffn_down_exps.weight") == TT::Q8_0);
  CHECK(types.at("blk.1.ffn_down_exps.weight") == TT::Q5_0);
  CHECK(types.at("blk.3.attn_kv_b.weight") == TT::Q6_K);
  CHECK(types.at("blk.1.attn_kv_b.weight") == TT::Q4_K);

  // Exactly what plan_types says for the same tensor list.
  quantize::ModelInfo info{
      .architecture = "deepseek2", .n_layer = 8, .n_expert = 64, .n_head = 16, .n_head_kv = 16};
  std::vector<quantize::TensorDesc> descs;
  for (const RandomTensor& t : tensors) descs.push_back({t.name, TT::F32, t.shape});
  for (const quantize::TensorPlan& p : quantize::plan_types(info, descs, *spec.preset)) {
    INFO(p.name);
    CHECK(tensors[p.index].type == p.to);
  }
}

TEST_CASE("a fixed type: every matrix, with llama.cpp's fallbacks", "[model][random][types]") {
  RandomModelSpec spec = random_model_preset("deepseek-v2-lite");
  spec.n_layer = 3;
  spec.weight_type = spec.embd_type = TT::Q4_K;
  auto types = types_of(random_model_tensors(spec));
  CHECK(types.at("token_embd.weight") == TT::Q4_K);
  CHECK(types.at("output.weight") == TT::Q4_K);
  CHECK(types.at("blk.1.attn_kv_b.weight") == TT::Q4_K);
  CHECK(types.at("blk.1.ffn_down_exps.weight") == TT::Q5_0);  // row 1408
  CHECK(types.at("blk.0.ffn_down.weight") == TT::Q5_0);       // row 10944
  CHECK(types.at("blk.1.ffn_gate_inp.weight") == TT::F32);
  CHECK(types.at("blk.1.attn_kv_a_norm.weight") == TT::F32);

  // For each type that is some preset's base, --type T is llama-quantize --pure with it.
  for (const quantize::PresetInfo& p : quantize::presets()) {
    if (p.preset == quantize::Preset::Q4_K_M || p.preset == quantize::Preset::Q5_K_M) continue;
    INFO(p.name);
    RandomModelSpec fixed = spec;
    fixed.weight_type = fixed.embd_type = p.base_type;
    const std::vector<RandomTensor> tensors = random_model_tensors(fixed);
    quantize::ModelInfo info{
        .architecture = "deepseek2", .n_layer = 3, .n_expert = 64, .n_head = 16, .n_head_kv = 16};
    std::vector<quantize::TensorDesc> descs;
    for (const RandomTensor& t : tensors) descs.push_back({t.name, TT::F32, t.shape});
    for (const quantize::TensorPlan& plan :
         quantize::plan_types(info, descs, p.preset, {.pure = true})) {
      INFO(plan.name);
      CHECK(tensors[plan.index].type == plan.to);
      CHECK(tensors[plan.index].fallback == plan.fallback);
    }
  }

  // A row no 32-block fits: F16 (llama.cpp refuses; a random model need not), or F32 on request.
  RandomModelSpec odd = random_model_preset("tiny-deepseek-v2");  // q_lora 48
  odd.weight_type = TT::Q8_0;
  types = types_of(random_model_tensors(odd));
  CHECK(types.at("blk.0.attn_q_a.weight") == TT::Q8_0);
  CHECK(types.at("blk.0.attn_q_b.weight") == TT::F16);
  odd.row_fallback = RowFallback::kF32;
  CHECK(types_of(random_model_tensors(odd)).at("blk.0.attn_q_b.weight") == TT::F32);

  // type_of wins over the preset and the fixed type.
  odd.preset = quantize::Preset::Q8_0;
  odd.row_fallback = RowFallback::kLlamaCpp;
  odd.type_of["blk.0.attn_q_b.weight"] = TT::BF16;
  odd.type_of["blk.0.attn_q_a.weight"] = TT::Q4_K;  // row 64: llama.cpp's substitute Q5_0
  types = types_of(random_model_tensors(odd));
  CHECK(types.at("blk.0.attn_q_b.weight") == TT::BF16);
  CHECK(types.at("blk.0.attn_q_a.weight") == TT::Q5_0);
}

TEST_CASE("same seed, same bytes, whatever the threads or staging", "[model][random]") {
  TempDir dir;
  RandomModelSpec spec = random_model_preset("tiny-deepseek-v3");
  spec.n_embd = 256;  // rows long enough for K-quants
  spec.weight_type = TT::Q4_K;
  spec.embd_type = TT::Q6_K;
  spec.seed = 1234;
  write_random_model(spec, dir.file("a.gguf"), with_threads(1));
  RandomModelOptions scratch = with_threads(3);
  scratch.memory_limit = 0;  // staged in a scratch file
  write_random_model(spec, dir.file("b.gguf"), scratch);
  const std::vector<uint8_t> a = gguf::test::read_file(dir.file("a.gguf"));
  CHECK(a == gguf::test::read_file(dir.file("b.gguf")));
  CHECK(a == random_model_writer(spec, 2).to_bytes());

  spec.seed = 1235;
  write_random_model(spec, dir.file("c.gguf"));
  const gguf::File fa = gguf::File::open(dir.file("a.gguf"));
  const gguf::File fc = gguf::File::open(dir.file("c.gguf"));
  REQUIRE(fa.tensors().size() == fc.tensors().size());
  for (size_t i = 0; i < fa.tensors().size(); ++i) {
    const gguf::TensorInfo& x = fa.tensors()[i];
    const gguf::TensorInfo& y = fc.tensors()[i];
    INFO(x.name);
    REQUIRE(x.n_bytes == y.n_bytes);
    CHECK(std::memcmp(x.data, y.data, x.n_bytes) != 0);
  }
}

TEST_CASE("values: unit-size activations, norms near 1, routing spread", "[model][random]") {
  TempDir dir;
  RandomModelSpec spec = random_model_preset("tiny-deepseek2");
  spec.n_embd = 512;
  spec.n_expert = 32;
  write_random_model(spec, dir.file("f32.gguf"));
  const gguf::File f = gguf::File::open(dir.file("f32.gguf"));

  for (const char* name : {"blk.1.attn_q.weight", "blk.1.ffn_gate_exps.weight",
                           "blk.1.ffn_down_exps.weight", "blk.0.attn_output.weight"}) {
    INFO(name);
    const gguf::TensorInfo& t = f.tensor(name);
    const std::vector<float> v = values_of(t);
    double sum = 0, sq = 0;
    for (float x : v) {
      sum += x;
      sq += static_cast<double>(x) * x;
    }
    const double mean = sum / v.size(), std = std::sqrt(sq / v.size() - mean * mean);
    CHECK(std::abs(mean) < 0.05 * std);
    CHECK(std == Approx(1.0 / std::sqrt(static_cast<double>(t.shape[0]))).epsilon(0.05));
  }
  for (float x : values_of(f.tensor("blk.2.ffn_norm.weight"))) {
    CHECK(x >= 0.75f);
    CHECK(x < 1.25f);
  }

  // A unit-size input through the router: logits of unit size, and different inputs pick
  // different experts (a degenerate router would send every token to the same few).
  const gguf::TensorInfo& router = f.tensor("blk.1.ffn_gate_inp.weight");
  const std::vector<float> w = values_of(router);
  const std::vector<float> embd = values_of(f.tensor("token_embd.weight"));
  std::set<int64_t> top1;
  double logit_sq = 0;
  for (int64_t tok = 0; tok < spec.n_vocab; ++tok) {
    const float* x = embd.data() + tok * spec.n_embd;  // untied: entries of unit size
    int64_t best = 0;
    float best_logit = -1e30f;
    for (int64_t e = 0; e < spec.n_expert; ++e) {
      float logit = 0;
      for (int64_t i = 0; i < spec.n_embd; ++i) logit += w[e * spec.n_embd + i] * x[i];
      logit_sq += static_cast<double>(logit) * logit;
      if (logit > best_logit) best_logit = logit, best = e;
    }
    top1.insert(best);
  }
  CHECK(std::sqrt(logit_sq / (spec.n_vocab * spec.n_expert)) == Approx(1.0).epsilon(0.15));
  CHECK(top1.size() >= static_cast<size_t>(spec.n_expert / 2));

  // Quantized, the same values to within the type's error.
  spec.weight_type = TT::Q8_0;
  write_random_model(spec, dir.file("q8.gguf"));
  const gguf::File q = gguf::File::open(dir.file("q8.gguf"));
  const std::vector<float> exact = values_of(f.tensor("blk.1.attn_q.weight"));
  const std::vector<float> approx = values_of(q.tensor("blk.1.attn_q.weight"));
  REQUIRE(q.tensor("blk.1.attn_q.weight").type == TT::Q8_0);
  double err = 0, ref = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    err += (exact[i] - approx[i]) * static_cast<double>(exact[i] - approx[i]);
    ref += static_cast<double>(exact[i]) * exact[i];
  }
  CHECK(err / ref < 1e-4);
}

TEST_CASE("progress, summary and general.file_type", "[model][random]") {
  TempDir dir;
  RandomModelSpec spec = random_model_preset("tiny-llama");
  spec.n_embd = 256;
  spec.tied = true;
  spec.preset = quantize::Preset::Q4_K_M;
  std::vector<RandomModelProgress> seen;
  const RandomModelSummary s =
      write_random_model(spec, dir.file("m.gguf"),
                         {.progress = [&](const RandomModelProgress& p) { seen.push_back(p); }});
  REQUIRE(seen.size() == s.n_tensors);
  for (size_t i = 0; i < seen.size(); ++i) CHECK(seen[i].done == i + 1);
  CHECK(seen.back().bytes_done == seen.back().bytes_total);
  CHECK(seen.back().bytes_total == s.n_bytes);
  const gguf::File f = gguf::File::open(dir.file("m.gguf"));
  uint64_t bytes = 0;
  for (const gguf::TensorInfo& t : f.tensors()) bytes += t.n_bytes;
  CHECK(bytes == s.n_bytes);
  CHECK(f.get_int("general.file_type") == 15);
  size_t counted = 0;
  for (const quantize::TypeCount& c : s.types) counted += c.tensors;
  CHECK(counted == s.n_tensors);
  CHECK(f.tensor("token_embd.weight").type == TT::Q6_K);  // tied: it is the output
}

TEST_CASE("tokenizer keys copied from another file", "[model][random]") {
  TempDir dir;
  gguf::Writer donor;
  donor.set_metadata("general.architecture", gguf::Value::string("llama"));
  donor.set_metadata("tokenizer.ggml.model", gguf::Value::string("gpt2"));
  std::vector<std::string> tokens;
  for (int i = 0; i < 96; ++i) tokens.push_back("t" + std::to_string(i));
  donor.set_metadata("tokenizer.ggml.tokens", gguf::Value::string_array(tokens));
  donor.set_metadata("tokenizer.ggml.bos_token_id", gguf::Value::uint32(1));
  donor.write(dir.file("donor.gguf"));

  RandomModelSpec spec = random_model_preset("tiny-deepseek2");
  spec.tokenizer_from = dir.file("donor.gguf");
  write_random_model(spec, dir.file("m.gguf"));
  const gguf::File f = gguf::File::open(dir.file("m.gguf"));
  CHECK(f.get_string("tokenizer.ggml.model") == "gpt2");
  CHECK(f.find("tokenizer.ggml.tokens")->array_size() == 96);
  CHECK(f.get_int("tokenizer.ggml.bos_token_id") == 1);
  CHECK(f.get_string("general.architecture") == "deepseek2");

  spec.n_vocab = 100;
  try {
    write_random_model(spec, dir.file("bad.gguf"));
    FAIL("expected a ktx::Error");
  } catch (const Error& e) {
    CHECK(e.code() == ErrorCode::kInvalidArgument);
    CHECK_THAT(e.what(), Catch::Contains("donor.gguf") && Catch::Contains("96 tokens") &&
                             Catch::Contains("n_vocab is 100"));
  }
}

TEST_CASE("refused: specs ktx would not load", "[model][random][errors]") {
  RandomModelSpec spec = random_model_preset("tiny-deepseek2");
  SECTION("more experts used than exist") {
    spec.n_expert_used = 9;
    require_refusal(spec, {"n_expert_used is 9", "n_expert (8)"});
  }
  SECTION("hidden size not divisible by the heads") {
    spec = random_model_preset("tiny-llama");
    spec.n_embd = 100;
    spec.n_head = 3;
    require_refusal(spec, {"n_embd 100", "not divisible by n_head 3"});
  }
  SECTION("kv heads do not divide the heads") {
    spec = random_model_preset("tiny-llama");
    spec.n_head_kv = 3;
    require_refusal(spec, {"n_head_kv 3", "n_head 4"});
  }
  SECTION("odd rope part") {
    spec.qk_rope = 7;
    require_refusal(spec, {"qk_rope is 7", "even"});
  }
  SECTION("dense layers past the model") {
    spec.n_layer_dense_lead = 5;
    require_refusal(spec, {"n_layer_dense_lead is 5", "n_layer (3)"});
  }
  SECTION("groups that do not divide the experts") {
    spec.n_group = 3;
    spec.n_group_used = 1;
    require_refusal(spec, {"n_group 3", "n_expert 8"});
  }
  SECTION("groups too few for top-k") {
    spec.n_group = 4;
    spec.n_group_used = 1;
    spec.n_expert_used = 3;
    require_refusal(spec, {"n_expert_used is 3", "1 of 4 groups"});
  }
  SECTION("no layers") {
    spec.n_layer = 0;
    require_refusal(spec, {"n_layer is 0"});
  }
  SECTION("unknown architecture") {
    spec.arch = "qwen2";
    require_refusal(spec, {"'qwen2'", "deepseek2 and llama"});
  }
  SECTION("a type ktx cannot write") {
    spec.weight_type = TT::IQ2_XXS;
    require_refusal(spec, {"weight_type IQ2_XXS"});
  }
  SECTION("a gating function that does not exist") {
    spec.gating = 3;
    require_refusal(spec, {"gating is 3"});
  }
  SECTION("unknown preset") {
    try {
      (void)random_model_preset("deepseek-v4");
      FAIL("expected a ktx::Error");
    } catch (const Error& e) {
      CHECK(e.code() == ErrorCode::kInvalidArgument);
      CHECK_THAT(e.what(), Catch::Contains("'deepseek-v4'") &&
                               Catch::Contains("deepseek-v2-lite") && Catch::Contains("llama"));
    }
  }
  SECTION("check off writes what the spec says") {
    spec.n_expert_used = 9;
    spec.check = false;
    CHECK_NOTHROW(random_model_tensors(spec));
  }
}

}  // namespace ktx::model
