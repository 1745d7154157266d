// ref.moe_gate and ref.experts: DeepSeek's router and the routed experts, in double.
//
// Router, per token (DeepSeek-V2/V3 papers and their HF code):
//   scores = softmax(W x) (V2) or sigmoid(W x) (V3); selection = scores + exp_probs_b (V3 only)
//   with n_group > 1: rank the groups by their best selection score (softmax gating) or by the
//   sum of their two best (sigmoid gating), keep n_group_used, exclude the others' experts;
//   ids = top-k by selection (ties: lower id); weights = the unbiased scores of those experts,
//   divided by their sum (at least 2^-14, as llama.cpp clamps) when expert_weights_norm, times
//   expert_weights_scale.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <numeric>

#include "exec/expert_split.h"
#include "ktx/error.h"
#include "ops/operator.h"
#include "ref.h"

namespace ktx::backends::ref {
namespace {

using model::ModuleKind;
using registry::DeviceKind;
using registry::OpCreateArgs;

constexpr double kMinWeightSum = 6.103515625e-5;  // 2^-14

class MoeGate final : public ops::MoeGateOp {
 public:
  MoeGate(const model::ModuleDesc& m, const model::ModelConfig& c) : w_(m.weight("weight")), c_(c) {
    if (const auto* b = m.find_weight("bias")) bias_ = Rows(*b).all();
  }
  std::string impl_name() const override { return "ref.moe_gate"; }

  void forward(ops::ExecContext&, int64_t n, const float* x, int32_t* ids,
               float* weights) override {
    const int64_t n_expert = w_.rows(), k = c_.n_expert_used;
    require_device_array(x, n * w_.cols(), "the input", impl_name());
    require_device_array(ids, n * k, "the expert ids", impl_name());
    require_device_array(weights, n * k, "the expert weights", impl_name());
    std::vector<double> logits(static_cast<size_t>(n * n_expert));
    w_.matmul(n, widen(x, n * w_.cols()).data(), logits.data());
    for (int64_t t = 0; t < n; ++t) {
      route(logits.data() + t * n_expert, n_expert, ids + t * k, weights + t * k);
    }
  }

 private:
  void route(double* logits, int64_t n_expert, int32_t* ids, float* weights) const {
    const bool sigmoid = c_.gating == model::GatingFunc::kSigmoid;
    std::vector<double> scores(logits, logits + n_expert);
    if (sigmoid) {
      for (double& s : scores) s = 1.0 / (1.0 + std::exp(-s));
    } else {
      softmax(scores.data(), n_expert);
    }
    std::vector<double> select = scores;
    for (int64_t e = 0; e < n_expert && !bias_.empty(); ++e) select[e] += bias_[e];

    const double minus_inf = -std::numeric_limits<double>::infinity();
    const int64_t n_group = c_.n_group;
    if (n_group > 1 && c_.n_group_used < n_group) {
      const int64_t per = n_expert / n_group;
      std::vector<double> group_score(static_cast<size_t>(n_group));
      for (int64_t g = 0; g < n_group; ++g) {
        std::vector<double> s(select.begin() + g * per, select.begin() + (g + 1) * per);
        std::sort(s.begin(), s.end(), std::greater<>());
        group_score[g] = sigmoid && per > 1 ? s[0] + s[1] : s[0];
      }
      std::vector<int64_t> order(static_cast<size_t>(n_group));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(),
                       [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
      for (int64_t rank = c_.n_group_used; rank < n_group; ++rank) {
        std::fill(select.begin() + order[rank] * per, select.begin() + (order[rank] + 1) * per,
                  minus_inf);
      }
    }

    std::vector<int32_t> order(static_cast<size_t>(n_expert));
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int32_t a, int32_t b) { return select[a] > select[b]; });
    const int64_t k = c_.n_expert_used;
    double sum = 0.0;
    for (int64_t j = 0; j < k; ++j) sum += scores[order[j]];
    const double norm = c_.expert_weights_norm ? 1.0 / std::max(sum, kMinWeightSum) : 1.0;
    for (int64_t j = 0; j < k; ++j) {
      ids[j] = order[j];
      weights[j] = static_cast<float>(scores[order[j]] * norm * c_.expert_weights_scale);
    }
  }

  Rows w_;
  std::vector<double> bias_;
  model::ModelConfig c_;
};

// submit() computes everything; wait() has nothing left to do.
class Experts final : public ops::ExpertsOp {
 public:
  // `served`: the experts this operator may be sent (option experts), empty for all.
  Experts(const model::ModuleDesc& m, const model::ModelConfig& c, std::vector<bool> served)
      : gate_(m.weight("gate_exps")),
        up_(m.weight("up_exps")),
        down_(m.weight("down_exps")),
        n_expert_(c.n_expert),
        k_(c.n_expert_used),
        served_(std::move(served)) {}
  std::string impl_name() const override { return "ref.experts"; }

  void submit(ops::ExecContext&, int64_t n, const float* x, const int32_t* ids,
              const float* weights, float* out) override {
    const int64_t n_embd = gate_.cols(), ff = gate_.rows() / n_expert_;
    require_device_array(x, n * n_embd, "the input", impl_name());
    require_device_array(ids, n * k_, "the expert ids", impl_name());
    require_device_array(weights, n * k_, "the expert weights", impl_name());
    require_device_array(out, n * n_embd, "the output", impl_name());
    std::vector<double> g(static_cast<size_t>(ff)), u(g.size()), y(static_cast<size_t>(n_embd));
    for (int64_t t = 0; t < n; ++t) {
      const std::vector<double> xt = widen(x + t * n_embd, n_embd);
      std::vector<double> acc(static_cast<size_t>(n_embd), 0.0);
      for (int64_t j = 0; j < k_; ++j) {
        const int64_t e = ids[t * k_ + j];
        if (e == kNoExpert) continue;
        if (e < 0 || e >= n_expert_ || (!served_.empty() && !served_[static_cast<size_t>(e)])) {
          throw Error(ErrorCode::kInternal,
                      fmt::format("ref.experts: token {} is routed to expert {}, which this "
                                  "operator does not serve",
                                  t, e));
        }
        gate_.block(e, n_expert_).matmul(1, xt.data(), g.data());
        up_.block(e, n_expert_).matmul(1, xt.data(), u.data());
        for (int64_t i = 0; i < ff; ++i) g[i] = silu(g[i]) * u[i];
        down_.block(e, n_expert_).matmul(1, g.data(), y.data());
        for (int64_t i = 0; i < n_embd; ++i) acc[i] += weights[t * k_ + j] * y[i];
      }
      narrow(acc, out + t * n_embd);
    }
  }
  void wait(ops::ExecContext&) override {}

 private:
  Rows gate_, up_, down_;
  int64_t n_expert_, k_;
  std::vector<bool> served_;
};

}  // namespace

registry::OpImpl moe_gate_impl() {
  auto check = [](const OpCreateArgs& a) {
    const model::ModelConfig& c = a.config;
    Check ch(a, "ref.moe_gate");
    ch.role("weight").role("bias", true);
    ch.shape("weight", {c.n_embd, c.n_expert}).shape("bias", {c.n_expert});
    ch.require(c.n_expert_used > 0 && c.n_expert_used <= c.n_expert, "top-k outside 1..n_expert");
    if (c.n_group > 1 && c.n_group_used < c.n_group) {
      ch.require(c.n_expert % c.n_group == 0 && c.n_group_used > 0 &&
                     c.n_expert_used <= c.n_group_used * (c.n_expert / c.n_group),
                 "group-limited routing keeps fewer experts than top-k");
    }
    return ch.result();
  };
  return {"ref.moe_gate",
          ModuleKind::kMoeGate,
          DeviceKind::kAccelerator,
          "reference: MoE router (softmax / sigmoid + bias, groups, top-k) in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<MoeGate>(a.module, a.config);
          }};
}

// Option experts: "3,17,42" — the part of a split experts module this operator serves.
std::vector<bool> served_experts(const OpCreateArgs& a) {
  auto it = a.options.find("experts");
  if (it == a.options.end()) return {};
  std::vector<bool> served(static_cast<size_t>(a.config.n_expert), false);
  for (int64_t id :
       exec::parse_expert_list(it->second, a.config.n_expert, "ref.experts: option experts")) {
    served[static_cast<size_t>(id)] = true;
  }
  return served;
}

registry::OpImpl experts_impl() {
  auto check = [](const OpCreateArgs& a) {
    const model::ModelConfig& c = a.config;
    return Check(a, "ref.experts", {"experts"})
        .role("gate_exps")
        .role("up_exps")
        .role("down_exps")
        .shape("gate_exps", {c.n_embd, c.n_ff_exp, c.n_expert})
        .shape("up_exps", {c.n_embd, c.n_ff_exp, c.n_expert})
        .shape("down_exps", {c.n_ff_exp, c.n_embd, c.n_expert})
        .result();
  };
  return {"ref.experts",
          ModuleKind::kExperts,
          DeviceKind::kAccelerator,
          "reference: routed experts, synchronous, in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<Experts>(a.module, a.config, served_experts(a));
          }};
}

}  // namespace ktx::backends::ref
