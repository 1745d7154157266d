// Sessions over the golden models: decoding token by token (absorbed MLA over the latent cache)
// equals one prefill batch; rewind, reset, context limits, bad tokens, and sessions on several
// threads at once.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "ktx/error.h"
#include "model_test_files.h"
#include "runtime/model.h"
#include "runtime/session.h"

using ktx::runtime::Model;
using ktx::runtime::ModelOptions;
using ktx::runtime::Session;

namespace {

std::string golden(const std::string& name) {
  return std::string(KTX_SOURCE_DIR) + "/tests/data/golden/" + name + ".gguf";
}

const std::vector<int32_t> kTokens = {1, 17, 42, 60, 5, 17, 33};

std::shared_ptr<Model> load(const std::string& name, int threads = 2) {
  ModelOptions o;
  o.n_threads = threads;
  return Model::load(golden(name), o);
}

float max_diff(std::span<const float> a, std::span<const float> b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

}  // namespace

TEST_CASE("decode step by step equals one prefill batch", "[session]") {
  for (const char* name : {"ds2_lite", "ds2_v2", "ds2_v3", "ds2_lite_yarn", "ds2_lite_mla",
                           "llama_gqa", "ds2_lite_q4_k"}) {
    INFO(name);
    auto model = load(name);
    const int64_t n_vocab = model->config().n_vocab;
    Session batch(model, 16);
    const std::vector<float> all = batch.eval_all(kTokens);
    Session steps(model, 16);
    for (size_t i = 0; i < kTokens.size(); ++i) {
      auto logits = steps.eval({&kTokens[i], 1});
      const std::span<const float> want(all.data() + i * static_cast<size_t>(n_vocab),
                                        static_cast<size_t>(n_vocab));
      CHECK(max_diff(logits, want) < 2e-4f);
    }
    CHECK(steps.position() == static_cast<int64_t>(kTokens.size()));
  }
}

TEST_CASE("rewind and reset replay exactly", "[session]") {
  auto model = load("ds2_v3");
  Session s(model, 16);
  s.eval(kTokens);
  const std::vector<float> final_logits(s.logits().begin(), s.logits().end());
  s.rewind(3);
  CHECK(s.position() == 3);
  CHECK(s.logits().empty());
  s.eval(std::span(kTokens).subspan(3));
  CHECK(max_diff(s.logits(), final_logits) < 1e-5f);
  s.reset();
  CHECK(s.position() == 0);
  s.eval(kTokens);
  CHECK(max_diff(s.logits(), final_logits) < 1e-5f);
  CHECK_THROWS_AS(s.rewind(8), ktx::Error);
  CHECK_THROWS_AS(s.rewind(-1), ktx::Error);
}

TEST_CASE("the context limit and token ids are enforced, leaving the session unchanged",
          "[session]") {
  auto model = load("ds2_lite");
  Session s(model, 5);
  s.eval(std::span(kTokens).first(4));
  try {
    s.eval(std::span(kTokens).subspan(4, 2));
    FAIL("context overflow accepted");
  } catch (const ktx::Error& e) {
    CHECK(e.code() == ktx::ErrorCode::kInvalidArgument);
    CHECK_THAT(e.what(), Catch::Contains("context"));
  }
  CHECK(s.position() == 4);
  const int32_t bad[] = {static_cast<int32_t>(model->config().n_vocab)};
  CHECK_THROWS_WITH(s.eval(bad), Catch::Contains("outside the vocabulary"));
  CHECK(s.position() == 4);
  s.eval(std::span(kTokens).subspan(4, 1));
  CHECK(s.position() == 5);
}

TEST_CASE("the KV cache holds only the MLA latent and the rotary key", "[session]") {
  auto model = load("ds2_lite");
  const auto& c = model->config();
  Session s(model, 8);
  CHECK(s.kv_bytes_per_token() ==
        static_cast<uint64_t>(c.n_layer * (c.kv_lora_rank + c.qk_rope_head_dim)) * sizeof(float));
}

TEST_CASE("sessions on different threads share one model safely", "[session]") {
  auto model = load("ds2_v2", 2);
  Session reference(model, 16);
  reference.eval(kTokens);
  const std::vector<float> want(reference.logits().begin(), reference.logits().end());
  std::vector<std::vector<float>> results(4);
  std::vector<std::thread> threads;
  for (size_t t = 0; t < results.size(); ++t) {
    threads.emplace_back([&, t] {
      Session s(model, 16);
      for (int32_t tok : kTokens) s.eval({&tok, 1});
      results[t].assign(s.logits().begin(), s.logits().end());
    });
  }
  for (auto& th : threads) th.join();
  for (const auto& r : results) CHECK(max_diff(r, want) < 2e-4f);
}

TEST_CASE("a context whose cache size overflows is refused, not wrapped", "[session]") {
  auto model = load("ds2_lite");
  // 2^59 positions × (kv_lora + rope) floats wraps a 64-bit byte count into a small cache.
  for (int64_t n_ctx : {int64_t{1} << 59, std::numeric_limits<int64_t>::max()}) {
    INFO(n_ctx);
    try {
      Session s(model, n_ctx);
      FAIL("accepted");
    } catch (const ktx::Error& e) {
      CHECK(e.code() == ktx::ErrorCode::kOutOfMemory);
      CHECK_THAT(e.what(), Catch::Contains(std::to_string(n_ctx) + " positions"));
    }
  }
}

TEST_CASE("tensors the model does not read are named in a warning", "[session]") {
  ktx::model::test::TempDir dir;
  ktx::model::test::TinyModelSpec spec;
  // The shared experts' tensors stay; the key that says they exist goes.
  spec.drop_keys = {"deepseek2.expert_shared_count"};
  const std::string path = dir.file("no_shared.gguf");
  ktx::model::test::write_tiny_model(spec, path);
  auto model = Model::load(path, {});
  REQUIRE(model->warnings().size() == 1);
  const std::string& w = model->warnings()[0];
  CHECK_THAT(w, Catch::StartsWith(path) && Catch::Contains("not read by the model") &&
                    Catch::Contains("blk.1.ffn_gate_shexp.weight") && Catch::Contains(", …)"));
  // The golden file has none.
  CHECK(load("ds2_lite")->warnings().empty());
}
