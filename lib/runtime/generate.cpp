// Prefill + sample/decode loop with incremental UTF-8-safe detokenisation.
#include "runtime/generate.h"

#include <fmt/format.h>

#include <chrono>
#include <string>

#include "ktx/error.h"
#include "ktx/tokenizer.h"

namespace ktx::runtime {
namespace {

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence.
size_t complete_utf8_prefix(std::string_view s) {
  size_t i = s.size();
  // Walk back over at most 3 continuation bytes to the lead byte of the last sequence.
  size_t back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i == 0) return back == 0 ? 0 : s.size();  // only continuation bytes: pass them through
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 1;
  if ((lead & 0xE0) == 0xC0) need = 2;
  else if ((lead & 0xF0) == 0xE0) need = 3;
  else if ((lead & 0xF8) == 0xF0) need = 4;
  return back + 1 >= need ? s.size() : i - 1;
}

}  // namespace

GenerateStats generate(Session& session, std::span<const int32_t> prompt, int64_t n_predict,
                       Sampler& sampler, const TokenCallback& on_token,
                       const std::function<void()>& after_prompt) {
  using clock = std::chrono::steady_clock;
  const Tokenizer& tokenizer = session.model().tokenizer();
  GenerateStats stats;
  stats.n_prompt = static_cast<int64_t>(prompt.size());
  for (int32_t t : prompt) sampler.accept(t);

  auto t0 = clock::now();
  session.eval(prompt);
  if (session.logits().empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                "nothing to generate from: the prompt is empty and the session holds no tokens");
  }
  stats.prefill_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  if (after_prompt) after_prompt();

  std::vector<int32_t> generated;
  std::string text;   // decode(generated) as far as it was streamed
  size_t emitted = 0;  // bytes of `text` handed to the callback
  t0 = clock::now();
  for (int64_t i = 0; i < n_predict && session.position() < session.n_ctx(); ++i) {
    int32_t token = 0;
    try {
      token = sampler.sample(session.logits());
    } catch (const Error& e) {
      // The sampler refuses only logits it cannot choose from (NaN, +inf, all -inf): here they
      // are the model's, not the caller's, so the file's problem (a weight or an activation
      // overflowed), not a bad argument.
      throw Error(ErrorCode::kInvalidFile, fmt::format("the model's logits after position {}: {}",
                                                       session.position(), e.what()));
    }
    sampler.accept(token);
    if (tokenizer.is_eog(token)) {
      stats.stopped_at_eog = true;
      break;
    }
    generated.push_back(token);
    ++stats.n_generated;
    // Decoding the whole continuation keeps the tokenizer's spacing rules right; only the new,
    // complete-UTF-8 suffix is streamed.
    text = tokenizer.decode(generated);
    const size_t ready = complete_utf8_prefix(text);
    const std::string_view piece =
        ready > emitted ? std::string_view(text).substr(emitted, ready - emitted)
                        : std::string_view();
    if (ready > emitted) emitted = ready;
    if (on_token && !on_token(token, piece)) {
      stats.cancelled = true;
      break;
    }
    if (i + 1 < n_predict && session.position() < session.n_ctx()) {
      const int32_t next[1] = {token};
      session.eval(next);
    }
  }
  stats.decode_seconds = std::chrono::duration<double>(clock::now() - t0).count();
  if (emitted < text.size() && on_token) on_token(-1, std::string_view(text).substr(emitted));
  return stats;
}

}  // namespace ktx::runtime
