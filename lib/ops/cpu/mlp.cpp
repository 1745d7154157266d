// cpu.mlp: SwiGLU, out = down(silu(gate x) * up x). Gate and up share one pass over their rows
// (SiLU·mul fused); the hidden rows are quantized once for down. Dense layers and shared experts.
#include <algorithm>
#include <vector>

#include "ops/cpu/batch_matmul.h"
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/repacked.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.mlp";

class Mlp final : public MlpOp {
 public:
  Mlp(const model::ModuleDesc& m, bool repack)
      : gate_(weight_matrix(m.weight("gate"))),
        up_(weight_matrix(m.weight("up"))),
        down_(weight_matrix(m.weight("down"))) {
    if (repack) repacked_ = repack_module(m, {{&gate_, 1}, {&up_, 1}, {&down_, 1}});
    // Optional biases (llama files may carry them).
    if (const auto* b = m.find_weight("gate_bias")) gate_bias_ = VectorWeight(*b);
    if (const auto* b = m.find_weight("up_bias")) up_bias_ = VectorWeight(*b);
    if (const auto* b = m.find_weight("down_bias")) down_bias_ = VectorWeight(*b);
  }

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, int64_t n, const float* x, float* out) override {
    if (n <= 0) return;
    runtime::ThreadPool& pool = *ctx.pool;
    const int64_t n_embd = gate_.cols, n_ff = gate_.rows;
    QuantizedRows xg, xu;
    xg.quantize(&pool, gate_.dot_type, n, n_embd, x, n_embd);
    const bool same = up_.dot_type == gate_.dot_type;
    if (!same) xu.quantize(&pool, up_.dot_type, n, n_embd, x, n_embd);
    const QuantizedRows& xup = same ? xg : xu;

    std::vector<float> h(static_cast<size_t>(n * n_ff));
    // Token t's hidden units r .. r + count from its gate and up rows (g may be h's own).
    auto hidden = [&](int64_t t, int64_t r, int64_t count, float* g, float* u) {
      if (gate_bias_) {
        for (int64_t i = 0; i < count; ++i) g[i] += gate_bias_.data()[r + i];
      }
      if (up_bias_) {
        for (int64_t i = 0; i < count; ++i) u[i] += up_bias_.data()[r + i];
      }
      silu_mul(g, u, h.data() + t * n_ff + r, count);
    };
    // A batch: gate and up through the GEMM kernels where both types have one and the batch is
    // not too small for them (batch_matmul.h, small_batch).
    const BatchKernel gate_gemm = n > 1 ? batch_kernel(gate_) : BatchKernel{};
    const BatchKernel up_gemm = n > 1 ? batch_kernel(up_) : BatchKernel{};
    const bool gemm =
        gate_gemm && up_gemm && n > small_batch(gate_gemm) && n > small_batch(up_gemm);
    // up reads gate's panels when it reads the same activations packed the same way.
    const bool shared_panels = same && gate_gemm.same_panels(up_gemm);
    GemmPanels pg, pu;
    if (gemm) {
      pg.pack(&pool, gate_gemm, xg, n);
      if (!shared_panels) pu.pack(&pool, up_gemm, xup, n);
    }
    const auto rows = [&](int64_t r0, int64_t r1) {
      if (gemm) {
        // Gate straight into h, up into a block-sized buffer, then SiLU·mul in place; blocks of
        // 64 rows keep both matrices' rows in L2 while all tokens pass.
        constexpr int64_t kBlock = 64;
        std::vector<float> u(static_cast<size_t>(n * kBlock));
        for (int64_t r = r0; r < r1; r += kBlock) {
          const int64_t count = std::min(kBlock, r1 - r);
          gemm_rows(gate_gemm, gate_, r, r + count, pg, 0, n, h.data() + r, n_ff);
          gemm_rows(up_gemm, up_, r, r + count, shared_panels ? pg : pu, 0, n, u.data(), count);
          for (int64_t t = 0; t < n; ++t) {
            hidden(t, r, count, h.data() + t * n_ff + r, u.data() + t * count);
          }
        }
        return;
      }
      if (n == 1) {
        // One token: long runs of gate rows, then of up rows, one kernel call each (streams the
        // prefetchers can follow); the same dot products as below.
        constexpr int64_t kRun = 256;
        float g[kRun], u[kRun];
        for (int64_t r = r0; r < r1; r += kRun) {
          const int64_t count = std::min(kRun, r1 - r);
          gate_.dot(r, count, xg.row(0), g);
          up_.dot(r, count, xup.row(0), u);
          hidden(0, r, count, g, u);
        }
        return;
      }
      // A few tokens (or types without GEMMs): token by token over blocks of 64 rows, which
      // stay in L2 from one token to the next and are whole row tiles when repacked (the
      // blocks start at multiples of 16: row_grain).
      constexpr int64_t kBlock = 64;
      float g[kBlock], u[kBlock];
      for (int64_t r = r0; r < r1; r += kBlock) {
        const int64_t count = std::min(kBlock, r1 - r);
        for (int64_t t = 0; t < n; ++t) {
          gate_.dot(r, count, xg.row(t), g);
          up_.dot(r, count, xup.row(t), u);
          hidden(t, r, count, g, u);
        }
      }
    };
    for_row_blocks(pool, n, n_ff, 2 * n_embd, rows);  // gate and up rows together
    matmul(pool, down_, n, h.data(), n_ff, out, down_.rows);
    if (down_bias_) {
      for (int64_t t = 0; t < n; ++t) {
        for (int64_t i = 0; i < down_.rows; ++i) out[t * down_.rows + i] += down_bias_.data()[i];
      }
    }
  }

 private:
  WeightMatrix gate_, up_, down_;
  VectorWeight gate_bias_, up_bias_, down_bias_;
  std::vector<std::unique_ptr<RepackedTensor>> repacked_;  // option repack: what the matrices read
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  Checker c(a, kName);
  c.options({"repack"}).require(repack_option_error(a.options));
  c.matmul("gate").matmul("up").matmul("down");
  c.dequantize("gate_bias", true).dequantize("up_bias", true).dequantize("down_bias", true);
  if (c.result()) return c.result();
  const auto& g = a.module.weight("gate");
  const int64_t n_embd = g.shape[0], n_ff = g.rows();
  c.require(g.shape.size() == 2, "gate is not a matrix");
  c.shape("up", {n_embd, n_ff}).shape("down", {n_ff, n_embd});
  c.shape("gate_bias", {n_ff}).shape("up_bias", {n_ff}).shape("down_bias", {n_embd});
  return c.result();
}

}  // namespace

registry::OpImpl mlp_impl() {
  return {std::string(kName),
          model::ModuleKind::kMlp,
          registry::DeviceKind::kCpu,
          "SwiGLU MLP (gate and up fused), dense layers and shared experts",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<Mlp>(a.module, *parse_repack(a.options));
          }};
}

}  // namespace ktx::ops::cpu
