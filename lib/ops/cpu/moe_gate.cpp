// cpu.moe_gate: the DeepSeek router. logits = W x; scores = softmax (V2) or sigmoid (V3);
// selection on scores + exp_probs_b (V3's bias, selection only); group-limited routing when
// n_group > 1; top-k; weights are the unbiased scores of the chosen experts, normalised when
// expert_weights_norm, times expert_weights_scale.
//
// Group scores follow each model's HF code by gating function: V2 (softmax,
// "group_limited_greedy") ranks a group by its best expert score; V3 (sigmoid, "noaux_tc") by the
// sum of its two best biased scores. Experts outside the kept groups are excluded outright
// (-inf, as DeepSeek's own inference code and llama.cpp do; HF fills them with 0.0, which differs
// only when every kept score is negative). Ties go to the lower expert / group index.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.moe_gate";

// llama.cpp clamps the sum of the chosen weights from below at this (the smallest normal f16)
// before dividing; HF adds 1e-20. Both only matter for a degenerate all-zero selection.
constexpr float kMinWeightSum = 6.103515625e-5f;

class MoeGate final : public MoeGateOp {
 public:
  MoeGate(const model::ModuleDesc& m, const model::ModelConfig& c)
      : w_(weight_matrix(m.weight("weight"))),
        n_expert_(w_.rows),
        k_(c.n_expert_used),
        sigmoid_(c.gating == model::GatingFunc::kSigmoid),
        norm_(c.expert_weights_norm),
        scale_(c.expert_weights_scale),
        n_group_(c.n_group > 1 && c.n_group_used < c.n_group ? c.n_group : 1),
        n_group_used_(c.n_group_used) {
    if (const auto* b = m.find_weight("bias")) bias_ = VectorWeight(*b);
  }

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, int64_t n, const float* x, int32_t* ids, float* weights) override {
    if (n <= 0) return;
    std::vector<float> logits(static_cast<size_t>(n * n_expert_));
    matmul(*ctx.pool, w_, n, x, w_.cols, logits.data(), n_expert_);
    ctx.pool->parallel_for(n, 16, [&](int64_t t0, int64_t t1) {
      std::vector<float> scores(static_cast<size_t>(n_expert_));
      std::vector<float> select(static_cast<size_t>(n_expert_));
      std::vector<int32_t> order(static_cast<size_t>(n_expert_));
      for (int64_t t = t0; t < t1; ++t) {
        route(logits.data() + t * n_expert_, scores, select, order, ids + t * k_, weights + t * k_);
      }
    });
  }

 private:
  void route(const float* logits, std::vector<float>& scores, std::vector<float>& select,
             std::vector<int32_t>& order, int32_t* ids, float* weights) const {
    const int64_t n_e = n_expert_;
    if (sigmoid_) {
      for (int64_t e = 0; e < n_e; ++e) {
        scores[e] = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(logits[e]))));
      }
    } else {
      std::copy(logits, logits + n_e, scores.begin());
      softmax_inplace(scores.data(), n_e);
    }
    for (int64_t e = 0; e < n_e; ++e) select[e] = scores[e] + (bias_ ? bias_.data()[e] : 0.0f);

    if (n_group_ > 1) mask_groups(select);

    // Top-k by selection score, ties to the lower index: a stable partial sort of the indices.
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + k_, order.end(), [&](int32_t a, int32_t b) {
      return select[a] > select[b] || (select[a] == select[b] && a < b);
    });
    double sum = 0.0;
    for (int64_t j = 0; j < k_; ++j) {
      ids[j] = order[j];
      weights[j] = scores[order[j]];
      sum += weights[j];
    }
    const float norm =
        norm_ ? static_cast<float>(1.0 / std::max<double>(sum, kMinWeightSum)) : 1.0f;
    for (int64_t j = 0; j < k_; ++j) weights[j] = weights[j] * norm * scale_;
  }

  // Keeps the n_group_used best groups; the others' experts can no longer be chosen.
  void mask_groups(std::vector<float>& select) const {
    const int64_t group_size = n_expert_ / n_group_;
    std::vector<float> group_score(static_cast<size_t>(n_group_));
    for (int64_t g = 0; g < n_group_; ++g) {
      const float* s = select.data() + g * group_size;
      float best = -std::numeric_limits<float>::infinity(), second = best;
      for (int64_t i = 0; i < group_size; ++i) {
        if (s[i] > best) {
          second = best;
          best = s[i];
        } else if (s[i] > second) {
          second = s[i];
        }
      }
      // V3 sums the top two (a group of one expert counts that one alone); V2 takes the best.
      group_score[g] = sigmoid_ ? best + (group_size > 1 ? second : 0.0f) : best;
    }
    std::vector<int64_t> groups(static_cast<size_t>(n_group_));
    std::iota(groups.begin(), groups.end(), 0);
    std::stable_sort(groups.begin(), groups.end(),
                     [&](int64_t a, int64_t b) { return group_score[a] > group_score[b]; });
    for (int64_t rank = n_group_used_; rank < n_group_; ++rank) {
      float* s = select.data() + groups[rank] * group_size;
      std::fill(s, s + group_size, -std::numeric_limits<float>::infinity());
    }
  }

  WeightMatrix w_;
  VectorWeight bias_;
  int64_t n_expert_;
  int64_t k_;
  bool sigmoid_;
  bool norm_;
  float scale_;
  int64_t n_group_;
  int64_t n_group_used_;
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  const model::ModelConfig& c = a.config;
  Checker ch(a, kName);
  ch.options({}).matmul("weight").dequantize("bias", true);
  ch.shape("weight", {c.n_embd, c.n_expert}).shape("bias", {c.n_expert});
  ch.require(c.n_expert > 0 && c.n_expert_used > 0 && c.n_expert_used <= c.n_expert,
             fmt::format("n_expert_used = {} of n_expert = {}", c.n_expert_used, c.n_expert));
  if (c.n_group > 1 && c.n_group_used < c.n_group) {
    ch.require(c.n_expert % c.n_group == 0 && c.n_group_used > 0 &&
                   c.n_expert_used <= c.n_group_used * (c.n_expert / c.n_group),
               fmt::format("group-limited routing with {} experts in {} groups, {} groups kept, "
                           "top-{}",
                           c.n_expert, c.n_group, c.n_group_used, c.n_expert_used));
  }
  return ch.result();
}

}  // namespace

registry::OpImpl moe_gate_impl() {
  return {std::string(kName),
          model::ModuleKind::kMoeGate,
          registry::DeviceKind::kCpu,
          "MoE router: softmax or sigmoid+bias, group-limited top-k, norm and scale",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<MoeGate>(a.module, a.config);
          }};
}

}  // namespace ktx::ops::cpu
