// cpu.mla_attention: DeepSeek's multi-head latent attention. Per token
//   q = W_q x  or  W_q_b rmsnorm(W_q_a x)            -> per head [q_nope | q_pe]
//   [c_kv | k_pe] = W_kv_a x;  c_kv = rmsnorm(c_kv) * kv_a_norm;  RoPE on q_pe and k_pe
// and the cache keeps only c_kv and k_pe (LayerKvCache a / b). Two equivalent forms:
//   absorbed   q_lat = W_UKᵀ q_nope per head (kv_lora_rank wide);
//              score = q_lat·c_kv + q_pe·k_pe;  o_lat = Σ p c_kv;  o = W_UV o_lat
//              — cheapest for decode;
//   naive      k_nope = W_UK c_kv, v = W_UV c_kv for every cached position, then plain MHA
//              — cheaper for long prefill batches.
// Option "absorb" = "auto" (default: whichever needs fewer multiply-adds for this batch),
// "always" or "never". W_UK / W_UV come from attn_kv_b ([kv_lora_rank, n_head·(nope+v)]) or from
// attn_k_b ([nope, kv_lora_rank, n_head]) and attn_v_b ([kv_lora_rank, v, n_head]) as newer
// llama.cpp files split it. These small per-head products run in f32 on the file's values
// (mla_head_weights.h: kept as integer codes and scales where the type allows, an f32 copy
// otherwise), so both forms compute on the same numbers; the big projections use quantized
// activations (linear.h). Work is parallel over heads; a decode step (one token, absorbed: decode)
// runs the per-head steps and kv_a as one job and the cache-reading steps over runs of positions,
// all heads at once (decode_attend: split-KV).
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <vector>

#include "kernels/cpu/attention.h"
#include "ktx/error.h"
#include "ktx/quant.h"
#include "ops/cpu/attention_util.h"
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/mla_head_weights.h"
#include "ops/cpu/repacked.h"
#include "ops/cpu/rope.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.mla_attention";

enum class Absorb { kAuto, kAlways, kNever };

std::optional<Absorb> parse_absorb(const registry::OpOptions& options) {
  auto it = options.find("absorb");
  if (it == options.end() || it->second == "auto") return Absorb::kAuto;
  if (it->second == "always") return Absorb::kAlways;
  if (it->second == "never") return Absorb::kNever;
  return std::nullopt;
}

// Option "kv_run": positions of the latent cache one decode task reads in one go (decode_attend),
// 16..65536; default 256 (V2-Lite/V3's rows: 590 KB, which stay in L2 between the scores and the
// weighted sum). A tuning knob, and how the tests reach the runs' merging with short contexts.
constexpr int64_t kDefaultKvRun = 256;
std::optional<int64_t> parse_kv_run(const registry::OpOptions& options) {
  auto it = options.find("kv_run");
  if (it == options.end()) return kDefaultKvRun;
  int64_t v = 0;
  const std::string& text = it->second;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 16 || v > 65536) {
    return std::nullopt;
  }
  return v;
}

// Queries per block in the prefill forms (attend_naive, attend_absorbed): each block's scores
// and weighted sums are one call of the tier's kernels (kernels/cpu/attention.h), which load each
// key or value row once for the whole block rather than once per query. Per query, with the
// 4-wide loops of attention_util.h, a 512-token prefill of the 8-layer V2-Lite-width model spent
// 18% of its time here (Emerald Rapids, 2 threads).
constexpr int64_t kQueryBlock = 32;

class MlaAttention final : public AttentionOp {
 public:
  MlaAttention(const model::ModuleDesc& m, const model::ModelConfig& c, Absorb absorb,
               int64_t kv_run, bool repack)
      : n_head_(c.n_head),
        nope_(c.qk_nope_head_dim),
        rope_dim_(c.qk_rope_head_dim),
        v_dim_(c.v_head_dim),
        rank_(c.kv_lora_rank),
        eps_(c.rms_eps),
        scale_(c.attention_scale()),
        absorb_(absorb),
        kv_run_(kv_run),
        kv_a_(weight_matrix(m.weight("kv_a_mqa"))),
        kv_a_norm_(m.weight("kv_a_norm")),
        out_(weight_matrix(m.weight("output"))),
        rope_(c) {
    if (c.q_lora_rank > 0) {
      q_a_ = weight_matrix(m.weight("q_a"));
      q_a_norm_ = VectorWeight(m.weight("q_a_norm"));
      q_b_ = weight_matrix(m.weight("q_b"));
    } else {
      q_ = weight_matrix(m.weight("q"));
    }
    const bool split = m.find_weight("k_b") && m.find_weight("v_b") &&
                       (c.mla_split_kv_b || m.find_weight("kv_b") == nullptr);
    if (split) {
      k_b_ = &m.weight("k_b");
      v_b_ = &m.weight("v_b");
    } else {
      kv_b_ = &m.weight("kv_b");
    }
    head_weights_.emplace(kv_b_, k_b_, v_b_, n_head_, nope_, v_dim_, rank_);
    if (repack) {
      repacked_ = repack_module(m, {{&q_, 1}, {&q_a_, 1}, {&q_b_, 1}, {&kv_a_, 1}, {&out_, 1}});
    }
  }

  std::string impl_name() const override { return std::string(kName); }

  void forward(ExecContext& ctx, const Batch& batch, const float* x, float* out,
               runtime::LayerKvCache& cache) override;

  // Whether this batch runs the absorbed form: by option, or by counting multiply-adds per head.
  bool use_absorbed(int64_t n, int64_t pos0) const {
    if (absorb_ != Absorb::kAuto) return absorb_ == Absorb::kAlways;
    const double end = static_cast<double>(pos0 + n);
    const double keys = static_cast<double>(n) * static_cast<double>(pos0) +
                        static_cast<double>(n) * static_cast<double>(n + 1) / 2.0;
    const double wide = static_cast<double>(rank_ * (nope_ + v_dim_));
    const double absorbed =
        static_cast<double>(n) * wide + keys * static_cast<double>(2 * rank_ + rope_dim_);
    const double naive = end * wide + keys * static_cast<double>(nope_ + rope_dim_ + v_dim_);
    return absorbed <= naive;
  }

 private:
  void attend_absorbed(int64_t h, int64_t n, int64_t pos0, const float* q, float* o,
                       const runtime::LayerKvCache& cache) const;
  void decode(runtime::ThreadPool& pool, int64_t pos, const float* x, float* out,
              runtime::LayerKvCache& cache) const;
  // kv_a's output for the token at `pos` ([c_kv | k_pe]) into the cache: the latent normalised,
  // the rope part rotated by the position's angles.
  void append_to_cache(const float* kv, int64_t pos, const float* cos, const float* sin,
                       runtime::LayerKvCache& cache) const {
    rms_norm_row(kv, kv_a_norm_.data(), rank_, eps_, cache.a_row(pos));
    float* k_pe = cache.b_row(pos);
    std::copy(kv + rank_, kv + rank_ + rope_dim_, k_pe);
    rope_.rotate(cos, sin, k_pe);
  }
  void decode_attend(runtime::ThreadPool& pool, int64_t pos, const float* q, const float* q_lat,
                     float* o, const runtime::LayerKvCache& cache) const;
  void attend_naive(int64_t h, int64_t n, int64_t pos0, const float* q, float* o,
                    const runtime::LayerKvCache& cache) const;

  int64_t n_head_, nope_, rope_dim_, v_dim_, rank_;
  float eps_, scale_;
  Absorb absorb_;
  int64_t kv_run_;
  WeightMatrix q_, q_a_, q_b_, kv_a_;
  VectorWeight q_a_norm_, kv_a_norm_;
  const gguf::TensorInfo* kv_b_ = nullptr;
  const gguf::TensorInfo* k_b_ = nullptr;
  const gguf::TensorInfo* v_b_ = nullptr;
  WeightMatrix out_;
  Rope rope_;
  std::optional<MlaHeadWeights> head_weights_;             // W_UK, W_UV
  std::vector<std::unique_ptr<RepackedTensor>> repacked_;  // option repack: what they read
};

void MlaAttention::forward(ExecContext& ctx, const Batch& batch, const float* x, float* out,
                           runtime::LayerKvCache& cache) {
  const int64_t n = batch.n_tokens, pos0 = batch.pos0;
  if (n <= 0) return;
  check_cache(cache, rank_, rope_dim_, pos0 + n, "cpu.mla_attention");
  runtime::ThreadPool& pool = *ctx.pool;
  if (n == 1 && use_absorbed(n, pos0)) {
    decode(pool, pos0, x, out, cache);
    return;
  }
  const int64_t qk = nope_ + rope_dim_;
  const int64_t n_embd = kv_a_.cols;

  // x is quantized once for the kv_a projection and reused for q / q_a when the types agree.
  QuantizedRows xq;
  xq.quantize(&pool, kv_a_.dot_type, n, n_embd, x, n_embd);
  const WeightMatrix& first_q = q_b_.data != nullptr ? q_a_ : q_;
  const auto project_x = [&](const WeightMatrix& w, float* y) {
    if (w.dot_type == xq.type()) {
      matmul(pool, w, xq, n, y, w.rows);
    } else {
      matmul(pool, w, n, x, n_embd, y, w.rows);
    }
  };
  std::vector<float> q(static_cast<size_t>(n * n_head_ * qk));
  if (q_b_.data != nullptr) {
    const int64_t q_rank = q_a_.rows;
    std::vector<float> qa(static_cast<size_t>(n * q_rank));
    project_x(first_q, qa.data());
    for (int64_t t = 0; t < n; ++t) {
      rms_norm_row(qa.data() + t * q_rank, q_a_norm_.data(), q_rank, eps_, qa.data() + t * q_rank);
    }
    matmul(pool, q_b_, n, qa.data(), q_rank, q.data(), n_head_ * qk);
  } else {
    project_x(first_q, q.data());
  }
  std::vector<float> kv(static_cast<size_t>(n * (rank_ + rope_dim_)));
  matmul(pool, kv_a_, xq, n, kv.data(), rank_ + rope_dim_);

  // Normalise the latent, rotate the rope parts, append to the cache.
  std::vector<float> cos(static_cast<size_t>(rope_dim_ / 2)), sin(cos.size());
  for (int64_t t = 0; t < n; ++t) {
    const int64_t pos = pos0 + t;
    const float* kv_t = kv.data() + t * (rank_ + rope_dim_);
    rope_.angles(pos, cos.data(), sin.data());
    append_to_cache(kv_t, pos, cos.data(), sin.data(), cache);
    for (int64_t h = 0; h < n_head_; ++h) {
      rope_.rotate(cos.data(), sin.data(), q.data() + (t * n_head_ + h) * qk + nope_);
    }
  }

  std::vector<float> o(static_cast<size_t>(n * n_head_ * v_dim_));
  const bool absorbed = use_absorbed(n, pos0);
  pool.parallel_for(n_head_, 1, [&](int64_t h0, int64_t h1) {
    for (int64_t h = h0; h < h1; ++h) {
      if (absorbed) {
        attend_absorbed(h, n, pos0, q.data(), o.data(), cache);
      } else {
        attend_naive(h, n, pos0, q.data(), o.data(), cache);
      }
    }
  });
  matmul(pool, out_, n, o.data(), n_head_ * v_dim_, out, out_.rows);
}

void MlaAttention::attend_absorbed(int64_t h, int64_t n, int64_t pos0, const float* q, float* o,
                                   const runtime::LayerKvCache& cache) const {
  const int64_t qk = nope_ + rope_dim_;
  const auto scores = kernels::cpu::mla_scores_fn();
  const auto lda = static_cast<size_t>(cache.width_a), ldb = static_cast<size_t>(cache.width_b);
  const auto rank = static_cast<size_t>(rank_);
  const auto ldq = static_cast<size_t>(n_head_ * qk);
  const int64_t block = std::min(n, kQueryBlock);
  std::vector<float> q_lat(static_cast<size_t>(block) * rank), o_lat(q_lat.size());
  std::vector<float> p(static_cast<size_t>(block * (pos0 + n)));
  for (int64_t t0 = 0; t0 < n; t0 += block) {
    const int64_t rows = std::min(block, n - t0);
    const int64_t keys = pos0 + t0 + rows;  // causal: the block's last query sees these
    const float* q0 = q + (t0 * n_head_ + h) * qk;
    for (int64_t i = 0; i < rows; ++i) {  // q_lat = W_UKᵀ q_nope
      head_weights_->absorb_query(h, q0 + static_cast<size_t>(i) * ldq, q_lat.data() + i * rank_);
    }
    scores(rows, keys, q_lat.data(), rank, cache.a_row(0), lda, rank_, q0 + nope_, ldq,
           cache.b_row(0), ldb, rope_dim_, scale_, p.data(), static_cast<size_t>(keys));
    causal_block(rows, pos0 + t0 + 1, p.data(), static_cast<size_t>(keys), cache.a_row(0), lda,
                 rank_, o_lat.data(), rank);
    for (int64_t i = 0; i < rows; ++i) {  // W_UV o_lat
      head_weights_->project_output(h, o_lat.data() + i * rank_,
                                    o + ((t0 + i) * n_head_ + h) * v_dim_);
    }
  }
}

// One token (absorbed): forward's steps with fewer barriers. The per-head steps that only need
// the token's own q — its rows of the q projection (q, or q_b after q_a), the rotation of its
// rope part and q_lat = W_UKᵀ q_nope — run as one task per head, so each thread streams a head's
// q rows and W_UK together, beside the kv_a rows as tasks of their own in the same job (the
// q_a rows too, where the model has them: then q_b's heads are a second job). Each row's product
// and each head's step are computed as forward computes them: the same numbers. Decode's jobs
// here and in decode_attend are parallel_for_streams: each thread starts on its own half of the
// tasks and works through it front to back, so its weight rows (consecutive heads' q rows and
// W_UK / W_UV, the kv_a rows) and cache rows (consecutive positions) follow each other in memory
// instead of alternating with the other thread's; no number depends on which thread runs a
// task. Against parallel_for's shared counter, 4 alternating pairs within one run (8-layer file,
// ~560 positions): 8-39 µs less per layer's attention, every pair.
void MlaAttention::decode(runtime::ThreadPool& pool, int64_t pos, const float* x, float* out,
                          runtime::LayerKvCache& cache) const {
  const int64_t qk = nope_ + rope_dim_, n_embd = kv_a_.cols, kv_rows = rank_ + rope_dim_;
  const auto rank = static_cast<size_t>(rank_);
  constexpr int64_t kRowsPerTask = 192;  // kv_a / q_a rows per task: about one head's q rows
  const int64_t kv_tasks = (kv_rows + kRowsPerTask - 1) / kRowsPerTask;
  QuantizedRows xq;
  xq.quantize(nullptr, kv_a_.dot_type, 1, n_embd, x, n_embd);
  // The token's activations as a weight's dot type: xq where the types agree.
  QuantizedRows x_other;
  const auto x_for = [&](const WeightMatrix& w) -> const QuantizedRows& {
    if (w.dot_type == xq.type()) return xq;
    if (x_other.type() != w.dot_type || x_other.cols() != n_embd) {
      x_other.quantize(nullptr, w.dot_type, 1, n_embd, x, n_embd);
    }
    return x_other;
  };
  std::vector<float> cos(static_cast<size_t>(rope_dim_ / 2)), sin(cos.size());
  rope_.angles(pos, cos.data(), sin.data());
  std::vector<float> q(static_cast<size_t>(n_head_ * qk)), kv(static_cast<size_t>(kv_rows));
  std::vector<float> q_lat(static_cast<size_t>(n_head_) * rank);
  const auto head_task = [&](const WeightMatrix& w, const QuantizedRows& wx, int64_t h) {
    float* qh = q.data() + h * qk;
    matmul_rows(w, h * qk, (h + 1) * qk, wx, 1, q.data(), n_head_ * qk);
    rope_.rotate(cos.data(), sin.data(), qh + nope_);
    head_weights_->absorb_query(h, qh, q_lat.data() + h * rank_);
  };
  const auto kv_task = [&](int64_t t) {
    matmul_rows(kv_a_, t * kRowsPerTask, std::min(kv_rows, (t + 1) * kRowsPerTask), xq, 1,
                kv.data(), kv_rows);
  };
  if (q_b_.data != nullptr) {
    const int64_t q_rank = q_a_.rows;
    const int64_t qa_tasks = (q_rank + kRowsPerTask - 1) / kRowsPerTask;
    const QuantizedRows& xa = x_for(q_a_);
    std::vector<float> qa(static_cast<size_t>(q_rank));
    pool.parallel_for_streams(kv_tasks + qa_tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        if (t < kv_tasks) {
          kv_task(t);
        } else {
          const int64_t r0 = (t - kv_tasks) * kRowsPerTask;
          matmul_rows(q_a_, r0, std::min(q_rank, r0 + kRowsPerTask), xa, 1, qa.data(), q_rank);
        }
      }
    });
    rms_norm_row(qa.data(), q_a_norm_.data(), q_rank, eps_, qa.data());
    QuantizedRows qaq;
    qaq.quantize(nullptr, q_b_.dot_type, 1, q_rank, qa.data(), q_rank);
    pool.parallel_for_streams(n_head_, 1, [&](int64_t h0, int64_t h1) {
      for (int64_t h = h0; h < h1; ++h) head_task(q_b_, qaq, h);
    });
  } else {
    const QuantizedRows& xq_q = x_for(q_);
    pool.parallel_for_streams(n_head_ + kv_tasks, 1, [&](int64_t t0, int64_t t1) {
      for (int64_t t = t0; t < t1; ++t) {
        if (t < n_head_) {
          head_task(q_, xq_q, t);
        } else {
          kv_task(t - n_head_);
        }
      }
    });
  }
  append_to_cache(kv.data(), pos, cos.data(), sin.data(), cache);

  std::vector<float> o(static_cast<size_t>(n_head_ * v_dim_));
  decode_attend(pool, pos, q.data(), q_lat.data(), o.data(), cache);
  matmul(pool, out_, 1, o.data(), n_head_ * v_dim_, out, out_.rows);
}

// The attention of one token over the cache, given its q (for the rope part) and q_lat:
// attend_absorbed's steps for all heads at once, split over the cache ("split-KV", as FlashDecoding
// and FlashMLA decode). A position's latent row is shared by every head, so each task takes a run
// of positions with all heads inside: the scores of its rows, their softmax with the task's own
// maximum and sum, and the weighted sum of the same rows while they are still in L2. The latent
// cache (1.3 MB per layer at 576 positions for V2-Lite, growing with the context) is read from
// memory once per layer, not twice. Then per head the tasks' partial sums are merged, rescaled by
// exp(task maximum - overall maximum) / overall sum, and projected with W_UV. The kernels
// (kernels/cpu/attention.h) block several heads × several positions in registers, so each cache
// vector loaded serves several heads. The result differs from attend_absorbed's one softmax over
// all positions only by float rounding (the exponentials and sums are taken in other groupings).
void MlaAttention::decode_attend(runtime::ThreadPool& pool, int64_t pos, const float* q,
                                 const float* q_lat, float* o,
                                 const runtime::LayerKvCache& cache) const {
  const int64_t qk = nope_ + rope_dim_, keys = pos + 1;
  const auto scores = kernels::cpu::mla_scores_fn();
  const auto weighted_sum = kernels::cpu::mla_weighted_sum_fn();
  const auto lda = static_cast<size_t>(cache.width_a), ldb = static_cast<size_t>(cache.width_b);
  const auto rank = static_cast<size_t>(rank_), heads = static_cast<size_t>(n_head_);
  // Tasks of consecutive positions, split by the context alone (so the numbers do not depend on
  // the thread count): at most kMaxTasks (plenty for a few threads to even out), each at least 64
  // positions (the weighted sum's tile) and at least as many rows' floats as its partial sums
  // hold (heads × rank: V3's 128 heads need 114 positions). A task takes its positions in runs
  // of up to kv_run_: each run's latent rows are read by the scores and again, from L2, by the
  // weighted sum (256 rows of 576 floats: 590 KB), and the runs' sums are merged as they come,
  // rescaled to the task's running maximum.
  constexpr int64_t kMaxTasks = 32;
  const int64_t min_positions = std::max<int64_t>(64, n_head_ * rank_ / (rank_ + rope_dim_));
  const int64_t tasks = std::clamp<int64_t>(keys / min_positions, 1, kMaxTasks);
  // Task t: positions [first_position(t), first_position(t + 1)); never empty (tasks <= keys).
  const auto first_position = [&](int64_t t) { return t * keys / tasks; };
  // Σ e^(s - task maximum) c_kv(s) per task and head: each task's first run writes its part.
  const std::unique_ptr<float[]> partial(new float[static_cast<size_t>(tasks) * heads * rank]);
  std::vector<float> task_max(static_cast<size_t>(tasks) * heads);
  std::vector<double> task_sum(task_max.size());
  pool.parallel_for_streams(tasks, 1, [&](int64_t t0, int64_t t1) {
    const int64_t longest = (keys + tasks - 1) / tasks;
    const int64_t run = std::min(kv_run_, longest);
    std::vector<float> p(heads * static_cast<size_t>(run));
    std::vector<float> run_sum(longest > run ? heads * rank : 0);  // runs after a task's first
    std::vector<float> rescale(heads);  // per head: e^(old maximum - new maximum)
    for (int64_t t = t0; t < t1; ++t) {
      float* sums = partial.get() + static_cast<size_t>(t) * heads * rank;
      float* tmax = task_max.data() + static_cast<size_t>(t) * heads;
      double* tsum = task_sum.data() + static_cast<size_t>(t) * heads;
      const int64_t begin = first_position(t), end = first_position(t + 1);
      for (int64_t s0 = begin; s0 < end; s0 += run) {
        const int64_t len = std::min(run, end - s0);
        const auto ldp = static_cast<size_t>(len);
        const bool first = s0 == begin;
        scores(n_head_, len, q_lat, rank, cache.a_row(s0), lda, rank_, q + nope_,
               static_cast<size_t>(qk), cache.b_row(s0), ldb, rope_dim_, scale_, p.data(), ldp);
        for (size_t h = 0; h < heads; ++h) {
          float* ph = p.data() + h * ldp;
          const float run_max = softmax_max(ph, len);
          const float m = first || std::isnan(run_max) ? run_max : std::max(tmax[h], run_max);
          rescale[h] = first ? 0.0f : std::exp(tmax[h] - m);
          tsum[h] = (first ? 0.0 : tsum[h] * rescale[h]) + exp_shifted(ph, len, m);
          tmax[h] = m;
        }
        weighted_sum(n_head_, len, p.data(), ldp, cache.a_row(s0), lda, rank_,
                     first ? sums : run_sum.data(), rank, false);
        if (first) continue;
        for (size_t h = 0; h < heads; ++h) {
          scale_add_f32(rescale[h], run_sum.data() + h * rank, sums + h * rank, rank_);
        }
      }
    }
  });
  pool.parallel_for_streams(n_head_, 1, [&](int64_t h0, int64_t h1) {
    std::vector<float> o_lat(rank), scale(static_cast<size_t>(tasks));
    for (int64_t h = h0; h < h1; ++h) {
      float m = -std::numeric_limits<float>::infinity();
      for (int64_t t = 0; t < tasks; ++t)
        m = std::max(m, task_max[static_cast<size_t>(t * n_head_ + h)]);
      // Every task's weight: a NaN from any score reaches the output.
      double sum = 0.0;
      for (int64_t t = 0; t < tasks; ++t) {
        const size_t i = static_cast<size_t>(t * n_head_ + h);
        const double w = std::exp(static_cast<double>(task_max[i]) - static_cast<double>(m));
        scale[static_cast<size_t>(t)] = static_cast<float>(w);
        sum += w * task_sum[i];
      }
      const auto inv = static_cast<float>(1.0 / sum);
      std::fill(o_lat.begin(), o_lat.end(), 0.0f);
      for (int64_t t = 0; t < tasks; ++t) {
        const float w = scale[static_cast<size_t>(t)] * inv;
        const float* part =
            partial.get() + (static_cast<size_t>(t) * heads + static_cast<size_t>(h)) * rank;
        axpy_f32(w, part, o_lat.data(), rank_);
      }
      head_weights_->project_output(h, o_lat.data(), o + h * v_dim_);
    }
  });
}

void MlaAttention::attend_naive(int64_t h, int64_t n, int64_t pos0, const float* q, float* o,
                                const runtime::LayerKvCache& cache) const {
  const int64_t qk = nope_ + rope_dim_;
  const int64_t end = pos0 + n;
  thread_local std::vector<float> scratch;  // a head's decoded W_UK / W_UV, reused
  const MlaHeadWeights::F32Head w = head_weights_->f32_head(h, scratch);
  const float* uk = w.uk;
  const float* uv = w.uv;
  // Decompress this head's keys and values for every position the batch can see: the scores
  // kernel with the cache rows as its "heads" and W_UK's / W_UV's rows as its "positions" writes
  // k_nope[s][j] = W_UK[j]·c_kv(s) (and v alike) in the layout the query blocks below read.
  const auto scores = kernels::cpu::mla_scores_fn();
  const auto lda = static_cast<size_t>(cache.width_a), rank = static_cast<size_t>(rank_);
  std::vector<float> k_nope(static_cast<size_t>(end * nope_)), v(static_cast<size_t>(end * v_dim_));
  scores(end, nope_, cache.a_row(0), lda, uk, rank, rank_, nullptr, 0, nullptr, 0, 0, 1.0f,
         k_nope.data(), static_cast<size_t>(nope_));
  scores(end, v_dim_, cache.a_row(0), lda, uv, rank, rank_, nullptr, 0, nullptr, 0, 0, 1.0f,
         v.data(), static_cast<size_t>(v_dim_));
  const auto ldq = static_cast<size_t>(n_head_ * qk), ldo = static_cast<size_t>(n_head_ * v_dim_);
  const int64_t block = std::min(n, kQueryBlock);
  std::vector<float> p(static_cast<size_t>(block * end));
  for (int64_t t0 = 0; t0 < n; t0 += block) {
    const int64_t rows = std::min(block, n - t0);
    const int64_t keys = pos0 + t0 + rows;  // causal: the block's last query sees these
    const float* q0 = q + (t0 * n_head_ + h) * qk;
    scores(rows, keys, q0, ldq, k_nope.data(), static_cast<size_t>(nope_), nope_, q0 + nope_, ldq,
           cache.b_row(0), static_cast<size_t>(cache.width_b), rope_dim_, scale_, p.data(),
           static_cast<size_t>(keys));
    causal_block(rows, pos0 + t0 + 1, p.data(), static_cast<size_t>(keys), v.data(),
                 static_cast<size_t>(v_dim_), v_dim_, o + (t0 * n_head_ + h) * v_dim_, ldo);
  }
}

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  const model::ModelConfig& c = a.config;
  const model::ModuleDesc& m = a.module;
  Checker ch(a, kName);
  ch.options({"absorb", "kv_run", "repack"}).require(repack_option_error(a.options));
  ch.require(parse_absorb(a.options).has_value(),
             fmt::format("option absorb = \"{}\"; expected auto, always or never",
                         a.options.count("absorb") ? a.options.at("absorb") : ""));
  ch.require(parse_kv_run(a.options).has_value(),
             fmt::format("option kv_run = \"{}\"; expected a whole number from 16 to 65536",
                         a.options.count("kv_run") ? a.options.at("kv_run") : ""));
  ch.require(c.n_head > 0 && c.kv_lora_rank > 0 && c.qk_nope_head_dim > 0 &&
                 c.qk_rope_head_dim > 0 && c.qk_rope_head_dim % 2 == 0 && c.v_head_dim > 0,
             "the config lacks MLA dimensions (n_head, kv_lora_rank, qk_nope/rope, v_head_dim)");
  ch.require(c.rope.n_dims == c.qk_rope_head_dim,
             fmt::format("rope.n_dims {} differs from qk_rope_head_dim {}", c.rope.n_dims,
                         c.qk_rope_head_dim));
  if (ch.result()) return ch.result();
  const int64_t qk = c.qk_nope_head_dim + c.qk_rope_head_dim;
  if (c.q_lora_rank > 0) {
    ch.matmul("q_a").dequantize("q_a_norm").matmul("q_b");
    ch.shape("q_a", {c.n_embd, c.q_lora_rank}).shape("q_a_norm", {c.q_lora_rank});
    ch.shape("q_b", {c.q_lora_rank, c.n_head * qk});
  } else {
    ch.matmul("q").shape("q", {c.n_embd, c.n_head * qk});
  }
  ch.matmul("kv_a_mqa").dequantize("kv_a_norm").matmul("output");
  ch.shape("kv_a_mqa", {c.n_embd, c.kv_lora_rank + c.qk_rope_head_dim});
  ch.shape("kv_a_norm", {c.kv_lora_rank});
  ch.shape("output", {c.n_head * c.v_head_dim, c.n_embd});
  const bool split = m.find_weight("k_b") && m.find_weight("v_b") &&
                     (c.mla_split_kv_b || m.find_weight("kv_b") == nullptr);
  if (split) {
    ch.dequantize("k_b").dequantize("v_b");
    ch.shape("k_b", {c.qk_nope_head_dim, c.kv_lora_rank, c.n_head});
    ch.shape("v_b", {c.kv_lora_rank, c.v_head_dim, c.n_head});
  } else {
    ch.dequantize("kv_b");
    ch.shape("kv_b", {c.kv_lora_rank, c.n_head * (c.qk_nope_head_dim + c.v_head_dim)});
  }
  return ch.result();
}

}  // namespace

registry::OpImpl mla_attention_impl() {
  return {std::string(kName),
          model::ModuleKind::kMlaAttention,
          registry::DeviceKind::kCpu,
          "DeepSeek MLA over a latent cache; absorbed or naive form per batch (option absorb)",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<MlaAttention>(a.module, a.config, *parse_absorb(a.options),
                                                  *parse_kv_run(a.options),
                                                  *parse_repack(a.options));
          }};
}

}  // namespace ktx::ops::cpu
