// ref.embedding, ref.rms_norm, ref.lm_head, ref.mlp: table lookup, RMSNorm, output projection and
// SwiGLU, in double.
#include <memory>

#include "ops/operator.h"
#include "ref.h"

namespace ktx::backends::ref {
namespace {

using model::ModuleKind;
using registry::DeviceKind;
using registry::OpCreateArgs;

class Embedding final : public ops::EmbeddingOp {
 public:
  explicit Embedding(const gguf::TensorInfo& table) : table_(table) {}
  std::string impl_name() const override { return "ref.embedding"; }

  void forward(ops::ExecContext&, std::span<const int32_t> tokens, float* out) override {
    // Token ids arrive in host memory (the interface says so); the output is device memory.
    const auto n = static_cast<int64_t>(tokens.size());
    require_device_array(out, n * table_.cols(), "the output", impl_name());
    std::vector<double> row(static_cast<size_t>(table_.cols()));
    for (size_t t = 0; t < tokens.size(); ++t) {
      table_.row(tokens[t], row.data());
      narrow(row, out + static_cast<int64_t>(t) * table_.cols());
    }
  }

 private:
  Rows table_;
};

class RmsNorm final : public ops::RmsNormOp {
 public:
  RmsNorm(const gguf::TensorInfo& w, double eps) : w_(Rows(w).all()), eps_(eps) {}
  std::string impl_name() const override { return "ref.rms_norm"; }

  void forward(ops::ExecContext&, int64_t n, const float* x, float* out) override {
    const int64_t width = static_cast<int64_t>(w_.size());
    require_device_array(x, n * width, "the input", impl_name());
    require_device_array(out, n * width, "the output", impl_name());
    for (int64_t t = 0; t < n; ++t) {
      std::vector<double> v = widen(x + t * width, width);
      rms_norm(v.data(), w_.data(), width, eps_);
      narrow(v, out + t * width);
    }
  }

 private:
  std::vector<double> w_;
  double eps_;
};

class LmHead final : public ops::LmHeadOp {
 public:
  explicit LmHead(const gguf::TensorInfo& w) : w_(w) {}
  std::string impl_name() const override { return "ref.lm_head"; }

  void forward(ops::ExecContext&, int64_t n, const float* x, float* logits) override {
    require_device_array(x, n * w_.cols(), "the input", impl_name());
    require_device_array(logits, n * w_.rows(), "the logits", impl_name());
    std::vector<double> y(static_cast<size_t>(n * w_.rows()));
    w_.matmul(n, widen(x, n * w_.cols()).data(), y.data());
    narrow(y, logits);
  }

 private:
  Rows w_;
};

class Mlp final : public ops::MlpOp {
 public:
  explicit Mlp(const model::ModuleDesc& m)
      : gate_(m.weight("gate")), up_(m.weight("up")), down_(m.weight("down")) {
    if (const auto* b = m.find_weight("gate_bias")) gate_bias_ = Rows(*b).all();
    if (const auto* b = m.find_weight("up_bias")) up_bias_ = Rows(*b).all();
    if (const auto* b = m.find_weight("down_bias")) down_bias_ = Rows(*b).all();
  }
  std::string impl_name() const override { return "ref.mlp"; }

  void forward(ops::ExecContext&, int64_t n, const float* x, float* out) override {
    const int64_t n_embd = gate_.cols(), ff = gate_.rows();
    require_device_array(x, n * n_embd, "the input", impl_name());
    require_device_array(out, n * n_embd, "the output", impl_name());
    const std::vector<double> xd = widen(x, n * n_embd);
    std::vector<double> g(static_cast<size_t>(n * ff)), u(g.size());
    gate_.matmul(n, xd.data(), g.data());
    up_.matmul(n, xd.data(), u.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < ff; ++i) {
        double& gi = g[static_cast<size_t>(t * ff + i)];
        const double ui = u[static_cast<size_t>(t * ff + i)] + bias(up_bias_, i);
        gi = silu(gi + bias(gate_bias_, i)) * ui;
      }
    }
    std::vector<double> y(static_cast<size_t>(n * n_embd));
    down_.matmul(n, g.data(), y.data());
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < n_embd; ++i)
        y[static_cast<size_t>(t * n_embd + i)] += bias(down_bias_, i);
    }
    narrow(y, out);
  }

 private:
  static double bias(const std::vector<double>& b, int64_t i) {
    return b.empty() ? 0.0 : b[static_cast<size_t>(i)];
  }

  Rows gate_, up_, down_;
  std::vector<double> gate_bias_, up_bias_, down_bias_;
};

}  // namespace

registry::OpImpl embedding_impl() {
  auto check = [](const OpCreateArgs& a) {
    return Check(a, "ref.embedding")
        .role("weight")
        .shape("weight", {a.config.n_embd, a.config.n_vocab})
        .result();
  };
  return {"ref.embedding",
          ModuleKind::kEmbedding,
          DeviceKind::kAccelerator,
          "reference: embedding rows dequantized to double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<Embedding>(a.module.weight("weight"));
          }};
}

registry::OpImpl rms_norm_impl() {
  auto check = [](const OpCreateArgs& a) {
    Check c(a, "ref.rms_norm");
    c.role("weight");
    const gguf::TensorInfo* w = a.module.find_weight("weight");
    c.require(w == nullptr || w->shape.size() == 1, "the norm weight must be a vector");
    return c.result();
  };
  return {"ref.rms_norm",
          ModuleKind::kRmsNorm,
          DeviceKind::kAccelerator,
          "reference: RMSNorm in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<RmsNorm>(a.module.weight("weight"), a.config.rms_eps);
          }};
}

registry::OpImpl lm_head_impl() {
  auto check = [](const OpCreateArgs& a) {
    return Check(a, "ref.lm_head")
        .role("weight")
        .shape("weight", {a.config.n_embd, a.config.n_vocab})
        .result();
  };
  return {"ref.lm_head",
          ModuleKind::kLmHead,
          DeviceKind::kAccelerator,
          "reference: output projection in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<LmHead>(a.module.weight("weight"));
          }};
}

registry::OpImpl mlp_impl() {
  auto check = [](const OpCreateArgs& a) {
    Check c(a, "ref.mlp");
    c.role("gate").role("up").role("down");
    c.role("gate_bias", true).role("up_bias", true).role("down_bias", true);
    if (c.result()) return c.result();
    const int64_t n_embd = a.config.n_embd;
    const int64_t ff =
        a.module.weight("gate").shape.size() > 1 ? a.module.weight("gate").shape[1] : 0;
    return c.shape("gate", {n_embd, ff})
        .shape("up", {n_embd, ff})
        .shape("down", {ff, n_embd})
        .shape("gate_bias", {ff})
        .shape("up_bias", {ff})
        .shape("down_bias", {n_embd})
        .result();
  };
  return {"ref.mlp",
          ModuleKind::kMlp,
          DeviceKind::kAccelerator,
          "reference: SwiGLU feed-forward in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<Mlp>(a.module);
          }};
}

}  // namespace ktx::backends::ref
