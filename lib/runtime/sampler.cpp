// Sampling chain: penalties -> (greedy | top-k -> softmax with temperature -> top-p -> min-p ->
// draw). Candidates are sorted once by logit; every filter then cuts a prefix.
#include "runtime/sampler.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "ktx/error.h"

namespace ktx::runtime {

void SamplingParams::validate() const {
  auto bad = [](const char* name, double v, const char* range) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("sampling parameter {} = {} is out of range: expected {}", name, v,
                            range));
  };
  if (!std::isfinite(temperature)) bad("temperature", temperature, "a finite number");
  if (!(top_p > 0.0f) || top_p > 1.0f) bad("top_p", top_p, "0 < top_p <= 1");
  if (!(min_p >= 0.0f && min_p <= 1.0f)) bad("min_p", min_p, "0 <= min_p <= 1");  // NaN too
  if (!(repeat_penalty > 0.0f) || !std::isfinite(repeat_penalty)) {
    bad("repeat_penalty", repeat_penalty, "a number > 0 (1 = off)");
  }
  if (!std::isfinite(presence_penalty)) bad("presence_penalty", presence_penalty, "finite");
  if (!std::isfinite(frequency_penalty)) bad("frequency_penalty", frequency_penalty, "finite");
  if (penalty_last_n < 0) bad("penalty_last_n", penalty_last_n, ">= 0");
}

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  params_.validate();
}

void Sampler::accept(int32_t token) { history_.push_back(token); }

void Sampler::reset() {
  history_.clear();
  rng_.seed(params_.seed);
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int32_t n_vocab = static_cast<int32_t>(logits.size());
  // NaN or +inf anywhere means the model's arithmetic broke down (a weight or an activation
  // overflowed): every choice from such logits would be arbitrary, so none is made. -inf is a
  // masked token and fine, as long as one token is left.
  bool any_finite = false;
  for (int32_t i = 0; i < n_vocab; ++i) {
    const float l = logits[static_cast<size_t>(i)];
    if (std::isnan(l) || l == std::numeric_limits<float>::infinity()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("the logit of token {} is {}: the model's output is not finite (a "
                              "weight or an activation overflowed), nothing can be sampled",
                              i, l));
    }
    any_finite = any_finite || std::isfinite(l);
  }
  if (!any_finite) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("all {} logits are -inf: no token is left to sample", n_vocab));
  }
  candidates_.resize(logits.size());
  for (int32_t i = 0; i < n_vocab; ++i) candidates_[static_cast<size_t>(i)] = {logits[static_cast<size_t>(i)], i};

  // Penalties over the recent window.
  const bool penalise = params_.repeat_penalty != 1.0f || params_.presence_penalty != 0.0f ||
                        params_.frequency_penalty != 0.0f;
  if (penalise && params_.penalty_last_n > 0 && !history_.empty()) {
    std::unordered_map<int32_t, int> counts;
    const size_t start = history_.size() > static_cast<size_t>(params_.penalty_last_n)
                             ? history_.size() - static_cast<size_t>(params_.penalty_last_n)
                             : 0;
    for (size_t i = start; i < history_.size(); ++i) ++counts[history_[i]];
    for (const auto& [token, count] : counts) {
      if (token < 0 || token >= n_vocab) continue;
      float& l = candidates_[static_cast<size_t>(token)].first;
      l = l > 0.0f ? l / params_.repeat_penalty : l * params_.repeat_penalty;
      l -= static_cast<float>(count) * params_.frequency_penalty + params_.presence_penalty;
    }
  }

  if (params_.temperature <= 0.0f) {
    // Greedy: the lowest id wins ties, so results do not depend on sort stability.
    return std::max_element(candidates_.begin(), candidates_.end(),
                            [](const auto& a, const auto& b) {
                              return a.first < b.first || (a.first == b.first && a.second > b.second);
                            })
        ->second;
  }

  // Sort descending by logit (ties by id); with top-k only the first k need ordering.
  auto order = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  size_t keep = candidates_.size();
  if (params_.top_k > 0 && static_cast<size_t>(params_.top_k) < keep) {
    keep = static_cast<size_t>(params_.top_k);
    std::partial_sort(candidates_.begin(), candidates_.begin() + static_cast<ptrdiff_t>(keep),
                      candidates_.end(), order);
  } else {
    std::sort(candidates_.begin(), candidates_.end(), order);
  }
  candidates_.resize(keep);

  // Softmax with temperature, in double for a stable normaliser.
  std::vector<double> p(keep);
  const double max_logit = candidates_[0].first;
  double sum = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((candidates_[i].first - max_logit) / params_.temperature);
    sum += p[i];
  }
  for (double& v : p) v /= sum;

  // Top-p: the smallest prefix whose mass reaches top_p.
  if (params_.top_p < 1.0f) {
    double mass = 0.0;
    size_t cut = keep;
    for (size_t i = 0; i < keep; ++i) {
      mass += p[i];
      if (mass >= params_.top_p) {
        cut = i + 1;
        break;
      }
    }
    keep = cut;
  }
  // Min-p: drop tokens far less likely than the best one.
  if (params_.min_p > 0.0f) {
    const double floor = params_.min_p * p[0];
    size_t cut = 1;
    while (cut < keep && p[cut] >= floor) ++cut;
    keep = cut;
  }

  double total = 0.0;
  for (size_t i = 0; i < keep; ++i) total += p[i];
  std::uniform_real_distribution<double> uniform(0.0, total);
  const double r = uniform(rng_);
  double acc = 0.0;
  for (size_t i = 0; i < keep; ++i) {
    acc += p[i];
    if (r < acc) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace ktx::runtime
