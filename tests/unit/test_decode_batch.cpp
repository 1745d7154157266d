// One decode step of several sessions at once equals each session's own decode step: the same
// logits, and caches that go on the same way; every refused batch leaves every session as it was.
#include <catch2/catch.hpp>
#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include "gguf_test_helpers.h"
#include "golden_sessions.h"
#include "ktx/error.h"
#include "runtime/model.h"
#include "runtime/session.h"

using ktx::gguf::test::TempDir;
using ktx::runtime::Model;
using ktx::runtime::Session;
using ktx::test::copy;
using ktx::test::load_golden;
using ktx::test::max_diff;

namespace {

// B sessions at different positions; each batch step must give every session the logits of its
// own step: bit for bit (the batch kernels compute each token as the one-token kernels do), or
// within `tolerance` where oneDNN multiplies F32 weights (batches of 8 or more).
void check_batches_equal_single_steps(const std::shared_ptr<Model>& model, size_t n_sessions,
                                      float tolerance = 0.0f) {
  INFO(n_sessions << " sessions");
  const int32_t n_vocab = static_cast<int32_t>(model->config().n_vocab);
  std::vector<Session> batched, single;
  batched.reserve(n_sessions);
  for (size_t i = 0; i < n_sessions; ++i) {
    std::vector<int32_t> prompt;
    for (size_t k = 0; k <= (i * 5) % 7; ++k) {
      prompt.push_back(static_cast<int32_t>((i * 13 + k * 7 + 1) % n_vocab));
    }
    batched.emplace_back(model, 16);
    batched.back().eval(prompt);
    single.push_back(batched.back().fork());
  }
  std::vector<Session*> all;
  for (Session& s : batched) all.push_back(&s);
  for (int step = 0; step < 3; ++step) {
    std::vector<int32_t> tokens;
    for (size_t i = 0; i < n_sessions; ++i) {
      tokens.push_back(static_cast<int32_t>((i * 29 + static_cast<size_t>(step) * 11 + 3) %
                                            static_cast<size_t>(n_vocab)));
    }
    Session::decode_batch(all, tokens);
    for (size_t i = 0; i < all.size(); ++i) {
      INFO("session " << i << ", step " << step);
      const std::vector<float> want = copy(single[i].eval({&tokens[i], 1}));
      if (tolerance == 0.0f) {
        CHECK(copy(batched[i].logits()) == want);
      } else {
        CHECK(max_diff(copy(batched[i].logits()), want) < tolerance);
      }
      CHECK(batched[i].tokens() == single[i].tokens());
    }
  }
  // Some sessions only: the others are untouched.
  const int32_t t = 11;
  const int64_t before = batched[0].position();
  Session::decode_batch(std::span(all).subspan(1, 1), std::span(&t, 1));
  CHECK(copy(batched[1].logits()) == copy(single[1].eval({&t, 1})));
  CHECK(batched[0].position() == before);
}

}  // namespace

TEST_CASE("a batched decode step equals each session's own step, bit for bit", "[session]") {
  // Over the file's rows 2 and 3 sessions take the GEMV kernels token by token, 4 and 9 the
  // GEMMs (batch_matmul.h, small_batch); in a batch of 9 some experts get more than 3 tokens,
  // others fewer. (unit.no_gemm runs this without any GEMM.)
  for (const char* name : {"ds2_lite_q4_k", "ds2_lite_q8_0", "ds2_v3_q8_0"}) {
    INFO(name);
    auto model = load_golden(name);
    for (size_t b : {2, 3, 4, 9}) check_batches_equal_single_steps(model, b);
  }
  for (const char* name : {"ds2_lite", "ds2_v3", "llama_gqa"}) {  // F32 weights
    INFO(name);
    auto model = load_golden(name);
    for (size_t b : {2, 3, 4}) check_batches_equal_single_steps(model, b);
    check_batches_equal_single_steps(model, 9, 2e-4f);  // oneDNN's F32 GEMM, where built
  }
}

TEST_CASE("a batched decode step with the attention on an accelerator", "[session][backends]") {
  TempDir tmp;
  const std::string rules = tmp.file("split.yaml");
  std::ofstream(rules) << "- match: {kind: [moe_gate, experts]}\n"
                          "  replace: {device: cpu}\n"
                          "- match: {name: '.*'}\n"
                          "  replace: {device: 'ref:0'}\n";
  for (const char* name : {"ds2_lite_q4_k", "llama_gqa"}) {
    INFO(name);
    for (size_t b : {2, 4}) check_batches_equal_single_steps(load_golden(name, rules), b);
  }
}

TEST_CASE("a refused batch leaves every session as it was", "[session]") {
  auto model = load_golden("ds2_lite");
  Session a(model, 8), b(model, 4), other(load_golden("ds2_v3"), 8);
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
