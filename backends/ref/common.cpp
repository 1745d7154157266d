// The reference backend's weights, rotary embedding, math helpers and checks.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <numbers>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "ref.h"

namespace ktx::backends::ref {

// --- weights ---------------------------------------------------------------------------------

Rows::Rows(const gguf::TensorInfo& t) : tensor_(&t) {
  cols_ = t.shape.empty() ? 0 : t.shape[0];
  rows_ = 1;
  for (size_t i = 1; i < t.shape.size(); ++i) rows_ *= t.shape[i];
  row_bytes_ = row_size(t.type, cols_);
}

Rows Rows::block(int64_t index, int64_t n) const {
  Rows b = *this;
  b.rows_ = rows_ / n;
  b.first_row_ = first_row_ + index * b.rows_;
  return b;
}

void Rows::row(int64_t r, double* out) const {
  std::vector<float> f(static_cast<size_t>(cols_));
  const uint8_t* src = tensor_->data + static_cast<size_t>(first_row_ + r) * row_bytes_;
  quant::dequantize_row(tensor_->type, src, f.data(), cols_);
  for (int64_t c = 0; c < cols_; ++c) out[c] = f[static_cast<size_t>(c)];
}

std::vector<double> Rows::all() const {
  std::vector<double> out(static_cast<size_t>(rows_ * cols_));
  for (int64_t r = 0; r < rows_; ++r) row(r, out.data() + r * cols_);
  return out;
}

void Rows::matmul(int64_t n, const double* x, double* y) const {
  std::vector<double> w(static_cast<size_t>(cols_));
  for (int64_t r = 0; r < rows_; ++r) {
    row(r, w.data());
    for (int64_t t = 0; t < n; ++t) {
      const double* xt = x + t * cols_;
      double sum = 0.0;
      for (int64_t c = 0; c < cols_; ++c) sum += w[static_cast<size_t>(c)] * xt[c];
      y[t * rows_ + r] = sum;
    }
  }
}

// --- rotary embedding ------------------------------------------------------------------------
// θ_i = pos · base^(-2i/n_dims) / divisor_i. Linear scaling divides by the factor; YaRN blends
// the divided (interpolated) and plain (extrapolated) frequency per pair with a ramp between the
// pairs whose wavelength fits beta_fast and beta_slow times into the original context, and —
// when the file gives no yarn_log_multiplier — scales the rotated values by 1 + 0.1 ln(factor)
// (ggml's rope_yarn; with a multiplier the correction lives in the attention scale instead).

Rotary::Rotary(const model::ModelConfig& config, int64_t n_dims,
               const std::vector<double>& freq_divisors)
    : n_dims_(n_dims) {
  const model::RopeConfig& r = config.rope;
  const double base = r.freq_base;
  const double factor = r.factor > 0.0f ? r.factor : 1.0;
  const double d = static_cast<double>(n_dims);
  double low = 0.0, high = 0.0;
  if (r.scaling == model::RopeScaling::kYarn) {
    const double n_ctx_orig =
        static_cast<double>(r.original_context > 0 ? r.original_context : config.n_ctx_train);
    auto pair_for = [&](double rotations) {
      return d * std::log(n_ctx_orig / (rotations * 2.0 * std::numbers::pi)) /
             (2.0 * std::log(base));
    };
    low = std::max(0.0, std::floor(pair_for(r.yarn_beta_fast)));
    high = std::min(d - 1.0, std::ceil(pair_for(r.yarn_beta_slow)));
    if (factor > 1.0 && r.yarn_log_multiplier == 0.0f) magnitude_ = 1.0 + 0.1 * std::log(factor);
  }
  for (int64_t i = 0; i < n_dims / 2; ++i) {
    double extrapolated = std::pow(base, -2.0 * static_cast<double>(i) / d);
    if (!freq_divisors.empty()) extrapolated /= freq_divisors[static_cast<size_t>(i)];
    double f = extrapolated;
    if (r.scaling == model::RopeScaling::kLinear) f = extrapolated / factor;
    if (r.scaling == model::RopeScaling::kYarn) {
      const double ramp =
          std::clamp((static_cast<double>(i) - low) / std::max(0.001, high - low), 0.0, 1.0);
      const double keep = 1.0 - ramp;  // 1: a high-frequency pair keeps its own frequency
      f = extrapolated / factor * (1.0 - keep) + extrapolated * keep;
    }
    inv_freq_.push_back(f);
  }
}

void Rotary::apply(int64_t pos, double* x) const {
  for (int64_t i = 0; i < n_dims_ / 2; ++i) {
    const double theta = static_cast<double>(pos) * inv_freq_[static_cast<size_t>(i)];
    const double c = std::cos(theta) * magnitude_, s = std::sin(theta) * magnitude_;
    const double a = x[2 * i], b = x[2 * i + 1];
    x[2 * i] = a * c - b * s;
    x[2 * i + 1] = a * s + b * c;
  }
}

// --- math ------------------------------------------------------------------------------------

std::vector<double> widen(const float* x, int64_t n) { return std::vector<double>(x, x + n); }

void narrow(const std::vector<double>& x, float* out) {
  for (size_t i = 0; i < x.size(); ++i) out[i] = static_cast<float>(x[i]);
}

void rms_norm(double* x, const double* w, int64_t n, double eps) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(sum / static_cast<double>(n) + eps);
  for (int64_t i = 0; i < n; ++i) x[i] = x[i] * inv * w[i];
}

double silu(double x) { return x / (1.0 + std::exp(-x)); }

void softmax(double* x, int64_t n) {
  const double m = *std::max_element(x, x + n);
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += x[i] = std::exp(x[i] - m);
  for (int64_t i = 0; i < n; ++i) x[i] /= sum;
}

// --- checks ----------------------------------------------------------------------------------

Check::Check(const registry::OpCreateArgs& args, std::string_view impl,
             std::initializer_list<std::string_view> allowed)
    : args_(args), impl_(impl) {
  for (const auto& [key, value] : args.options) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      error_ = allowed.size() == 0 ? fmt::format("{} takes no options, got '{}'", impl_, key)
                                   : fmt::format("{} does not know option '{}'", impl_, key);
      return;
    }
  }
  if (args.device.name() != "ref:0") {
    error_ = fmt::format("{} runs on device ref:0 only, not {}", impl_, args.device.name());
  }
}

Check& Check::role(std::string_view role, bool optional) {
  if (error_) return *this;
  const gguf::TensorInfo* t = args_.module.find_weight(role);
  if (t == nullptr) {
    if (!optional) error_ = fmt::format("{} has no {} weight", args_.module.name, role);
  } else if (!quant::can_dequantize(t->type)) {
    error_ =
        fmt::format("{} is {}, which {} cannot dequantize", t->name, type_name(t->type), impl_);
  } else if (t->shape.empty() || t->shape[0] % traits(t->type).block_size != 0) {
    error_ = fmt::format("{}: rows of {} values do not split into {} blocks", t->name,
                         t->shape.empty() ? 0 : t->shape[0], type_name(t->type));
  }
  return *this;
}

Check& Check::shape(std::string_view role, std::initializer_list<int64_t> expected) {
  if (error_) return *this;
  const gguf::TensorInfo* t = args_.module.find_weight(role);
  if (t == nullptr) return *this;
  auto trim = [](std::vector<int64_t> s) {
    while (s.size() > 1 && s.back() == 1) s.pop_back();
    return s;
  };
  const std::vector<int64_t> want(expected);
  if (trim(t->shape) != trim(want)) {
    error_ =
        fmt::format("{} ({} of {}) has shape [{}], {} expects [{}]", t->name, role,
                    args_.module.name, fmt::join(t->shape, ", "), impl_, fmt::join(want, ", "));
  }
  return *this;
}

Check& Check::require(bool ok, std::string_view why) {
  if (!error_ && !ok) error_ = fmt::format("{}: {}", impl_, why);
  return *this;
}

void throw_if(const std::optional<std::string>& why) {
  if (why) throw Error(ErrorCode::kUnsupported, *why);
}

}  // namespace ktx::backends::ref
