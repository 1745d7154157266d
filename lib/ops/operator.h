// Operator interfaces: one abstract class per module kind, each with the inputs that kind needs.
// An implementation (cpu.mla, ref.experts, later cuda.mla …) is chosen per module by the plan and
// created through the registry (lib/registry). Activations are dense row-major f32 on the host,
// [n_tokens][width]; weights are views into the GGUF mapping, never copied unless an
// implementation repacks them once at creation.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "runtime/kv_cache.h"
#include "runtime/thread_pool.h"

namespace ktx::ops {

// What every operator call gets besides its data.
struct ExecContext {
  runtime::ThreadPool* pool = nullptr;  // never null during forward
};

// A contiguous run of tokens at positions pos0 .. pos0 + n_tokens - 1 of one sequence.
struct Batch {
  int64_t n_tokens = 0;
  int64_t pos0 = 0;
};

class Operator {
 public:
  virtual ~Operator() = default;
  // The registered implementation name ("cpu.mla").
  virtual std::string impl_name() const = 0;
};

class EmbeddingOp : public Operator {
 public:
  // out [n][n_embd] = rows of the embedding table for `tokens` (ids already range-checked).
  virtual void forward(ExecContext& ctx, std::span<const int32_t> tokens, float* out) = 0;
};

class RmsNormOp : public Operator {
 public:
  // out[t] = x[t] / sqrt(mean(x[t]^2) + eps) * weight; out may alias x.
  virtual void forward(ExecContext& ctx, int64_t n_tokens, const float* x, float* out) = 0;
};

class AttentionOp : public Operator {
 public:
  // Causal self-attention of the batch's tokens over the cache (positions < pos0, already
  // filled) and themselves; appends the batch's entries to `cache` at pos0.. . x is the
  // normalised hidden state [n][n_embd]; out [n][n_embd] (not added to the residual).
  virtual void forward(ExecContext& ctx, const Batch& batch, const float* x, float* out,
                       runtime::LayerKvCache& cache) = 0;
};

class MlpOp : public Operator {
 public:
  // SwiGLU: out = down(silu(gate x) * up x); [n][n_embd] -> [n][n_embd].
  virtual void forward(ExecContext& ctx, int64_t n_tokens, const float* x, float* out) = 0;
};

class MoeGateOp : public Operator {
 public:
  // The router: for each token the n_expert_used chosen expert ids and their weights (after
  // normalisation and expert_weights_scale), [n][k] each.
  virtual void forward(ExecContext& ctx, int64_t n_tokens, const float* x, int32_t* expert_ids,
                       float* expert_weights) = 0;
};

class ExpertsOp : public Operator {
 public:
  // out[t] = sum_j w[t][j] * expert_{ids[t][j]}(x[t]). submit() may return before the work is
  // done (CPU experts run on the pool while the caller computes the shared experts); wait()
  // finishes it. The inputs must stay valid until wait() returns.
  //
  // An id of kNoExpert marks an unused route: it costs nothing and its weight is ignored. The
  // executor uses it when one module's experts are split between devices (placement option
  // gpu_experts): each part sees only its own routes. The part on the accelerator is created
  // with option experts: "3,17,42", the experts it will be sent, and may load only those.
  static constexpr int32_t kNoExpert = -1;
  virtual void submit(ExecContext& ctx, int64_t n_tokens, const float* x,
                      const int32_t* expert_ids, const float* expert_weights, float* out) = 0;
  virtual void wait(ExecContext& ctx) = 0;
};

class LmHeadOp : public Operator {
 public:
  // logits [n][n_vocab] = x [n][n_embd] · W^T.
  virtual void forward(ExecContext& ctx, int64_t n_tokens, const float* x, float* logits) = 0;
};

}  // namespace ktx::ops
