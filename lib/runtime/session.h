// A session: one conversation's state over a shared Model — its KV cache, the tokens evaluated so
// far, and the logits of the last one. Prefill, decode, reset and rewind; the context limit is
// enforced with a clear error. A session is used by one thread at a time; many sessions may run
// on many threads.
#pragma once

#include <memory>
#include <span>
#include <string>
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

  // One decode step of several sessions of one model at once: sessions[i] evaluates tokens[i]
  // and holds its logits afterwards, as eval({&tokens[i], 1}) would leave it. The weights of
  // the experts, MLPs and the head are read once for all of them, which is what makes serving
  // several sequences cheaper than stepping each. Throws ktx::Error (kInvalidArgument) — with
  // every session unchanged — when the counts differ, a session is null, repeated or of another
  // model, a token is outside the vocabulary or a context is full.
  static void decode_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens);

  // A new session over the same model holding this one's tokens, logits and cache rows, for a
  // context of `n_ctx` positions (0: this session's), which must hold its tokens.
  Session fork(int64_t n_ctx = 0) const;

  // Session files (session_file.cpp; the format: docs/SESSIONS.md, "The file"). save()
  // writes the tokens, the logits and the cache rows they filled, through a temporary file and a
  // rename; it refuses a path naming the model's own file. load() replaces this session's state
  // with a saved one after checking everything — that the file is a session file, saved from
  // this model (its fingerprint), that it fits this session's context, every tensor's shape and
  // checksum — so that on any error the session is unchanged, but when an accelerator's copy
  // fails halfway, which leaves it empty. Both throw ktx::Error naming the file.
  void save(const std::string& path) const;
  void load(const std::string& path);

 private:
  void check(std::span<const int32_t> tokens) const;

  std::shared_ptr<Model> model_;
  KvCache cache_;
  std::vector<int32_t> tokens_;
  std::vector<float> logits_;
};

}  // namespace ktx::runtime
