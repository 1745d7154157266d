// Session bookkeeping around Model::forward.
#include "runtime/session.h"

#include <fmt/format.h>

#include <algorithm>

#include "ktx/error.h"

namespace ktx::runtime {

Session::Session(std::shared_ptr<Model> model, int64_t n_ctx) : model_(std::move(model)) {
  if (!model_) throw Error(ErrorCode::kInvalidArgument, "a session needs a model");
  const int64_t trained = model_->config().n_ctx_train;
  if (n_ctx < 0) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("n_ctx must be >= 0, not {}", n_ctx));
  }
  if (n_ctx == 0) n_ctx = std::min<int64_t>(trained > 0 ? trained : 4096, 4096);
  cache_ = model_->make_kv_cache(n_ctx);
}

void Session::check(std::span<const int32_t> tokens) const {
  const int64_t n_vocab = model_->config().n_vocab;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i] < 0 || tokens[i] >= n_vocab) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("token #{} is {}, outside the vocabulary [0, {})", i, tokens[i],
                              n_vocab));
    }
  }
  if (position() + static_cast<int64_t>(tokens.size()) > cache_.n_ctx) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("context full: {} tokens in the session + {} new exceed the context "
                            "of {} tokens (start a new session with a larger n_ctx, or rewind)",
                            position(), tokens.size(), cache_.n_ctx));
  }
}

std::span<const float> Session::eval(std::span<const int32_t> tokens) {
  if (tokens.empty()) return logits_;
  check(tokens);
  // Into a buffer of its own, so that a forward that fails leaves the session's logits (and
  // whether it holds any) as they were.
  std::vector<float> logits(static_cast<size_t>(model_->config().n_vocab));
  model_->forward(tokens, position(), cache_, logits.data(), false);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  logits_ = std::move(logits);
  return logits_;
}

std::vector<float> Session::eval_all(std::span<const int32_t> tokens) {
  check(tokens);
  const size_t n_vocab = static_cast<size_t>(model_->config().n_vocab);
  std::vector<float> all(tokens.size() * n_vocab);
  if (tokens.empty()) return all;
  model_->forward(tokens, position(), cache_, all.data(), true);
  tokens_.insert(tokens_.end(), tokens.begin(), tokens.end());
  logits_.assign(all.end() - static_cast<ptrdiff_t>(n_vocab), all.end());
  return all;
}

void Session::reset() {
  tokens_.clear();
  logits_.clear();
}

void Session::rewind(int64_t position) {
  if (position < 0 || position > this->position()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("cannot rewind to position {}: the session holds {} tokens", position,
                            this->position()));
  }
  tokens_.resize(static_cast<size_t>(position));
  logits_.clear();  // the cache rows past `position` are simply overwritten later
}

void Session::decode_batch(std::span<Session* const> sessions, std::span<const int32_t> tokens) {
  if (sessions.size() != tokens.size()) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("{} sessions but {} tokens: one token each", sessions.size(), tokens.size()));
  }
  if (sessions.empty()) return;
  std::vector<KvCache*> caches(sessions.size());
  std::vector<int64_t> positions(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    Session* s = sessions[i];
    if (s == nullptr) {
      throw Error(ErrorCode::kInvalidArgument, fmt::format("session #{} is null", i));
    }
    if (s->model_ != sessions[0]->model_) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("session #{} is of another model than session #0: a batch runs "
                              "one model's weights",
                              i));
    }
    for (size_t j = 0; j < i; ++j) {
      if (sessions[j] == s) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("session #{} is session #{} again: one token each", i, j));
      }
    }
    try {
      s->check({&tokens[i], 1});
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("session #{}: {}", i, e.what()));
    }
    caches[i] = &s->cache_;
    positions[i] = s->position();
  }
  const size_t n_vocab = static_cast<size_t>(sessions[0]->model_->config().n_vocab);
  // Every allocation before the forward pass, so that after it nothing can fail halfway: all
  // the sessions advance, or none.
  std::vector<std::vector<float>> rows(sessions.size(), std::vector<float>(n_vocab));
  for (Session* s : sessions) s->tokens_.reserve(s->tokens_.size() + 1);
  std::vector<float> logits(sessions.size() * n_vocab);
  sessions[0]->model_->forward_batch(tokens, positions, caches, logits.data());
  for (size_t i = 0; i < sessions.size(); ++i) {
    std::copy_n(logits.begin() + static_cast<ptrdiff_t>(i * n_vocab), n_vocab, rows[i].begin());
    sessions[i]->tokens_.push_back(tokens[i]);
    sessions[i]->logits_.swap(rows[i]);
  }
}

Session Session::fork(int64_t n_ctx) const {
  if (n_ctx != 0 && n_ctx < position()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("cannot fork into a context of {} positions: the session holds {} "
                            "tokens",
                            n_ctx, position()));
  }
  Session copy(model_, n_ctx == 0 ? cache_.n_ctx : n_ctx);
  const int64_t n = position();
  for (size_t il = 0; il < cache_.layers.size(); ++il) {
    model_->copy_cache_rows(cache_, copy.cache_, il, n);
  }
  copy.tokens_ = tokens_;
  copy.logits_ = logits_;
  return copy;
}

}  // namespace ktx::runtime
