// Sampling flags shared by `ktx generate` and `ktx chat`.
#pragma once

#include <charconv>
#include <set>
#include <string>

#include "args.h"
#include "runtime/sampler.h"

namespace ktx::cli {

inline const std::set<std::string> kSamplingOptions = {
    "temp", "top-k", "top-p", "min-p", "repeat-penalty", "presence-penalty",
    "frequency-penalty", "repeat-last-n", "seed"};

inline float float_option(const Args& args, const std::string& name, float fallback) {
  auto s = args.option(name);
  if (!s) return fallback;
  float v = 0;
  auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
  if (ec == std::errc::result_out_of_range) {
    args.fail("--" + name + " is '" + *s + "', beyond what a float holds (about 3.4e38)");
  }
  if (ec != std::errc() || p != s->data() + s->size()) {
    args.fail("--" + name + " must be a number, not '" + *s + "'");
  }
  return v;
}

inline runtime::SamplingParams sampling_params(const Args& args) {
  runtime::SamplingParams p;
  p.temperature = float_option(args, "temp", p.temperature);
  p.top_k = static_cast<int32_t>(args.int_option("top-k", p.top_k, 0, 1 << 30));
  p.top_p = float_option(args, "top-p", p.top_p);
  p.min_p = float_option(args, "min-p", p.min_p);
  p.repeat_penalty = float_option(args, "repeat-penalty", p.repeat_penalty);
  p.presence_penalty = float_option(args, "presence-penalty", p.presence_penalty);
  p.frequency_penalty = float_option(args, "frequency-penalty", p.frequency_penalty);
  p.penalty_last_n = static_cast<int32_t>(args.int_option("repeat-last-n", p.penalty_last_n, 0, 1 << 30));
  p.seed = static_cast<uint64_t>(args.int_option("seed", static_cast<int64_t>(p.seed), 0, INT64_MAX));
  p.validate();
  return p;
}

}  // namespace ktx::cli
