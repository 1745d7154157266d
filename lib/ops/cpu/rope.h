// Rotary position embedding as llama.cpp applies it to llama and deepseek2 GGUFs: interleaved
// pairs (x[2i], x[2i+1]) rotate by pos·θ_i ("NORM" mode), with linear or YaRN frequency scaling.
// Angles are computed in double so long positions keep their precision.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"

namespace ktx::ops::cpu {

class Rope {
 public:
  // `n_dims`: how many leading values of a vector rotate (config.rope.n_dims). freq_factors
  // (llama 3's rope_freqs, n_dims / 2 divisors) may be null.
  Rope(const model::ModelConfig& config, const float* freq_factors = nullptr);

  int64_t n_dims() const { return n_dims_; }

  // cos and sin (n_dims / 2 each) of position `pos`, magnitude scaling included.
  void angles(int64_t pos, float* cos, float* sin) const;

  // Rotates the first n_dims values of x in place with angles from angles().
  void rotate(const float* cos, const float* sin, float* x) const;

 private:
  int64_t n_dims_ = 0;
  std::vector<double> inv_freq_;  // per pair, with YaRN blending and freq_factors applied
  double magnitude_ = 1.0;        // multiplies cos and sin
};

}  // namespace ktx::ops::cpu
