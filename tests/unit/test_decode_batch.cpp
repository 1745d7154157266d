// One decode step of several sessions at once equals each session's own decode step: the same
// logits, and caches that go on the same way; every refused batch leaves every session as it was.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "gguf_test_helpers.h"
#include "ktx/error.h"
#include "runtime/model.h"
#include "runtime/session.h"

using ktx::Error;
using ktx::gguf::test::TempDir;
using ktx::runtime::Model;
using ktx::runtime::ModelOptions;
using ktx::runtime::Session;

namespace {

std::string golden(const std::string& name) {
  return std::string(KTX_SOURCE_DIR) + "/tests/data/golden/" + name + ".gguf";
}

std::shared_ptr<Model> load(const std::string& name, const std::string& rules = "") {
  ModelOptions o;
  o.n_threads = 2;
  if (!rules.empty()) {
    o.rules_path = rules;
    o.backend_paths = {KTX_REF_BACKEND};
  }
  return Model::load(golden(name), o);
}

std::vector<float> copy(std::span<const float> s) { return {s.begin(), s.end()}; }

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// Three sessions at different positions; each batch step must equal the sessions' own steps.
void check_batches_equal_single_steps(const std::shared_ptr<Model>& model) {
  const std::vector<std::vector<int32_t>> prompts = {{1, 17, 42}, {5}, {3, 60, 33, 8, 21, 9}};
  std::vector<Session> batched, single;
  for (const auto& p : prompts) {
    batched.emplace_back(model, 16);
    batched.back().eval(p);
    single.push_back(batched.back().fork());
  }
  std::vector<Session*> all;
  for (Session& s : batched) all.push_back(&s);
  const std::vector<std::vector<int32_t>> steps = {{7, 7, 40}, {12, 2, 63}, {0, 44, 5}};
  for (const std::vector<int32_t>& tokens : steps) {
    Session::decode_batch(all, tokens);
    for (size_t i = 0; i < all.size(); ++i) {
      INFO("session " << i);
      const std::vector<float> want = copy(single[i].eval({&tokens[i], 1}));
      CHECK(max_diff(copy(batched[i].logits()), want) < 2e-4f);
      CHECK(batched[i].tokens() == single[i].tokens());
    }
  }
  // Some sessions only: the others are untouched.
  const int32_t t = 11;
  Session::decode_batch(std::span(all).subspan(1, 1), std::span(&t, 1));
  CHECK(max_diff(copy(batched[1].logits()), copy(single[1].eval({&t, 1}))) < 2e-4f);
  CHECK(batched[0].position() == 6);
}

}  // namespace

TEST_CASE("a batched decode step equals each session's own step", "[session]") {
  for (const char* name : {"ds2_lite", "ds2_v3", "llama_gqa", "ds2_lite_q4_k"}) {
    INFO(name);
    check_batches_equal_single_steps(load(name));
  }
}

TEST_CASE("a batched decode step with the attention on an accelerator", "[session][backends]") {
  TempDir tmp;
  const std::string rules = tmp.file("split.yaml");
  std::ofstream(rules) << "- match: {kind: [moe_gate, experts]}\n"
                          "  replace: {device: cpu}\n"
                          "- match: {name: '.*'}\n"
                          "  replace: {device: 'ref:0'}\n";
  for (const char* name : {"ds2_lite", "llama_gqa"}) {
    INFO(name);
    check_batches_equal_single_steps(load(name, rules));
  }
}

TEST_CASE("a refused batch leaves every session as it was", "[session]") {
  auto model = load("ds2_lite");
  Session a(model, 8), b(model, 4), other(load("ds2_v3"), 8);
  a.eval(std::vector<int32_t>{1, 2});
  b.eval(std::vector<int32_t>{3, 4, 5, 6});  // full
  other.eval(std::vector<int32_t>{1});
  const std::vector<float> a_logits = copy(a.logits());
  auto refused = [&](std::vector<Session*> sessions, std::vector<int32_t> tokens,
                     const std::string& text) {
    CHECK_THROWS_WITH(Session::decode_batch(sessions, tokens), Catch::Contains(text));
    CHECK(a.position() == 2);
    CHECK(copy(a.logits()) == a_logits);
    CHECK(b.position() == 4);
  };
  refused({&a, &b}, {1}, "2 sessions but 1 tokens");
  refused({&a, nullptr}, {1, 2}, "session #1 is null");
  refused({&a, &a}, {1, 2}, "session #1 is session #0 again");
  refused({&a, &other}, {1, 2}, "session #1 is of another model");
  refused({&a, &b}, {1, 2}, "session #1: context full");
  refused({&b, &a}, {1, 64}, "session #0: context full");
  Session c(model, 8);
  refused({&a, &c}, {1, 64}, "session #1: token #0 is 64, outside the vocabulary");
  Session::decode_batch({}, {});  // nothing to do
}
