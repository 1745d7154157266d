// cpu.rms_norm: x / sqrt(mean(x²) + eps) * weight per token, the sum of squares in double.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.rms_norm";

class RmsNorm final : public RmsNormOp {
 public:
  RmsNorm(const gguf::TensorInfo& w, float eps) : w_(w), eps_(eps) {}

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, int64_t n_tokens, const float* x, float* out) override {
    const int64_t n = w_.size();
    ctx.pool->parallel_for(n_tokens, 8, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) rms_norm_row(x + t * n, w_.data(), n, eps_, out + t * n);
    });
  }

 private:
  VectorWeight w_;
  float eps_;
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  Checker c(a, kName);
  c.options({}).dequantize("weight");
  if (const gguf::TensorInfo* w = a.module.find_weight("weight")) {
    // [n] or, as ggml writes it too, [n, 1, …]: the same vector.
    bool vector = !w->shape.empty();
    for (size_t i = 1; i < w->shape.size(); ++i) vector = vector && w->shape[i] == 1;
    c.require(vector, fmt::format("its weight '{}' has shape [{}], not a vector", w->name,
                                  fmt::join(w->shape, ", ")));
  }
  return c.result();
}

}  // namespace

registry::OpImpl rms_norm_impl() {
  return {std::string(kName),
          model::ModuleKind::kRmsNorm,
          registry::DeviceKind::kCpu,
          "RMSNorm over the weight's width",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<RmsNorm>(a.module.weight("weight"), a.config.rms_eps);
          }};
}

}  // namespace ktx::ops::cpu
