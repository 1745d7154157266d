// A session: one conversation's state over a shared Model — its KV cache, the tokens evaluated so
// far, and the logits of the last one. Prefill, decode, reset and rewind; the context limit is
// enforced with a clear error. A session is used by one thread at a time; many sessions may run
// on many threads.
#pragma once

#include <memory>
#include <span>
#include <vector>

#include "runtime/kv_cache.h"
#include "runtime/model.h"

namespace ktx::runtime {

class Session {
 public:
  // n_ctx 0: the model's training context, capped at 4096 to keep the cache small by default.
  explicit Session(std::shared_ptr<Model> model, int64_t n_ctx = 0);

  // Evaluates `tokens` after the ones already in the session (prefill when several, decode when
  // one) and returns the last token's logits (valid until the next call). Throws ktx::Error
  // (kInvalidArgument) for a token id outside the vocabulary or when the context would overflow;
  // the session is unchanged then.
  std::span<const float> eval(std::span<const int32_t> tokens);

  // Like eval but returns the logits of every token, [tokens.size()][n_vocab].
  std::vector<float> eval_all(std::span<const int32_t> tokens);

  std::span<const float> logits() const { return logits_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int64_t position() const { return static_cast<int64_t>(tokens_.size()); }
  int64_t n_ctx() const { return cache_.n_ctx; }
  uint64_t kv_bytes_per_token() const { return cache_.bytes_per_token(); }
  const Model& model() const { return *model_; }

  void reset();
  // Forgets every token from `position` on (the cache keeps the rest); logits are cleared.
  void rewind(int64_t position);

 private:
  void check(std::span<const int32_t> tokens) const;

  std::shared_ptr<Model> model_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
};

}  // namespace ktx::runtime
