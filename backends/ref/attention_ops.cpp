// ref.mla_attention and ref.gqa_attention: causal self-attention over the session's cache, in
// double, one head and one position at a time.
//
// MLA (DeepSeek-V2 paper, the non-absorbed form): per token
//   q = W_q x, or W_q_b rmsnorm(W_q_a x)        -> per head [q_nope | q_pe]
//   [c_kv | k_pe] = W_kv_a x;  c_kv = rmsnorm(c_kv);  RoPE on q_pe and k_pe
// The cache keeps c_kv and k_pe only (LayerKvCache a / b). For each head, every cached latent is
// decompressed into k_nope = W_UK c_kv and v = W_UV c_kv, then
//   score = (q_nope·k_nope + q_pe·k_pe) · scale;  o = Σ softmax(score) v;  out = W_o [o_1 … o_H]
// W_UK / W_UV come from attn_kv_b (rows per head: [k_nope | v]) or from attn_k_b / attn_v_b.
#include <fmt/format.h>

#include <memory>

#include "ktx/error.h"
#include "ops/operator.h"
#include "ref.h"

namespace ktx::backends::ref {
namespace {

using model::ModuleKind;
using registry::DeviceKind;
using registry::OpCreateArgs;

void check_cache(const runtime::LayerKvCache& cache, int64_t width_a, int64_t width_b, int64_t end,
                 const char* impl) {
  const bool ok = cache.width_a == width_a && cache.width_b == width_b &&
                  static_cast<int64_t>(cache.a.size()) >= end * width_a &&
                  static_cast<int64_t>(cache.b.size()) >= end * width_b;
  if (!ok) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("{}: the cache has widths {} / {} and {} positions; this layer needs "
                    "{} / {} and {}",
                    impl, cache.width_a, cache.width_b,
                    cache.width_a > 0 ? cache.a.size() / static_cast<size_t>(cache.width_a) : 0,
                    width_a, width_b, end));
  }
  require_device_array(cache.a.data(), end * width_a, "the cache's first array", impl);
  require_device_array(cache.b.data(), end * width_b, "the cache's second array", impl);
}

void store(const double* v, int64_t n, float* dst) {
  for (int64_t i = 0; i < n; ++i) dst[i] = static_cast<float>(v[i]);
}

// Softmax attention of one query over `n_keys` keys: o[dv] = Σ_s softmax(score)_s · value(s).
template <class Score, class Value>
void attend(int64_t n_keys, int64_t dv, Score score, Value value, double* o) {
  std::vector<double> p(static_cast<size_t>(n_keys));
  for (int64_t s = 0; s < n_keys; ++s) p[s] = score(s);
  softmax(p.data(), n_keys);
  std::fill(o, o + dv, 0.0);
  for (int64_t s = 0; s < n_keys; ++s) {
    const double* v = value(s);
    for (int64_t d = 0; d < dv; ++d) o[d] += p[s] * v[d];
  }
}

class MlaAttention final : public ops::AttentionOp {
 public:
  MlaAttention(const model::ModuleDesc& m, const model::ModelConfig& c)
      : c_(c),
        kv_a_(m.weight("kv_a_mqa")),
        out_(m.weight("output")),
        kv_a_norm_(Rows(m.weight("kv_a_norm")).all()),
        rope_(c, c.qk_rope_head_dim) {
    if (c.q_lora_rank > 0) {
      q_a_ = Rows(m.weight("q_a"));
      q_a_norm_ = Rows(m.weight("q_a_norm")).all();
      q_b_ = Rows(m.weight("q_b"));
    } else {
      q_ = Rows(m.weight("q"));
    }
    split_ = m.find_weight("k_b") && m.find_weight("v_b") &&
             (c.mla_split_kv_b || m.find_weight("kv_b") == nullptr);
    if (split_) {
      k_b_ = Rows(m.weight("k_b"));
      v_b_ = Rows(m.weight("v_b"));
    } else {
      kv_b_ = Rows(m.weight("kv_b"));
    }
  }
  std::string impl_name() const override { return "ref.mla_attention"; }

  void forward(ops::ExecContext&, const ops::Batch& batch, const float* x, float* out,
               runtime::LayerKvCache& cache) override {
    const int64_t n = batch.n_tokens, pos0 = batch.pos0, end = pos0 + n;
    const int64_t H = c_.n_head, nope = c_.qk_nope_head_dim, rope = c_.qk_rope_head_dim;
    const int64_t dv = c_.v_head_dim, rank = c_.kv_lora_rank, qk = nope + rope;
    if (n <= 0) return;
    check_cache(cache, rank, rope, end, "ref.mla_attention");
    require_device_array(x, n * kv_a_.cols(), "the input", impl_name());
    require_device_array(out, n * kv_a_.cols(), "the output", impl_name());
    const std::vector<double> xd = widen(x, n * kv_a_.cols());

    std::vector<double> q(static_cast<size_t>(n * H * qk));
    if (c_.q_lora_rank > 0) {
      const int64_t r = q_a_.rows();
      std::vector<double> cq(static_cast<size_t>(n * r));
      q_a_.matmul(n, xd.data(), cq.data());
      for (int64_t t = 0; t < n; ++t) rms_norm(&cq[t * r], q_a_norm_.data(), r, c_.rms_eps);
      q_b_.matmul(n, cq.data(), q.data());
    } else {
      q_.matmul(n, xd.data(), q.data());
    }
    std::vector<double> kv(static_cast<size_t>(n * (rank + rope)));
    kv_a_.matmul(n, xd.data(), kv.data());
    for (int64_t t = 0; t < n; ++t) {
      double* c_kv = &kv[t * (rank + rope)];
      double* k_pe = c_kv + rank;
      rms_norm(c_kv, kv_a_norm_.data(), rank, c_.rms_eps);
      rope_.apply(pos0 + t, k_pe);
      store(c_kv, rank, cache.a_row(pos0 + t));
      store(k_pe, rope, cache.b_row(pos0 + t));
      for (int64_t h = 0; h < H; ++h) rope_.apply(pos0 + t, &q[(t * H + h) * qk + nope]);
    }

    const double scale = c_.attention_scale();
    std::vector<double> o(static_cast<size_t>(n * H * dv));
    std::vector<double> w_uk(static_cast<size_t>(nope * rank)),
        w_uv(static_cast<size_t>(dv * rank));
    std::vector<double> k_nope(static_cast<size_t>(end * nope)), v(static_cast<size_t>(end * dv));
    std::vector<double> k_pe(static_cast<size_t>(end * rope));
    for (int64_t s = 0; s < end; ++s) {
      for (int64_t i = 0; i < rope; ++i) k_pe[s * rope + i] = cache.b_row(s)[i];
    }
    for (int64_t h = 0; h < H; ++h) {
      head_weights(h, w_uk.data(), w_uv.data());
      for (int64_t s = 0; s < end; ++s) {  // decompress every cached latent for this head
        const std::vector<double> c_kv = widen(cache.a_row(s), rank);
        project(w_uk.data(), nope, rank, c_kv.data(), &k_nope[s * nope]);
        project(w_uv.data(), dv, rank, c_kv.data(), &v[s * dv]);
      }
      for (int64_t t = 0; t < n; ++t) {
        const double* qh = &q[(t * H + h) * qk];
        auto score = [&](int64_t s) {
          double sum = 0.0;
          for (int64_t d = 0; d < nope; ++d) sum += qh[d] * k_nope[s * nope + d];
          for (int64_t d = 0; d < rope; ++d) sum += qh[nope + d] * k_pe[s * rope + d];
          return sum * scale;
        };
        attend(
            pos0 + t + 1, dv, score, [&](int64_t s) { return &v[s * dv]; }, &o[(t * H + h) * dv]);
      }
    }
    std::vector<double> y(static_cast<size_t>(n * out_.rows()));
    out_.matmul(n, o.data(), y.data());
    narrow(y, out);
  }

 private:
  // y[rows] = W[rows][cols] · x[cols]
  static void project(const double* w, int64_t rows, int64_t cols, const double* x, double* y) {
    for (int64_t r = 0; r < rows; ++r) {
      double sum = 0.0;
      for (int64_t c = 0; c < cols; ++c) sum += w[r * cols + c] * x[c];
      y[r] = sum;
    }
  }

  // Head h's W_UK [nope][rank] and W_UV [v][rank].
  void head_weights(int64_t h, double* w_uk, double* w_uv) const {
    const int64_t H = c_.n_head, nope = c_.qk_nope_head_dim, dv = c_.v_head_dim;
    const int64_t rank = c_.kv_lora_rank;
    if (!split_) {  // attn_kv_b: rows h·(nope+v) .. : nope rows of W_UK, then v rows of W_UV
      const Rows head = kv_b_.block(h, H);
      for (int64_t d = 0; d < nope; ++d) head.row(d, w_uk + d * rank);
      for (int64_t d = 0; d < dv; ++d) head.row(nope + d, w_uv + d * rank);
      return;
    }
    // attn_k_b [nope, rank, H]: head h is rank rows of nope values, i.e. W_UK transposed.
    const Rows k_b = k_b_.block(h, H);
    std::vector<double> row(static_cast<size_t>(nope));
    for (int64_t r = 0; r < rank; ++r) {
      k_b.row(r, row.data());
      for (int64_t d = 0; d < nope; ++d) w_uk[d * rank + r] = row[d];
    }
    const Rows v_b = v_b_.block(h, H);  // attn_v_b [rank, v, H]: W_UV as is
    for (int64_t d = 0; d < dv; ++d) v_b.row(d, w_uv + d * rank);
  }

  model::ModelConfig c_;
  Rows q_, q_a_, q_b_, kv_a_, kv_b_, k_b_, v_b_, out_;
  std::vector<double> q_a_norm_, kv_a_norm_;
  bool split_ = false;
  Rotary rope_;
};

// llama's grouped-query attention: query head h reads key/value head h / (n_head / n_head_kv).
class GqaAttention final : public ops::AttentionOp {
 public:
  GqaAttention(const model::ModuleDesc& m, const model::ModelConfig& c)
      : c_(c),
        q_(m.weight("q")),
        k_(m.weight("k")),
        v_(m.weight("v")),
        out_(m.weight("output")),
        rope_(c, c.rope.n_dims, divisors(m)) {
    if (const auto* b = m.find_weight("q_bias")) q_bias_ = Rows(*b).all();
    if (const auto* b = m.find_weight("k_bias")) k_bias_ = Rows(*b).all();
    if (const auto* b = m.find_weight("v_bias")) v_bias_ = Rows(*b).all();
    if (const auto* b = m.find_weight("output_bias")) out_bias_ = Rows(*b).all();
  }
  std::string impl_name() const override { return "ref.gqa_attention"; }

  void forward(ops::ExecContext&, const ops::Batch& batch, const float* x, float* out,
               runtime::LayerKvCache& cache) override {
    const int64_t n = batch.n_tokens, pos0 = batch.pos0, end = pos0 + n;
    const int64_t H = c_.n_head, H_kv = c_.n_head_kv, hd = c_.head_dim;
    if (n <= 0) return;
    check_cache(cache, H_kv * hd, H_kv * hd, end, "ref.gqa_attention");
    require_device_array(x, n * q_.cols(), "the input", impl_name());
    require_device_array(out, n * q_.cols(), "the output", impl_name());
    const std::vector<double> xd = widen(x, n * q_.cols());
    std::vector<double> q(static_cast<size_t>(n * H * hd));
    std::vector<double> k(static_cast<size_t>(n * H_kv * hd)), v(k.size());
    q_.matmul(n, xd.data(), q.data());
    k_.matmul(n, xd.data(), k.data());
    v_.matmul(n, xd.data(), v.data());
    add_bias(q_bias_, n, q);
    add_bias(k_bias_, n, k);
    add_bias(v_bias_, n, v);
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < H; ++h) rope_.apply(pos0 + t, &q[(t * H + h) * hd]);
      for (int64_t h = 0; h < H_kv; ++h) rope_.apply(pos0 + t, &k[(t * H_kv + h) * hd]);
      store(&k[t * H_kv * hd], H_kv * hd, cache.a_row(pos0 + t));
      store(&v[t * H_kv * hd], H_kv * hd, cache.b_row(pos0 + t));
    }

    const double scale = c_.attention_scale();
    const std::vector<double> keys = widen(cache.a.data(), end * H_kv * hd);
    const std::vector<double> values = widen(cache.b.data(), end * H_kv * hd);
    std::vector<double> o(static_cast<size_t>(n * H * hd));
    for (int64_t t = 0; t < n; ++t) {
      for (int64_t h = 0; h < H; ++h) {
        const int64_t kv_head = h / (H / H_kv);
        const double* qh = &q[(t * H + h) * hd];
        auto score = [&](int64_t s) {
          const double* kh = &keys[(s * H_kv + kv_head) * hd];
          double sum = 0.0;
          for (int64_t d = 0; d < hd; ++d) sum += qh[d] * kh[d];
          return sum * scale;
        };
        attend(
            pos0 + t + 1, hd, score, [&](int64_t s) { return &values[(s * H_kv + kv_head) * hd]; },
            &o[(t * H + h) * hd]);
      }
    }
    std::vector<double> y(static_cast<size_t>(n * out_.rows()));
    out_.matmul(n, o.data(), y.data());
    add_bias(out_bias_, n, y);
    narrow(y, out);
  }

 private:
  static std::vector<double> divisors(const model::ModuleDesc& m) {
    const gguf::TensorInfo* t = m.find_weight("rope_freqs");
    return t ? Rows(*t).all() : std::vector<double>();
  }
  static void add_bias(const std::vector<double>& b, int64_t n, std::vector<double>& y) {
    if (b.empty()) return;
    const size_t w = b.size();
    for (int64_t t = 0; t < n; ++t) {
      for (size_t i = 0; i < w; ++i) y[static_cast<size_t>(t) * w + i] += b[i];
    }
  }

  model::ModelConfig c_;
  Rows q_, k_, v_, out_;
  std::vector<double> q_bias_, k_bias_, v_bias_, out_bias_;
  Rotary rope_;
};

}  // namespace

registry::OpImpl mla_attention_impl() {
  auto check = [](const OpCreateArgs& a) {
    const model::ModelConfig& c = a.config;
    const model::ModuleDesc& m = a.module;
    Check ch(a, "ref.mla_attention");
    ch.require(c.arch == model::Architecture::kDeepseek2, "MLA needs a deepseek2 model");
    ch.require(c.rope.n_dims == c.qk_rope_head_dim && c.qk_rope_head_dim % 2 == 0,
               "rope.dimension_count must equal an even qk_rope_head_dim");
    if (c.q_lora_rank > 0) {
      ch.role("q_a").role("q_a_norm").role("q_b");
    } else {
      ch.role("q");
    }
    ch.role("kv_a_mqa").role("kv_a_norm").role("output");
    const bool split = m.find_weight("k_b") && m.find_weight("v_b") &&
                       (c.mla_split_kv_b || m.find_weight("kv_b") == nullptr);
    if (split) {
      ch.role("k_b").role("v_b");
    } else {
      ch.role("kv_b");
    }
    const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
    return ch.shape("q", {c.n_embd, c.n_head * qk})
        .shape("q_a", {c.n_embd, c.q_lora_rank})
        .shape("q_a_norm", {c.q_lora_rank})
        .shape("q_b", {c.q_lora_rank, c.n_head * qk})
        .shape("kv_a_mqa", {c.n_embd, c.kv_lora_rank + c.qk_rope_head_dim})
        .shape("kv_a_norm", {c.kv_lora_rank})
        .shape("kv_b", {c.kv_lora_rank, c.n_head * (c.qk_nope_head_dim + c.v_head_dim)})
        .shape("k_b", {c.qk_nope_head_dim, c.kv_lora_rank, c.n_head})
        .shape("v_b", {c.kv_lora_rank, c.v_head_dim, c.n_head})
        .shape("output", {c.n_head * c.v_head_dim, c.n_embd})
        .result();
  };
  return {"ref.mla_attention",
          ModuleKind::kMlaAttention,
          DeviceKind::kAccelerator,
          "reference: MLA, latent cache decompressed per head (non-absorbed), in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<MlaAttention>(a.module, a.config);
          }};
}

registry::OpImpl gqa_attention_impl() {
  auto check = [](const OpCreateArgs& a) {
    const model::ModelConfig& c = a.config;
    const int64_t hd = c.head_dim;
    Check ch(a, "ref.gqa_attention");
    ch.require(c.n_head_kv > 0 && c.n_head % c.n_head_kv == 0,
               "n_head must be a multiple of n_head_kv");
    ch.require(c.rope.n_dims % 2 == 0 && c.rope.n_dims <= hd,
               "rope.dimension_count must be even "
               "and at most head_dim");
    ch.role("q").role("k").role("v").role("output");
    ch.role("q_bias", true).role("k_bias", true).role("v_bias", true).role("output_bias", true);
    ch.role("rope_freqs", true);
    return ch.shape("q", {c.n_embd, c.n_head * hd})
        .shape("k", {c.n_embd, c.n_head_kv * hd})
        .shape("v", {c.n_embd, c.n_head_kv * hd})
        .shape("output", {c.n_head * hd, c.n_embd})
        .shape("q_bias", {c.n_head * hd})
        .shape("k_bias", {c.n_head_kv * hd})
        .shape("v_bias", {c.n_head_kv * hd})
        .shape("output_bias", {c.n_embd})
        .shape("rope_freqs", {c.rope.n_dims / 2})
        .result();
  };
  return {"ref.gqa_attention",
          ModuleKind::kGqaAttention,
          DeviceKind::kAccelerator,
          "reference: grouped-query attention over the K/V cache, in double",
          check,
          [check](const OpCreateArgs& a) -> std::unique_ptr<ops::Operator> {
            throw_if(check(a));
            return std::make_unique<GqaAttention>(a.module, a.config);
          }};
}

}  // namespace ktx::backends::ref
