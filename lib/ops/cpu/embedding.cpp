// cpu.embedding: each token's row of token_embd, dequantized straight into the output.
#include <fmt/format.h>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.embedding";

class Embedding final : public EmbeddingOp {
 public:
  explicit Embedding(const gguf::TensorInfo& w)
      : w_(w), n_embd_(w.shape[0]), n_vocab_(w.rows()), row_bytes_(row_size(w.type, n_embd_)) {}

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, std::span<const int32_t> tokens, float* out) override {
    for (int32_t id : tokens) {
      if (id < 0 || id >= n_vocab_) {
        throw Error(
            ErrorCode::kInvalidArgument,
            fmt::format("{}: token id {} outside the vocabulary [0, {})", w_.name, id, n_vocab_));
      }
    }
    const auto n = static_cast<int64_t>(tokens.size());
    ctx.pool->parallel_for(n, 16, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        quant::dequantize_row(w_.type, w_.data + static_cast<size_t>(tokens[t]) * row_bytes_,
                              out + t * n_embd_, n_embd_);
      }
    });
  }

 private:
  const gguf::TensorInfo& w_;
  int64_t n_embd_;
  int64_t n_vocab_;
  size_t row_bytes_;
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  return Checker(a, kName)
      .options({})
      .dequantize("weight")
      .shape("weight", {a.config.n_embd, a.config.n_vocab})
      .result();
}

}  // namespace

registry::OpImpl embedding_impl() {
  return {std::string(kName),
          model::ModuleKind::kEmbedding,
          registry::DeviceKind::kCpu,
          "token embedding rows, dequantized from any readable type",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<Embedding>(a.module.weight("weight"));
          }};
}

}  // namespace ktx::ops::cpu
