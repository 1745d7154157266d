// Quantization presets: the per-tensor types for DeepSeek-V2-Lite- and Llama-shaped models against
// hand-written tables (worked out from llama.cpp's rules by hand, not by calling ktx's helpers),
// and end to end: a tiny random model written, quantized, reopened and compared with the original.
#include <fmt/format.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/quantize.h"

namespace {

using ktx::TensorType;
using ktx::quantize::ModelInfo;
using ktx::quantize::Preset;
using ktx::quantize::TensorDesc;
using TT = ktx::TensorType;

std::map<std::string, TT> plan_map(const ModelInfo& model, const std::vector<TensorDesc>& tensors,
                                   Preset preset, bool pure = false) {
  std::map<std::string, TT> out;
  for (const auto& plan : ktx::quantize::plan_types(model, tensors, preset, {.pure = pure})) {
    out[plan.name] = plan.to;
  }
  return out;
}

// --- DeepSeek-V2-Lite: hidden 2048, 27 layers, 16 heads, 64 experts of 1408, 2 shared, first
// layer dense (ff 10944), kv_lora_rank 512, qk_nope 128 + rope 64, v 128, vocab 102400. ---------
constexpr int kLiteLayers = 27;

std::vector<TensorDesc> lite_tensors(bool split_kv_b = false, bool v3_bias = false) {
  std::vector<TensorDesc> t;
  auto add = [&](std::string name, std::vector<int64_t> shape) {
    t.push_back({std::move(name), TT::F32, std::move(shape)});
  };
  add("token_embd.weight", {2048, 102400});
  add("output_norm.weight", {2048});
  add("output.weight", {2048, 102400});
  for (int il = 0; il < kLiteLayers; ++il) {
    const std::string b = fmt::format("blk.{}.", il);
    add(b + "attn_norm.weight", {2048});
    add(b + "attn_q.weight", {2048, 16 * 192});
    add(b + "attn_kv_a_mqa.weight", {2048, 512 + 64});
    add(b + "attn_kv_a_norm.weight", {512});
    if (split_kv_b) {
      add(b + "attn_k_b.weight", {128, 512, 16});
      add(b + "attn_v_b.weight", {512, 128, 16});
    } else {
      add(b + "attn_kv_b.weight", {512, 16 * (128 + 128)});
    }
    add(b + "attn_output.weight", {16 * 128, 2048});
    add(b + "ffn_norm.weight", {2048});
    if (il == 0) {
      add(b + "ffn_gate.weight", {2048, 10944});
      add(b + "ffn_up.weight", {2048, 10944});
      add(b + "ffn_down.weight", {10944, 2048});
    } else {
      add(b + "ffn_gate_inp.weight", {2048, 64});
      if (v3_bias) add(b + "exp_probs_b.bias", {64});
      add(b + "ffn_gate_exps.weight", {2048, 1408, 64});
      add(b + "ffn_up_exps.weight", {2048, 1408, 64});
      add(b + "ffn_down_exps.weight", {1408, 2048, 64});
      add(b + "ffn_gate_shexp.weight", {2048, 2816});
      add(b + "ffn_up_shexp.weight", {2048, 2816});
      add(b + "ffn_down_shexp.weight", {2816, 2048});
    }
  }
  // Files list tensors in the converter's order; llama.cpp re-sorts them, so must ktx.
  std::reverse(t.begin(), t.end());
  return t;
}

ModelInfo lite_model() {
  return {.architecture = "deepseek2",
          .n_layer = kLiteLayers,
          .n_expert = 64,
          .n_head = 16,
          .n_head_kv = 16};
}

// use_more_bits(i, 27) worked out by hand: 27/8 = 3, 7*27/8 = 23, and (i - 3) % 3 == 2.
const std::set<int> kLiteMoreBits = {0, 1, 2, 5, 8, 11, 14, 17, 20, 23, 24, 25, 26};

// Expected type of one V2-Lite tensor kind in layer `il` for a preset: {more-bits, other} layers.
struct Row {
  const char* kind;
  TT more;
  TT other;
};

void check_lite_layers(const std::map<std::string, TT>& got, const std::vector<Row>& rows,
                       const std::set<int>& more_layers) {
  for (int il = 0; il < kLiteLayers; ++il) {
    for (const Row& r : rows) {
      const std::string name = fmt::format("blk.{}.{}.weight", il, r.kind);
      const auto it = got.find(name);
      if (it == got.end()) continue;  // dense-only or MoE-only kinds
      const TT want = more_layers.count(il) ? r.more : r.other;
      INFO(name << " got " << ktx::type_name(it->second) << " want " << ktx::type_name(want));
      CHECK(it->second == want);
    }
  }
}

}  // namespace

TEST_CASE("preset names and aliases and numbers; an unknown name lists the valid ones",
          "[quantize]") {
  using ktx::quantize::preset_from_name;
  CHECK(preset_from_name("Q4_K_M") == Preset::Q4_K_M);
  CHECK(preset_from_name("q4_k_m") == Preset::Q4_K_M);
  CHECK(preset_from_name("Q4_K") == Preset::Q4_K_M);
  CHECK(preset_from_name("Q5_K") == Preset::Q5_K_M);
  CHECK(preset_from_name("q8_0") == Preset::Q8_0);
  CHECK(preset_from_name("15") == Preset::Q4_K_M);
  CHECK(preset_from_name("7") == Preset::Q8_0);
  CHECK_FALSE(preset_from_name("1").has_value());  // F16 is not offered
  CHECK_FALSE(preset_from_name("Q4_K_X").has_value());
  CHECK_FALSE(preset_from_name("").has_value());
  // llama.cpp's LLAMA_FTYPE_MOSTLY_* numbers, written into general.file_type.
  CHECK(static_cast<uint32_t>(Preset::Q4_0) == 2);
  CHECK(static_cast<uint32_t>(Preset::Q8_0) == 7);
  CHECK(static_cast<uint32_t>(Preset::Q4_K_M) == 15);
  CHECK(static_cast<uint32_t>(Preset::Q5_K_M) == 17);
  CHECK(static_cast<uint32_t>(Preset::Q6_K) == 18);

  try {
    ktx::quantize::parse_preset("Q4_K_X");
    FAIL("expected an error");
  } catch (const ktx::Error& e) {
    CHECK(e.code() == ktx::ErrorCode::kInvalidArgument);
    const std::string msg = e.what();
    CHECK(msg.find("Q4_K_X") != std::string::npos);
    for (const auto& info : ktx::quantize::presets()) {
      CHECK(msg.find(info.name) != std::string::npos);
    }
  }
}

TEST_CASE("DeepSeek-V2-Lite Q4_K_M types match llama.cpp's", "[quantize]") {
  const auto got = plan_map(lite_model(), lite_tensors(), Preset::Q4_K_M);
  CHECK(got.at("token_embd.weight") == TT::Q4_K);
  CHECK(got.at("output.weight") == TT::Q6_K);
  CHECK(got.at("output_norm.weight") == TT::F32);
  check_lite_layers(got,
                    {
                        {"attn_norm", TT::F32, TT::F32},
                        {"attn_kv_a_norm", TT::F32, TT::F32},
                        {"ffn_norm", TT::F32, TT::F32},
                        {"ffn_gate_inp", TT::F32, TT::F32},  // the router stays as stored
                        {"attn_q", TT::Q4_K, TT::Q4_K},
                        {"attn_kv_a_mqa", TT::Q4_K, TT::Q4_K},
                        {"attn_kv_b", TT::Q6_K, TT::Q4_K},  // counted as attn_v
                        {"attn_output", TT::Q4_K, TT::Q4_K},
                        {"ffn_gate", TT::Q4_K, TT::Q4_K},
                        {"ffn_up", TT::Q4_K, TT::Q4_K},
                        {"ffn_down", TT::Q8_0, TT::Q8_0},  // 10944 % 256 != 0: Q6_K -> Q8_0
                        {"ffn_gate_exps", TT::Q4_K, TT::Q4_K},
                        {"ffn_up_exps", TT::Q4_K, TT::Q4_K},
                        {"ffn_down_exps", TT::Q8_0, TT::Q5_0},  // 1408: Q6_K->Q8_0, Q4_K->Q5_0
                        {"ffn_gate_shexp", TT::Q4_K, TT::Q4_K},
                        {"ffn_up_shexp", TT::Q4_K, TT::Q4_K},
                        {"ffn_down_shexp", TT::Q6_K, TT::Q4_K},  // 2816 = 11 * 256 fits
                    },
                    kLiteMoreBits);

  // The types REFERENCE.md lists for a real Lite Q4_K_M file, and no others.
  std::set<TT> types;
  for (const auto& [name, type] : got) types.insert(type);
  CHECK(types == std::set<TT>{TT::F32, TT::Q4_K, TT::Q5_0, TT::Q6_K, TT::Q8_0});

  // Processing order: tensors outside blocks first (by name), then by layer number, not text.
  const auto plans = ktx::quantize::plan_types(lite_model(), lite_tensors(), Preset::Q4_K_M);
  CHECK(plans.front().name == "output.weight");
  CHECK(plans[1].name == "output_norm.weight");
  CHECK(plans[2].name == "token_embd.weight");
  CHECK(plans[3].name.rfind("blk.0.", 0) == 0);
  CHECK(plans.back().name.rfind("blk.26.", 0) == 0);
  for (const auto& p : plans) {
    if (p.name == "blk.3.ffn_down_exps.weight") {
      CHECK(p.fallback);
      CHECK(p.why.find("1408") != std::string::npos);
    }
  }
}

TEST_CASE("DeepSeek-V2-Lite with the other presets", "[quantize]") {
  const auto all = std::set<int>{};
  SECTION("Q8_0: everything Q8_0 but norms and the router") {
    const auto got = plan_map(lite_model(), lite_tensors(false, true), Preset::Q8_0);
    for (const auto& [name, type] : got) {
      const bool kept = name.find("norm") != std::string::npos ||
                        name.find("ffn_gate_inp") != std::string::npos ||
                        name.find("exp_probs_b") != std::string::npos;
      INFO(name);
      CHECK(type == (kept ? TT::F32 : TT::Q8_0));
    }
    CHECK(got.at("blk.5.exp_probs_b.bias") == TT::F32);
  }
  SECTION("Q5_K_M") {
    const auto got = plan_map(lite_model(), lite_tensors(), Preset::Q5_K_M);
    CHECK(got.at("token_embd.weight") == TT::Q5_K);
    CHECK(got.at("output.weight") == TT::Q6_K);
    check_lite_layers(got,
                      {{"attn_q", TT::Q5_K, TT::Q5_K},
                       {"attn_kv_b", TT::Q6_K, TT::Q5_K},
                       {"ffn_down", TT::Q8_0, TT::Q8_0},
                       {"ffn_down_exps", TT::Q8_0, TT::Q5_1},  // Q5_K -> Q5_1 for 1408
                       {"ffn_down_shexp", TT::Q6_K, TT::Q5_K},
                       {"ffn_up_exps", TT::Q5_K, TT::Q5_K}},
                      kLiteMoreBits);
  }
  SECTION("Q4_K_S: the first four attn_v-like and the first eighth of ffn_down get Q5_K") {
    const auto got = plan_map(lite_model(), lite_tensors(), Preset::Q4_K_S);
    check_lite_layers(got, {{"attn_kv_b", TT::Q5_K, TT::Q4_K}}, {0, 1, 2, 3});
    // 27 / 8 = 3 layers; 10944 and 1408 rows fall back (Q5_K -> Q5_1, Q4_K -> Q5_0).
    check_lite_layers(got,
                      {{"ffn_down", TT::Q5_1, TT::Q5_0},
                       {"ffn_down_exps", TT::Q5_1, TT::Q5_0},
                       {"ffn_down_shexp", TT::Q5_K, TT::Q4_K}},
                      {0, 1, 2});
    CHECK(got.at("output.weight") == TT::Q6_K);
  }
  SECTION("Q6_K and Q4_0") {
    const auto q6 = plan_map(lite_model(), lite_tensors(), Preset::Q6_K);
    check_lite_layers(q6,
                      {{"attn_kv_b", TT::Q6_K, TT::Q6_K},
                       {"ffn_down_exps", TT::Q8_0, TT::Q8_0},
                       {"ffn_down", TT::Q8_0, TT::Q8_0}},
                      all);
    CHECK(q6.at("output.weight") == TT::Q6_K);
    const auto q4 = plan_map(lite_model(), lite_tensors(), Preset::Q4_0);
    check_lite_layers(
        q4, {{"attn_kv_b", TT::Q4_0, TT::Q4_0}, {"ffn_down_exps", TT::Q4_0, TT::Q4_0}}, all);
    CHECK(q4.at("output.weight") == TT::Q6_K);  // llama.cpp gives a Q4_0 file a Q6_K output
    CHECK(q4.at("token_embd.weight") == TT::Q4_0);
  }
  SECTION("newer MLA files: attn_k_b / attn_v_b are ordinary tensors") {
    const auto got = plan_map(lite_model(), lite_tensors(true), Preset::Q4_K_M);
    check_lite_layers(got,
                      {{"attn_k_b", TT::Q5_0, TT::Q5_0},  // 128-wide rows: Q4_K -> Q5_0
                       {"attn_v_b", TT::Q4_K, TT::Q4_K}},
                      all);
  }
  SECTION("pure: the base type everywhere, shape fallbacks kept") {
    const auto got = plan_map(lite_model(), lite_tensors(), Preset::Q4_K_M, /*pure=*/true);
    CHECK(got.at("output.weight") == TT::Q4_K);
    check_lite_layers(got,
                      {{"attn_kv_b", TT::Q4_K, TT::Q4_K},
                       {"ffn_down_exps", TT::Q5_0, TT::Q5_0},
                       {"ffn_down", TT::Q5_0, TT::Q5_0},
                       {"attn_norm", TT::F32, TT::F32}},
                      all);
  }
}

namespace {

// Llama-3-8B: 32 layers, hidden 4096, 32 heads / 8 KV heads, ff 14336, vocab 128256.
std::vector<TensorDesc> llama_tensors(int n_layer, int64_t embd, int64_t kv, int64_t ff, bool tied,
                                      int n_expert = 0) {
  std::vector<TensorDesc> t;
  auto add = [&](std::string name, std::vector<int64_t> shape, TT type = TT::F16) {
    t.push_back({std::move(name), type, std::move(shape)});
  };
  add("token_embd.weight", {embd, 128256});
  add("output_norm.weight", {embd}, TT::F32);
  if (!tied) add("output.weight", {embd, 128256});
  add("rope_freqs.weight", {64}, TT::F32);
  for (int il = n_layer - 1; il >= 0; --il) {  // deliberately out of order
    const std::string b = fmt::format("blk.{}.", il);
    add(b + "attn_norm.weight", {embd}, TT::F32);
    add(b + "attn_q.weight", {embd, embd});
    add(b + "attn_k.weight", {embd, kv});
    add(b + "attn_v.weight", {embd, kv});
    add(b + "attn_output.weight", {embd, embd});
    add(b + "ffn_norm.weight", {embd}, TT::F32);
    if (n_expert > 0) {
      add(b + "ffn_gate_inp.weight", {embd, n_expert}, TT::F32);
      add(b + "ffn_gate_exps.weight", {embd, ff, n_expert});
      add(b + "ffn_up_exps.weight", {embd, ff, n_expert});
      add(b + "ffn_down_exps.weight", {ff, embd, n_expert});
    } else {
      add(b + "ffn_gate.weight", {embd, ff});
      add(b + "ffn_up.weight", {embd, ff});
      add(b + "ffn_down.weight", {ff, embd});
    }
  }
  return t;
}

// use_more_bits(i, 32) by hand: 32/8 = 4, 7*32/8 = 28, (i - 4) % 3 == 2.
const std::set<int> kLlama32MoreBits = {0, 1, 2, 3, 6, 9, 12, 15, 18, 21, 24, 27, 28, 29, 30, 31};

void check_llama_layers(const std::map<std::string, TT>& got, int n_layer, const char* kind,
                        const std::set<int>& more, TT more_type, TT other_type) {
  for (int il = 0; il < n_layer; ++il) {
    const std::string name = fmt::format("blk.{}.{}.weight", il, kind);
    INFO(name);
    CHECK(got.at(name) == (more.count(il) ? more_type : other_type));
  }
}

}  // namespace

TEST_CASE("Llama-shaped models with Q4_K_M", "[quantize]") {
  SECTION("Llama-3-8B") {
    const ModelInfo model{.architecture = "llama", .n_layer = 32, .n_head = 32, .n_head_kv = 8};
    const auto got = plan_map(model, llama_tensors(32, 4096, 1024, 14336, false), Preset::Q4_K_M);
    CHECK(got.at("token_embd.weight") == TT::Q4_K);
    CHECK(got.at("output.weight") == TT::Q6_K);
    CHECK(got.at("rope_freqs.weight") == TT::F32);
    check_llama_layers(got, 32, "attn_v", kLlama32MoreBits, TT::Q6_K, TT::Q4_K);
    check_llama_layers(got, 32, "ffn_down", kLlama32MoreBits, TT::Q6_K, TT::Q4_K);
    check_llama_layers(got, 32, "attn_k", {}, TT::Q4_K, TT::Q4_K);
    check_llama_layers(got, 32, "attn_norm", {}, TT::F32, TT::F32);
  }
  SECTION("tied embeddings: token_embd is the output projection and gets Q6_K") {
    const ModelInfo model{.architecture = "llama", .n_layer = 16, .n_head = 32, .n_head_kv = 8};
    const auto got = plan_map(model, llama_tensors(16, 2048, 512, 8192, true), Preset::Q4_K_M);
    CHECK(got.at("token_embd.weight") == TT::Q6_K);
    // use_more_bits(i, 16): 16/8 = 2, 7*16/8 = 14, (i - 2) % 3 == 2.
    check_llama_layers(got, 16, "attn_v", {0, 1, 4, 7, 10, 13, 14, 15}, TT::Q6_K, TT::Q4_K);
    const auto q8 = plan_map(model, llama_tensors(16, 2048, 512, 8192, true), Preset::Q8_0);
    CHECK(q8.at("token_embd.weight") == TT::Q8_0);
  }
  SECTION("Llama-2-70B: attn_v at 4 bits becomes Q5_K") {
    const ModelInfo model{.architecture = "llama", .n_layer = 80, .n_head = 64, .n_head_kv = 8};
    const auto got = plan_map(model, llama_tensors(80, 8192, 1024, 28672, false), Preset::Q4_K_M);
    // use_more_bits(i, 80): 80/8 = 10, 7*80/8 = 70, (i - 10) % 3 == 2.
    std::set<int> more;
    for (int i = 0; i < 10; ++i) more.insert(i);
    for (int i = 12; i < 70; i += 3) more.insert(i);
    for (int i = 70; i < 80; ++i) more.insert(i);
    check_llama_layers(got, 80, "attn_v", more, TT::Q6_K, TT::Q5_K);
    check_llama_layers(got, 80, "ffn_down", more, TT::Q6_K, TT::Q4_K);
  }
  SECTION("Mixtral (llama arch, 8 experts): attention at Q8_0 / Q5_K, layers read from names") {
    const ModelInfo model{
        .architecture = "llama", .n_layer = 32, .n_expert = 8, .n_head = 32, .n_head_kv = 8};
    const auto got =
        plan_map(model, llama_tensors(32, 4096, 1024, 14336, false, 8), Preset::Q4_K_M);
    check_llama_layers(got, 32, "attn_v", {}, TT::Q8_0, TT::Q8_0);
    check_llama_layers(got, 32, "attn_k", {}, TT::Q8_0, TT::Q8_0);
    check_llama_layers(got, 32, "attn_output", {}, TT::Q5_K, TT::Q5_K);
    check_llama_layers(got, 32, "ffn_down_exps", kLlama32MoreBits, TT::Q6_K, TT::Q4_K);
    check_llama_layers(got, 32, "ffn_gate_inp", {}, TT::F32, TT::F32);
  }
}

TEST_CASE("shapes llama.cpp refuses or stores as F16", "[quantize]") {
  const ModelInfo dense{.architecture = "llama", .n_layer = 1};
  SECTION("Q8_0 has no substitute: a 100-wide row is refused, naming the tensor") {
    const std::vector<TensorDesc> t = {{"blk.0.attn_q.weight", TT::F32, {100, 64}}};
    try {
      ktx::quantize::plan_types(dense, t, Preset::Q8_0);
      FAIL("expected an error");
    } catch (const ktx::Error& e) {
      CHECK(e.code() == ktx::ErrorCode::kUnsupported);
      CHECK(std::string(e.what()).find("blk.0.attn_q.weight") != std::string::npos);
    }
  }
  SECTION("a 48-wide row fits neither Q4_K nor Q5_0: F16") {
    const std::vector<TensorDesc> t = {{"blk.0.attn_q.weight", TT::F32, {48, 64}}};
    const auto plans = ktx::quantize::plan_types(dense, t, Preset::Q4_K_M);
    CHECK(plans[0].to == TT::F16);
    CHECK(plans[0].fallback);
  }
  SECTION("[N, 1] counts as 1-D and is kept") {
    const std::vector<TensorDesc> t = {{"blk.0.attn_q.weight", TT::F16, {256, 1}}};
    CHECK(ktx::quantize::plan_types(dense, t, Preset::Q4_K_M)[0].to == TT::F16);
  }
  SECTION("a MoE FFN tensor outside blk.N is refused, as llama.cpp does") {
    const ModelInfo moe{.architecture = "deepseek2", .n_layer = 2, .n_expert = 4};
    const std::vector<TensorDesc> t = {{"mtp.ffn_down_exps.weight", TT::F32, {256, 256, 4}}};
    CHECK_THROWS_AS(ktx::quantize::plan_types(moe, t, Preset::Q4_K_M), ktx::Error);
    const std::vector<TensorDesc> t2 = {{"blk.2.ffn_down_exps.weight", TT::F32, {256, 256, 4}}};
    CHECK_THROWS_AS(ktx::quantize::plan_types(moe, t2, Preset::Q4_K_M), ktx::Error);
  }
}

// --- end to end ----------------------------------------------------------------------------------

namespace {

namespace fs = std::filesystem;

struct TempDir {
  fs::path path;
  TempDir() {
    std::random_device rd;
    path = fs::temp_directory_path() / fmt::format("ktx-quantize-test-{:08x}{:08x}", rd(), rd());
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

struct Original {
  std::vector<int64_t> shape;
  std::vector<float> values;  // what the stored bytes decode to
};

// A tiny deepseek2-shaped model: 2 layers, hidden 256, 4 experts of width 96 (not a multiple of
// 256, so ffn_down_exps falls back), a dense first layer, an F16 tensor and a Q8_0 tensor among
// the sources.
std::map<std::string, Original> write_tiny_model(const std::string& path, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  ktx::gguf::Writer w;
  w.set_metadata("general.architecture", ktx::gguf::Value::string("deepseek2"));
  w.set_metadata("general.name", ktx::gguf::Value::string("tiny"));
  w.set_metadata("general.file_type", ktx::gguf::Value::uint32(0));
  w.set_metadata("deepseek2.block_count", ktx::gguf::Value::uint32(2));
  w.set_metadata("deepseek2.expert_count", ktx::gguf::Value::uint32(4));
  w.set_metadata("deepseek2.attention.head_count", ktx::gguf::Value::uint32(2));

  std::map<std::string, Original> originals;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, TT type = TT::F32) {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    std::vector<float> v(static_cast<size_t>(n));
    for (float& x : v) x = normal(rng) * 0.05f;
    std::vector<uint8_t> bytes;
    const int64_t row = shape[0];
    bytes.resize(ktx::row_size(type, row) * static_cast<size_t>(n / row));
    for (int64_t r = 0; r < n / row; ++r) {
      ktx::quant::quantize_row(type, v.data() + r * row,
                               bytes.data() + r * ktx::row_size(type, row), row);
    }
    // The original is what the stored bytes mean, so F16 / Q8_0 rounding is not counted as error.
    for (int64_t r = 0; r < n / row; ++r) {
      ktx::quant::dequantize_row(type, bytes.data() + r * ktx::row_size(type, row),
                                 v.data() + r * row, row);
    }
    originals[name] = {shape, v};
    w.add_tensor(name, type, shape, bytes.data(), bytes.size());
  };
  add("token_embd.weight", {256, 64});
  add("output_norm.weight", {256});
  add("output.weight", {256, 64});
  for (int il = 0; il < 2; ++il) {
    const std::string b = fmt::format("blk.{}.", il);
    add(b + "attn_norm.weight", {256});
    add(b + "attn_q.weight", {256, 96});
    add(b + "attn_kv_a_mqa.weight", {256, 96});
    add(b + "attn_kv_a_norm.weight", {64});
    add(b + "attn_kv_b.weight", {64, 128});  // 64-wide rows: fallback
    add(b + "attn_output.weight", {256, 256}, il == 0 ? TT::F16 : TT::Q8_0);
    add(b + "ffn_norm.weight", {256});
    if (il == 0) {
      add(b + "ffn_gate.weight", {256, 512});
      add(b + "ffn_up.weight", {256, 512});
      add(b + "ffn_down.weight", {512, 256});
    } else {
      add(b + "ffn_gate_inp.weight", {256, 4});
      add(b + "exp_probs_b.bias", {4});
      add(b + "ffn_gate_exps.weight", {256, 96, 4});
      add(b + "ffn_up_exps.weight", {256, 96, 4});
      add(b + "ffn_down_exps.weight", {96, 256, 4});
      add(b + "ffn_gate_shexp.weight", {256, 96});
      add(b + "ffn_up_shexp.weight", {256, 96});
      add(b + "ffn_down_shexp.weight", {96, 256});
    }
  }
  w.write(path);
  return originals;
}

// Normalized RMS error a type may show on Gaussian data (measured levels are about half these).
double error_bound(TT type) {
  switch (type) {
    case TT::F32:
      return 0.0;
    case TT::F16:
      return 1e-3;
    case TT::Q8_0:
      return 0.01;
    case TT::Q6_K:
      return 0.03;
    case TT::Q5_0:
    case TT::Q5_1:
    case TT::Q5_K:
      return 0.06;
    default:
      return 0.12;  // 4-bit types
  }
}

}  // namespace

TEST_CASE("quantize_model end to end: Q8_0 and Q4_K_M", "[quantize]") {
  TempDir dir;
  const std::string in = (dir.path / "tiny-f32.gguf").string();
  const uint32_t seed = std::random_device{}();
  CAPTURE(seed);
  const auto originals = write_tiny_model(in, seed);

  for (Preset preset : {Preset::Q8_0, Preset::Q4_K_M}) {
    const auto& info = ktx::quantize::preset_info(preset);
    SECTION(std::string(info.name)) {
      const std::string out = (dir.path / fmt::format("tiny-{}.gguf", info.name)).string();
      ktx::quantize::Options options;
      options.threads = 3;
      options.memory_limit = preset == Preset::Q8_0 ? 0 : uint64_t{1} << 30;  // both stagings
      size_t tensor_events = 0;
      std::vector<std::string> warnings;
      options.progress = [&](const ktx::quantize::Progress& p) {
        if (p.kind == ktx::quantize::Progress::Kind::kTensor) {
          ++tensor_events;
          CHECK(p.done == tensor_events);
          CHECK(p.tensor != nullptr);
        } else {
          warnings.emplace_back(p.message);
        }
      };
      const auto summary = ktx::quantize::quantize_model(in, out, preset, options);
      CHECK(tensor_events == originals.size());
      CHECK(summary.n_tensors == originals.size());
      // blk.1.attn_output is stored as Q8_0: copied by the Q8_0 preset, converted (with a
      // warning) by Q4_K_M.
      const bool requantizes = preset != Preset::Q8_0;
      CHECK(summary.n_requantized == (requantizes ? 1u : 0u));
      bool warned_requantize = false;
      for (const auto& w : warnings) {
        warned_requantize |= w.find("blk.1.attn_output.weight") != std::string::npos;
      }
      CHECK(warned_requantize == requantizes);
      CHECK_FALSE(ktx::quantize::format_summary(summary).empty());

      // The plan, from the same rules, is the reference for the stored types.
      const ktx::gguf::File file = ktx::gguf::File::open(out);
      CHECK(file.get_int("general.file_type") == static_cast<int64_t>(preset));
      CHECK(file.find("general.file_type")->type() == ktx::gguf::ValueType::UINT32);
      CHECK(file.get_int("general.quantization_version") == 2);
      CHECK(file.find("general.quantization_version")->type() == ktx::gguf::ValueType::UINT32);
      CHECK(file.get_string("general.name") == "tiny");
      CHECK(file.tensors().size() == originals.size());

      std::map<std::string, TT> want;
      if (preset == Preset::Q8_0) {
        for (const auto& [name, o] : originals) {
          want[name] = o.shape.size() == 1 || name.find("ffn_gate_inp") != std::string::npos
                           ? TT::F32
                           : TT::Q8_0;
        }
      } else {
        // Two layers, by hand: use_more_bits(i, 2) has 2/8 = 0 and 7*2/8 = 1, so it holds for
        // layer 1 only (layer 0: 0 < 0 no, 0 >= 1 no, 0 % 3 == 2 no). The same for attn_kv_b
        // #0 and #1 of 2.
        want = {
            {"token_embd.weight", TT::Q4_K},
            {"output.weight", TT::Q6_K},
            {"output_norm.weight", TT::F32},
            {"blk.0.attn_norm.weight", TT::F32},
            {"blk.0.attn_q.weight", TT::Q4_K},
            {"blk.0.attn_kv_a_mqa.weight", TT::Q4_K},
            {"blk.0.attn_kv_a_norm.weight", TT::F32},
            {"blk.0.attn_kv_b.weight", TT::Q5_0},  // Q4_K, 64-wide -> Q5_0
            {"blk.0.attn_output.weight", TT::Q4_K},
            {"blk.0.ffn_norm.weight", TT::F32},
            {"blk.0.ffn_gate.weight", TT::Q4_K},
            {"blk.0.ffn_up.weight", TT::Q4_K},
            {"blk.0.ffn_down.weight", TT::Q4_K},
            {"blk.1.attn_norm.weight", TT::F32},
            {"blk.1.attn_q.weight", TT::Q4_K},
            {"blk.1.attn_kv_a_mqa.weight", TT::Q4_K},
            {"blk.1.attn_kv_a_norm.weight", TT::F32},
            {"blk.1.attn_kv_b.weight", TT::Q8_0},  // Q6_K, 64-wide -> Q8_0
            {"blk.1.attn_output.weight", TT::Q4_K},
            {"blk.1.ffn_norm.weight", TT::F32},
            {"blk.1.ffn_gate_inp.weight", TT::F32},
            {"blk.1.exp_probs_b.bias", TT::F32},
            {"blk.1.ffn_gate_exps.weight", TT::Q4_K},
            {"blk.1.ffn_up_exps.weight", TT::Q4_K},
            {"blk.1.ffn_down_exps.weight", TT::Q8_0},  // Q6_K, 96-wide -> Q8_0
            {"blk.1.ffn_gate_shexp.weight", TT::Q4_K},
            {"blk.1.ffn_up_shexp.weight", TT::Q4_K},
            {"blk.1.ffn_down_shexp.weight", TT::Q8_0},
        };
      }

      for (const auto& t : file.tensors()) {
        INFO(t.name << " stored as " << ktx::type_name(t.type));
        REQUIRE(originals.count(t.name) == 1);
        const Original& o = originals.at(t.name);
        CHECK(t.shape == o.shape);
        CHECK(t.type == want.at(t.name));
        const int64_t row = t.shape[0];
        std::vector<float> got(o.values.size());
        for (int64_t r = 0; r < t.rows(); ++r) {
          ktx::quant::dequantize_row(t.type, t.data + r * ktx::row_size(t.type, row),
                                     got.data() + r * row, row);
        }
        double err = 0, ref = 0;
        for (size_t i = 0; i < got.size(); ++i) {
          err += (got[i] - o.values[i]) * double(got[i] - o.values[i]);
          ref += double(o.values[i]) * o.values[i];
        }
        const double nrmse = std::sqrt(err / ref);
        INFO("normalized RMS error " << nrmse);
        CHECK(nrmse <= error_bound(t.type));
        if (t.type == TT::F32) CHECK(nrmse == 0.0);
      }
    }
  }
}

TEST_CASE("quantize_model refuses to overwrite its input", "[quantize]") {
  TempDir dir;
  const std::string in = (dir.path / "tiny.gguf").string();
  write_tiny_model(in, 7);
  const auto before = fs::file_size(in);
  for (const std::string& out : {in, (dir.path / "." / "tiny.gguf").string()}) {
    try {
      ktx::quantize::quantize_model(in, out, Preset::Q8_0);
      FAIL("expected an error");
    } catch (const ktx::Error& e) {
      CHECK(e.code() == ktx::ErrorCode::kInvalidArgument);
    }
  }
  CHECK(fs::file_size(in) == before);
}

TEST_CASE("quantize_model copies a tensor already in its target type byte for byte", "[quantize]") {
  TempDir dir;
  const std::string in = (dir.path / "tiny.gguf").string();
  write_tiny_model(in, 11);
  const std::string out = (dir.path / "q8.gguf").string();
  ktx::quantize::quantize_model(in, out, Preset::Q8_0);
  const auto a = ktx::gguf::File::open(in);
  const auto b = ktx::gguf::File::open(out);
  const auto& src = a.tensor("blk.1.attn_output.weight");
  const auto& dst = b.tensor("blk.1.attn_output.weight");
  REQUIRE(src.type == TT::Q8_0);
  REQUIRE(dst.type == TT::Q8_0);
  REQUIRE(src.n_bytes == dst.n_bytes);
  CHECK(std::memcmp(src.data, dst.data, src.n_bytes) == 0);
}
