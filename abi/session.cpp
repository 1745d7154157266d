// Sessions: create, evaluate (prefill, decode, all logits), logits, position, reset, rewind;
// batched decode steps; fork, save and load.
#include <string>
#include <vector>

#include "abi_internal.h"

using ktx::abi::invalid_argument;
using ktx::abi::null_argument;

namespace {

ktx_status* eval(const char* function, ktx_session* session, const int32_t* tokens, size_t n_tokens,
                 const float** logits) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(function, "session");
  if (tokens == nullptr && n_tokens != 0) return null_argument(function, "tokens");
  const std::span<const float> out =
      n_tokens == 0 ? session->session.logits() : session->session.eval({tokens, n_tokens});
  if (logits != nullptr) *logits = out.empty() ? nullptr : out.data();
  return nullptr;
  KTX_API_END_AS(function)
}

}  // namespace

extern "C" {

ktx_status* ktx_session_create(const ktx_model* model, int64_t n_ctx, ktx_session** session) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (session == nullptr) return null_argument(__func__, "session");
  if (n_ctx < 0) {
    return invalid_argument(__func__,
                            "n_ctx must be >= 0 (0 = the training context, at most "
                            "4096), not " +
                                std::to_string(n_ctx));
  }
  *session = new ktx_session{ktx::runtime::Session(model->model, n_ctx)};
  return nullptr;
  KTX_API_END
}

void ktx_session_release(ktx_session* session) { delete session; }

ktx_status* ktx_session_eval(ktx_session* session, const int32_t* tokens, size_t n_tokens,
                             const float** logits) {
  return eval(__func__, session, tokens, n_tokens, logits);
}

ktx_status* ktx_session_decode(ktx_session* session, int32_t token, const float** logits) {
  return eval(__func__, session, &token, 1, logits);
}

ktx_status* ktx_session_eval_all(ktx_session* session, const int32_t* tokens, size_t n_tokens,
                                 float* logits, size_t capacity) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  if (tokens == nullptr && n_tokens != 0) return null_argument(__func__, "tokens");
  if (logits == nullptr && n_tokens != 0) return null_argument(__func__, "logits");
  const size_t n_vocab = static_cast<size_t>(session->session.model().config().n_vocab);
  if (n_tokens != 0 && capacity / n_tokens < n_vocab) {
    return ktx::abi::make_status(KTX_STATUS_BUFFER_TOO_SMALL,
                                 std::string(__func__) + ": " + std::to_string(n_tokens) +
                                     " tokens x " + std::to_string(n_vocab) + " logits need " +
                                     std::to_string(n_tokens * n_vocab) + " floats, capacity is " +
                                     std::to_string(capacity));
  }
  if (n_tokens == 0) return nullptr;
  const std::vector<float> all = session->session.eval_all({tokens, n_tokens});
  std::memcpy(logits, all.data(), all.size() * sizeof(float));
  return nullptr;
  KTX_API_END
}

const float* ktx_session_get_logits(const ktx_session* session, size_t* n_logits) {
  const std::span<const float> l =
      session == nullptr ? std::span<const float>() : session->session.logits();
  if (n_logits != nullptr) *n_logits = l.size();
  return l.empty() ? nullptr : l.data();
}

int64_t ktx_session_position(const ktx_session* session) {
  return session == nullptr ? 0 : session->session.position();
}

int64_t ktx_session_n_ctx(const ktx_session* session) {
  return session == nullptr ? 0 : session->session.n_ctx();
}

const int32_t* ktx_session_get_tokens(const ktx_session* session, size_t* n_tokens) {
  const size_t n = session == nullptr ? 0 : session->session.tokens().size();
  if (n_tokens != nullptr) *n_tokens = n;
  return n == 0 ? nullptr : session->session.tokens().data();
}

void ktx_session_reset(ktx_session* session) {
  if (session != nullptr) session->session.reset();
}

ktx_status* ktx_session_rewind(ktx_session* session, int64_t position) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  session->session.rewind(position);
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_session_decode_batch(ktx_session* const* sessions, size_t n_sessions,
                                     const int32_t* tokens) {
  KTX_API_BEGIN
  if (n_sessions == 0) return nullptr;
  if (sessions == nullptr) return null_argument(__func__, "sessions");
  if (tokens == nullptr) return null_argument(__func__, "tokens");
  std::vector<ktx::runtime::Session*> inner(n_sessions);
  for (size_t i = 0; i < n_sessions; ++i) {
    if (sessions[i] == nullptr) {
      return invalid_argument(__func__, "sessions[" + std::to_string(i) + "] is NULL");
    }
    inner[i] = &sessions[i]->session;
  }
  ktx::runtime::Session::decode_batch(inner, {tokens, n_sessions});
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_session_fork(const ktx_session* session, int64_t n_ctx, ktx_session** fork) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  if (fork == nullptr) return null_argument(__func__, "fork");
  if (n_ctx < 0) {
    return invalid_argument(
        __func__, "n_ctx must be >= 0 (0 = the session's own), not " + std::to_string(n_ctx));
  }
  *fork = new ktx_session{session->session.fork(n_ctx)};
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_session_save(const ktx_session* session, const char* path) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  if (path == nullptr) return null_argument(__func__, "path");
  if (*path == '\0') return invalid_argument(__func__, "path is empty");
  session->session.save(path);
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_session_load(ktx_session* session, const char* path) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  if (path == nullptr) return null_argument(__func__, "path");
  if (*path == '\0') return invalid_argument(__func__, "path is empty");
  session->session.load(path);
  return nullptr;
  KTX_API_END
}

}  // extern "C"
