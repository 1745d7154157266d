// cpu.lm_head: logits = x · Wᵀ over the output (or tied embedding) matrix.
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/repacked.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.lm_head";

class LmHead final : public LmHeadOp {
 public:
  LmHead(const model::ModuleDesc& m, bool repack) : w_(weight_matrix(m.weight("weight"))) {
    if (repack) repacked_ = repack_module(m, {{&w_, 1}});
  }

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, int64_t n_tokens, const float* x, float* logits) override {
    matmul(*ctx.pool, w_, n_tokens, x, w_.cols, logits, w_.rows);
  }

 private:
  WeightMatrix w_;
  std::vector<std::unique_ptr<RepackedTensor>> repacked_;  // option repack: what w_ reads
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  return Checker(a, kName)
      .options({"repack"})
      .require(repack_option_error(a.options))
      .matmul("weight")
      .shape("weight", {a.config.n_embd, a.config.n_vocab})
      .result();
}

}  // namespace

registry::OpImpl lm_head_impl() {
  return {std::string(kName),
          model::ModuleKind::kLmHead,
          registry::DeviceKind::kCpu,
          "output projection to logits (quantized activations, parallel over vocab rows)",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<LmHead>(a.module, *parse_repack(a.options));
          }};
}

}  // namespace ktx::ops::cpu
