// Choosing the next token from logits: penalties, then greedy or temperature sampling with
// top-k, top-p and min-p filters, in llama.cpp's order. A seed makes a run reproducible.
#pragma once

#include <cstdint>
#include <random>
#include <span>
#include <vector>

namespace ktx::runtime {

struct SamplingParams {
  float temperature = 0.8f;  // <= 0: greedy (arg max)
  int32_t top_k = 40;        // <= 0: off
  float top_p = 0.95f;       // >= 1: off
  float min_p = 0.05f;       // <= 0: off; keeps tokens with p >= min_p * p_max
  float repeat_penalty = 1.0f;     // 1: off; divides positive / multiplies negative logits
  float presence_penalty = 0.0f;   // subtracted once from every token seen
  float frequency_penalty = 0.0f;  // subtracted per occurrence
  int32_t penalty_last_n = 64;     // how many recent tokens the penalties look at
  uint64_t seed = 0xD5EEDu;

  // Throws ktx::Error (kInvalidArgument) naming the parameter that is out of range.
  void validate() const;
};

class Sampler {
 public:
  explicit Sampler(const SamplingParams& params);

  // Picks a token from `logits` (n_vocab values; not modified) given the tokens so far.
  int32_t sample(std::span<const float> logits);
  // Records a token the sampler did not choose (the prompt), for the penalties.
  void accept(int32_t token);
  void reset();

  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<int32_t> history_;
  std::vector<std::pair<float, int32_t>> candidates_;  // reused between calls
};

}  // namespace ktx::runtime
