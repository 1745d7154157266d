// cpu.gqa_attention: llama's grouped-query attention. q, k, v projections (optional biases),
// RoPE on q and k (interleaved pairs, as llama.cpp applies to llama GGUFs, whose converter
// permuted the q/k weights for it; optional rope_freqs divisors), K and V appended to the cache,
// causal softmax attention with n_head / n_head_kv query heads per key/value head, then the
// output projection. Parallel over query heads.
#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "kernels/cpu/attention.h"
#include "ktx/error.h"
#include "ops/cpu/attention_util.h"
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/rope.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.gqa_attention";

const float* freq_factors(const model::ModuleDesc& m, VectorWeight& holder) {
  const gguf::TensorInfo* t = m.find_weight("rope_freqs");
  if (t == nullptr) return nullptr;
  holder = VectorWeight(*t);
  return holder.data();
}

class GqaAttention final : public AttentionOp {
 public:
  GqaAttention(const model::ModuleDesc& m, const model::ModelConfig& c)
      : n_head_(c.n_head),
        n_head_kv_(c.n_head_kv),
        head_dim_(c.head_dim),
        scale_(c.attention_scale()),
        q_(weight_matrix(m.weight("q"))),
        k_(weight_matrix(m.weight("k"))),
        v_(weight_matrix(m.weight("v"))),
        out_(weight_matrix(m.weight("output"))),
        rope_(c, freq_factors(m, rope_freqs_)) {
    if (const auto* b = m.find_weight("q_bias")) q_bias_ = VectorWeight(*b);
    if (const auto* b = m.find_weight("k_bias")) k_bias_ = VectorWeight(*b);
    if (const auto* b = m.find_weight("v_bias")) v_bias_ = VectorWeight(*b);
    if (const auto* b = m.find_weight("output_bias")) out_bias_ = VectorWeight(*b);
  }

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, const Batch& batch, const float* x, float* out,
               runtime::LayerKvCache& cache) override {
    const int64_t n = batch.n_tokens, pos0 = batch.pos0;
    if (n <= 0) return;
    const int64_t kv_width = n_head_kv_ * head_dim_, q_width = n_head_ * head_dim_;
    check_cache(cache, kv_width, kv_width, pos0 + n, "cpu.gqa_attention");
    runtime::ThreadPool& pool = *ctx.pool;
    const int64_t n_embd = q_.cols;

    std::vector<float> q(static_cast<size_t>(n * q_width));
    QuantizedRows xq;
    xq.quantize(&pool, q_.dot_type, n, n_embd, x, n_embd);
    matmul(pool, q_, xq, n, q.data(), q_width);
    // K and V go straight into the cache rows of their positions.
    const auto project = [&](const WeightMatrix& w, float* dst, int64_t ld) {
      if (w.dot_type == q_.dot_type) {
        matmul(pool, w, xq, n, dst, ld);
      } else {
        matmul(pool, w, n, x, n_embd, dst, ld);
      }
    };
    project(k_, cache.a_row(pos0), kv_width);
    project(v_, cache.b_row(pos0), kv_width);
    add_bias(q_bias_, q.data(), n, q_width);
    add_bias(k_bias_, cache.a_row(pos0), n, kv_width);
    add_bias(v_bias_, cache.b_row(pos0), n, kv_width);

    std::vector<float> cos(static_cast<size_t>(rope_.n_dims() / 2)), sin(cos.size());
    for (int64_t t = 0; t < n; ++t) {
      rope_.angles(pos0 + t, cos.data(), sin.data());
      for (int64_t h = 0; h < n_head_; ++h) {
        rope_.rotate(cos.data(), sin.data(), q.data() + t * q_width + h * head_dim_);
      }
      for (int64_t h = 0; h < n_head_kv_; ++h) {
        rope_.rotate(cos.data(), sin.data(), cache.a_row(pos0 + t) + h * head_dim_);
      }
    }

    std::vector<float> o(static_cast<size_t>(n * q_width));
    const int64_t group = n_head_ / n_head_kv_;
    // Per head, blocks of tokens against the cache through the tier's f32 tile kernels
    // (kernels/cpu/attention.h): the scores of a block against every key its last token sees,
    // then each token's softmax over its own keys and the weighted sum of exactly those value
    // rows (causal_block). Blocks of 16 keep the unused corner of the scores small.
    constexpr int64_t kTokenBlock = 16;
    const auto scores = kernels::cpu::mla_scores_fn();
    const auto lda = static_cast<size_t>(cache.width_a), ldb = static_cast<size_t>(cache.width_b);
    const auto ldq = static_cast<size_t>(q_width);
    if (n == 1) {
      decode_step(pool, pos0, q.data(), o.data(), cache);
      matmul(pool, out_, n, o.data(), q_width, out, out_.rows);
      add_bias(out_bias_, out, n, out_.rows);
      return;
    }
    pool.parallel_for(n_head_, 1, [&](int64_t h0, int64_t h1) {
      std::vector<float> p;
      for (int64_t h = h0; h < h1; ++h) {
        const int64_t kv_off = (h / group) * head_dim_;
        for (int64_t t0 = 0; t0 < n; t0 += kTokenBlock) {
          const int64_t nt = std::min(kTokenBlock, n - t0);
          const int64_t keys = pos0 + t0 + nt;  // what the block's last token sees
          const auto ldp = static_cast<size_t>(keys);
          p.resize(static_cast<size_t>(nt) * ldp);
          scores(nt, keys, q.data() + t0 * q_width + h * head_dim_, ldq, cache.a_row(0) + kv_off,
                 lda, head_dim_, nullptr, 0, nullptr, 0, 0, scale_, p.data(), ldp);
          // Causal: token t0 + i sees itself and everything before it.
          causal_block(nt, pos0 + t0 + 1, p.data(), ldp, cache.b_row(0) + kv_off, ldb, head_dim_,
                       o.data() + t0 * q_width + h * head_dim_, ldq);
        }
      }
    });
    matmul(pool, out_, n, o.data(), q_width, out, out_.rows);
    add_bias(out_bias_, out, n, out_.rows);
  }

 private:
  static void add_bias(const VectorWeight& b, float* y, int64_t n, int64_t width) {
    if (!b) return;
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t i = 0; i < width; ++i) y[t * width + i] += b.data()[i];
    }
  }

  // One token: the query heads of each K/V head together, so each cache row is loaded once per
  // group (the tile kernels block up to 4 heads); the scores in parallel over chunks of keys,
  // the weighted sums over the K/V heads. Each output is computed as in the batch path.
  void decode_step(runtime::ThreadPool& pool, int64_t pos, const float* q, float* o,
                   const runtime::LayerKvCache& cache) const {
    const int64_t keys = pos + 1, group = n_head_ / n_head_kv_;
    const auto ldp = static_cast<size_t>(keys), hd = static_cast<size_t>(head_dim_);
    const auto lda = static_cast<size_t>(cache.width_a), ldb = static_cast<size_t>(cache.width_b);
    const auto scores = kernels::cpu::mla_scores_fn();
    const auto weighted_sum = kernels::cpu::mla_weighted_sum_fn();
    std::vector<float> p(static_cast<size_t>(n_head_) * ldp);
    pool.parallel_for(keys, 16, [&](int64_t s0, int64_t s1) {
      for (int64_t g = 0; g < n_head_kv_; ++g) {
        scores(group, s1 - s0, q + g * group * head_dim_, hd, cache.a_row(s0) + g * head_dim_, lda,
               head_dim_, nullptr, 0, nullptr, 0, 0, scale_, p.data() + g * group * keys + s0, ldp);
      }
    });
    pool.parallel_for(n_head_, 1, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) softmax_inplace(p.data() + h * keys, keys);
    });
    pool.parallel_for(n_head_kv_, 1, [&](int64_t g0, int64_t g1) {
      for (int64_t g = g0; g < g1; ++g) {
        weighted_sum(group, keys, p.data() + g * group * keys, ldp, cache.b_row(0) + g * head_dim_,
                     ldb, head_dim_, o + g * group * head_dim_, hd, false);
      }
    });
  }

  int64_t n_head_, n_head_kv_, head_dim_;
  float scale_;
  WeightMatrix q_, k_, v_, out_;
  VectorWeight q_bias_, k_bias_, v_bias_, out_bias_, rope_freqs_;
  Rope rope_;
};

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  const model::ModelConfig& c = a.config;
  Checker ch(a, kName);
  ch.options({});
  ch.require(c.n_head > 0 && c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0 && c.head_dim > 0,
             fmt::format("n_head = {} is not a multiple of n_head_kv = {}", c.n_head, c.n_head_kv));
  ch.require(c.rope.n_dims % 2 == 0 && c.rope.n_dims <= c.head_dim,
             fmt::format("rope.n_dims = {} with head_dim {}", c.rope.n_dims, c.head_dim));
  if (ch.result()) return ch.result();
  const int64_t q_width = c.n_head * c.head_dim, kv_width = c.n_head_kv * c.head_dim;
  ch.matmul("q").matmul("k").matmul("v").matmul("output");
  ch.shape("q", {c.n_embd, q_width}).shape("k", {c.n_embd, kv_width});
  ch.shape("v", {c.n_embd, kv_width}).shape("output", {q_width, c.n_embd});
  for (const char* role : {"q_bias", "k_bias", "v_bias", "output_bias", "rope_freqs"}) {
    ch.dequantize(role, true);
  }
  ch.shape("q_bias", {q_width}).shape("k_bias", {kv_width}).shape("v_bias", {kv_width});
  ch.shape("output_bias", {c.n_embd}).shape("rope_freqs", {c.rope.n_dims / 2});
  return ch.result();
}

}  // namespace

registry::OpImpl gqa_attention_impl() {
  return {std::string(kName),
          model::ModuleKind::kGqaAttention,
          registry::DeviceKind::kCpu,
          "grouped-query attention with RoPE over an f32 K/V cache",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<GqaAttention>(a.module, a.config);
          }};
}

}  // namespace ktx::ops::cpu
