// RoPE frequencies: plain, linear (positions divided by the factor) and YaRN (per-pair blend of
// interpolated and extrapolated frequencies over a ramp between the correction dimensions), with
// the conventions of llama.cpp's rope_yarn and HF's DeepseekV2YarnRotaryEmbedding, which agree.
#include "ops/cpu/rope.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ktx::ops::cpu {
namespace {

// The pair index at which a wavelength of 2π·n_ctx_orig/beta rotations fits: YaRN's correction
// dimension for one beta.
double correction_dim(double n_dims, double n_ctx_orig, double beta, double base) {
  return n_dims * std::log(n_ctx_orig / (beta * 2.0 * std::numbers::pi)) / (2.0 * std::log(base));
}

}  // namespace

Rope::Rope(const model::ModelConfig& config, const float* freq_factors) {
  const model::RopeConfig& r = config.rope;
  n_dims_ = r.n_dims;
  const double base = r.freq_base;
  const double factor = r.factor > 0 ? r.factor : 1.0;
  const double freq_scale = r.scaling == model::RopeScaling::kNone ? 1.0 : 1.0 / factor;
  const bool yarn = r.scaling == model::RopeScaling::kYarn;

  double lo = 0, hi = 0;
  if (yarn) {
    const double n_ctx_orig =
        static_cast<double>(r.original_context > 0 ? r.original_context : config.n_ctx_train);
    lo = std::max(0.0, std::floor(correction_dim(n_dims_, n_ctx_orig, r.yarn_beta_fast, base)));
    hi = std::min(static_cast<double>(n_dims_ - 1),
                  std::ceil(correction_dim(n_dims_, n_ctx_orig, r.yarn_beta_slow, base)));
    // ggml's rope_yarn scales cos and sin by 1 + 0.1·ln(factor). When the file carries a
    // yarn_log_multiplier (DeepSeek's mscale_all_dim), llama.cpp passes an attn_factor that
    // cancels it (as HF's mscale / mscale_all_dim = 1 does) and puts mscale² into the softmax
    // scale instead (config.attention_scale()); without one the factor survives. Same rule as
    // tests/reference/deepseek_numpy.py (RopeParams.rotation_magnitude).
    if (factor > 1.0 && r.yarn_log_multiplier == 0.0f) magnitude_ = 1.0 + 0.1 * std::log(factor);
  }

  inv_freq_.resize(static_cast<size_t>(n_dims_ / 2));
  for (int64_t i = 0; i < n_dims_ / 2; ++i) {
    double extrap = std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(n_dims_));
    if (freq_factors != nullptr) extrap /= freq_factors[i];
    const double interp = freq_scale * extrap;
    double inv = interp;
    if (yarn) {
      // 1 below lo (pure extrapolation: high frequencies keep their angles), 0 above hi.
      const double y = (static_cast<double>(i) - lo) / std::max(0.001, hi - lo);
      const double mix = 1.0 - std::clamp(y, 0.0, 1.0);
      inv = interp * (1.0 - mix) + extrap * mix;
    }
    inv_freq_[static_cast<size_t>(i)] = inv;
  }
}

void Rope::angles(int64_t pos, float* cos, float* sin) const {
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const double theta = static_cast<double>(pos) * inv_freq_[i];
    cos[i] = static_cast<float>(std::cos(theta) * magnitude_);
    sin[i] = static_cast<float>(std::sin(theta) * magnitude_);
  }
}

void Rope::rotate(const float* cos, const float* sin, float* x) const {
  for (int64_t i = 0; i < n_dims_ / 2; ++i) {
    const float x0 = x[2 * i], x1 = x[2 * i + 1];
    x[2 * i] = x0 * cos[i] - x1 * sin[i];
    x[2 * i + 1] = x0 * sin[i] + x1 * cos[i];
  }
}

}  // namespace ktx::ops::cpu
