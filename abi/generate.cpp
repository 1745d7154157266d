// The generation loop behind a C callback. The arguments are checked before anything runs, so a
// refused call leaves the session and the sampler as they were.
#include "runtime/generate.h"

#include <string>
#include <string_view>

#include "abi_internal.h"

using ktx::abi::invalid_argument;
using ktx::abi::null_argument;

extern "C" {

ktx_status* ktx_generate(ktx_session* session, ktx_sampler* sampler, const int32_t* prompt,
                         size_t n_prompt, int64_t n_predict, ktx_token_callback on_token,
                         void* user_data, ktx_generate_stats* stats) {
  KTX_API_BEGIN
  if (session == nullptr) return null_argument(__func__, "session");
  if (sampler == nullptr) return null_argument(__func__, "sampler");
  if (prompt == nullptr && n_prompt != 0) return null_argument(__func__, "prompt");
  if (n_predict < 0) {
    return invalid_argument(__func__, "n_predict must be >= 0, not " + std::to_string(n_predict));
  }
  if (stats != nullptr && stats->struct_size < ktx::abi::kGenerateStatsSizeV1) {
    return invalid_argument(
        __func__, "stats->struct_size is " + std::to_string(stats->struct_size) + ", at least " +
                      std::to_string(ktx::abi::kGenerateStatsSizeV1) + " expected");
  }
  ktx::runtime::Session& s = session->session;
  const ktx::runtime::Model& model = s.model();
  model.tokenizer();  // KTX_STATUS_UNSUPPORTED before anything changes
  const int64_t n_vocab = model.config().n_vocab;
  for (size_t i = 0; i < n_prompt; ++i) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab) {
      return invalid_argument(
          __func__, "prompt token #" + std::to_string(i) + " is " + std::to_string(prompt[i]) +
                        ", outside the vocabulary [0, " + std::to_string(n_vocab) + ")");
    }
  }
  if (s.position() + static_cast<int64_t>(n_prompt) > s.n_ctx()) {
    return invalid_argument(__func__, "context full: " + std::to_string(s.position()) +
                                          " tokens in the session + " + std::to_string(n_prompt) +
                                          " in the prompt exceed the context of " +
                                          std::to_string(s.n_ctx()));
  }
  if (n_prompt == 0 && s.logits().empty()) {
    return invalid_argument(__func__,
                            "nothing to generate from: the prompt is empty and the "
                            "session holds no logits");
  }

  // Once the callback says stop it is not called again (not even for the trailing bytes).
  bool stopped = false;
  std::string piece;  // reused: gives the callback a NUL-terminated copy
  const ktx::runtime::TokenCallback callback = [&](int32_t token, std::string_view text) {
    if (stopped || on_token == nullptr) return !stopped;
    piece.assign(text);
    if (!on_token(token, piece.c_str(), piece.size(), user_data)) stopped = true;
    return !stopped;
  };
  const ktx::runtime::GenerateStats g =
      ktx::runtime::generate(s, {prompt, n_prompt}, n_predict, sampler->sampler, callback);

  if (stats != nullptr) {
    ktx_generate_stats full{};
    full.struct_size = sizeof full;
    full.n_prompt = g.n_prompt;
    full.n_generated = g.n_generated;
    full.prefill_seconds = g.prefill_seconds;
    full.decode_seconds = g.decode_seconds;
    full.stop_reason = g.cancelled                  ? KTX_STOP_CANCELLED
                       : g.stopped_at_eog           ? KTX_STOP_EOG
                       : g.n_generated >= n_predict ? KTX_STOP_LENGTH
                                                    : KTX_STOP_CONTEXT_FULL;
    return ktx::abi::write_sized(__func__, full, stats, ktx::abi::kGenerateStatsSizeV1);
  }
  return nullptr;
  KTX_API_END
}

}  // extern "C"
