// The sampler: greedy, filters, penalties, reproducibility, parameter checks.
#include <catch2/catch.hpp>

#include <cmath>
#include <map>
#include <random>
#include <vector>

#include "ktx/error.h"
#include "runtime/sampler.h"

using ktx::runtime::Sampler;
using ktx::runtime::SamplingParams;

namespace {

std::vector<float> random_logits(std::mt19937& rng, int n) {
  std::normal_distribution<float> d(0.0f, 2.0f);
  std::vector<float> l(static_cast<size_t>(n));
  for (float& v : l) v = d(rng);
  return l;
}

}  // namespace

TEST_CASE("greedy picks the arg max, lowest id on ties", "[sampler]") {
  SamplingParams p;
  p.temperature = 0.0f;
  Sampler s(p);
  std::vector<float> logits = {0.5f, 3.0f, -1.0f, 3.0f};
  CHECK(s.sample(logits) == 1);
  const unsigned seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  for (int trial = 0; trial < 20; ++trial) {
    auto l = random_logits(rng, 257);
    const auto want = std::max_element(l.begin(), l.end()) - l.begin();
    CHECK(s.sample(l) == want);
  }
}

TEST_CASE("top-k 1 is greedy whatever the temperature", "[sampler]") {
  SamplingParams p;
  p.temperature = 5.0f;
  p.top_k = 1;
  Sampler s(p);
  std::vector<float> logits = {0.1f, 0.2f, 7.0f, 0.3f};
  for (int i = 0; i < 50; ++i) CHECK(s.sample(logits) == 2);
}

TEST_CASE("the same seed gives the same tokens; another seed differs", "[sampler]") {
  const unsigned seed = std::random_device{}();
  INFO("seed " << seed);
  std::mt19937 rng(seed);
  const auto logits = random_logits(rng, 1000);
  SamplingParams p;
  p.temperature = 1.5f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = seed;
  Sampler a(p), b(p);
  p.seed = seed + 1;
  Sampler c(p);
  std::vector<int32_t> ta, tb, tc;
  for (int i = 0; i < 64; ++i) {
    ta.push_back(a.sample(logits));
    tb.push_back(b.sample(logits));
    tc.push_back(c.sample(logits));
  }
  CHECK(ta == tb);
  CHECK(ta != tc);
  a.reset();
  std::vector<int32_t> again;
  for (int i = 0; i < 64; ++i) again.push_back(a.sample(logits));
  CHECK(again == ta);
}

TEST_CASE("sampling frequencies follow softmax(logits / T)", "[sampler]") {
  SamplingParams p;
  p.temperature = 0.7f;
  p.top_k = 0;
  p.top_p = 1.0f;
  p.min_p = 0.0f;
  p.seed = std::random_device{}();
  INFO("seed " << p.seed);
  Sampler s(p);
  const std::vector<float> logits = {1.0f, 0.0f, 0.5f, -1.0f};
  std::vector<double> want(logits.size());
  double z = 0;
  for (size_t i = 0; i < logits.size(); ++i) z += want[i] = std::exp(logits[i] / 0.7);
  std::map<int32_t, int> counts;
  const int n = 40000;
  for (int i = 0; i < n; ++i) ++counts[s.sample(logits)];
  for (size_t i = 0; i < logits.size(); ++i) {
    const double got = counts[static_cast<int32_t>(i)] / static_cast<double>(n);
    CHECK(std::abs(got - want[i] / z) < 0.015);
  }
}

TEST_CASE("top-p and min-p cut the tail", "[sampler]") {
  // Probabilities at T=1: token 0 dominates, token 3 is tiny.
  const std::vector<float> logits = {5.0f, 3.0f, 2.5f, -4.0f};
  SamplingParams p;
  p.temperature = 1.0f;
  p.top_k = 0;
  p.seed = std::random_device{}();
  INFO("seed " << p.seed);
  p.top_p = 0.5f;  // token 0 alone has > 0.5 of the mass
  p.min_p = 0.0f;
  Sampler top_p(p);
  for (int i = 0; i < 200; ++i) CHECK(top_p.sample(logits) == 0);
  p.top_p = 1.0f;
  p.min_p = 0.1f;  // keeps tokens with p >= 0.1 p_max: 0 and 1 (e^-2 = 0.135), not 2 (e^-2.5)
  Sampler min_p(p);
  for (int i = 0; i < 500; ++i) {
    const int32_t t = min_p.sample(logits);
    CHECK((t == 0 || t == 1));
  }
}

TEST_CASE("repetition, presence and frequency penalties", "[sampler]") {
  SamplingParams p;
  p.temperature = 0.0f;
  p.repeat_penalty = 4.0f;
  Sampler s(p);
  const std::vector<float> logits = {2.0f, 1.0f, -3.0f};
  CHECK(s.sample(logits) == 0);
  s.accept(0);  // 2.0 / 4 = 0.5 < 1.0
  CHECK(s.sample(logits) == 1);

  SamplingParams q;
  q.temperature = 0.0f;
  q.frequency_penalty = 0.6f;
  Sampler f(q);
  f.accept(0);
  CHECK(f.sample(logits) == 0);  // 2.0 - 0.6 = 1.4 > 1.0
  f.accept(0);
  CHECK(f.sample(logits) == 1);  // 2.0 - 1.2 = 0.8 < 1.0

  SamplingParams r;
  r.temperature = 0.0f;
  r.presence_penalty = 1.5f;
  Sampler pr(r);
  pr.accept(0);
  pr.accept(0);
  CHECK(pr.sample(logits) == 1);  // 2.0 - 1.5 = 0.5, however often it appeared
}

TEST_CASE("out-of-range parameters are refused by name", "[sampler]") {
  auto refuses = [](SamplingParams p, const char* name) {
    try {
      Sampler s(p);
      FAIL("accepted " << name);
    } catch (const ktx::Error& e) {
      CHECK(e.code() == ktx::ErrorCode::kInvalidArgument);
      CHECK_THAT(e.what(), Catch::Contains(name));
    }
  };
  SamplingParams p;
  p.top_p = 0.0f;
  refuses(p, "top_p");
  p = {};
  p.min_p = 1.5f;
  refuses(p, "min_p");
  p = {};
  p.min_p = NAN;  // would otherwise turn sampling greedy without a word
  refuses(p, "min_p");
  p = {};
  p.top_p = NAN;
  refuses(p, "top_p");
  p = {};
  p.repeat_penalty = 0.0f;
  refuses(p, "repeat_penalty");
  p = {};
  p.temperature = NAN;
  refuses(p, "temperature");
  p = {};
  p.penalty_last_n = -1;
  refuses(p, "penalty_last_n");
}

TEST_CASE("logits that are not finite are refused, not sampled from", "[sampler]") {
  for (float temperature : {0.0f, 0.8f}) {
    SamplingParams p;
    p.temperature = temperature;
    Sampler s(p);
    std::vector<float> logits = {1.0f, 2.0f, 0.5f, -1.0f};
    logits[2] = NAN;
    CHECK_THROWS_WITH(s.sample(logits),
                      Catch::Contains("token 2") && Catch::Contains("not finite"));
    logits[2] = INFINITY;
    CHECK_THROWS_WITH(s.sample(logits), Catch::Contains("token 2"));
    const float ninf = -INFINITY;
    const std::vector<float> masked = {ninf, ninf, 3.0f, ninf};  // masked tokens are fine
    CHECK(s.sample(masked) == 2);
    const std::vector<float> none = {ninf, ninf};
    CHECK_THROWS_WITH(s.sample(none), Catch::Contains("-inf"));
  }
}
