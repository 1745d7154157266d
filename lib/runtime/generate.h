// The generation loop shared by `ktx generate`, `ktx chat` and the bindings: prefill the prompt,
// then sample and decode token by token, streaming text as it becomes valid UTF-8.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

#include "runtime/sampler.h"
#include "runtime/session.h"

namespace ktx::runtime {

struct GenerateStats {
  int64_t n_prompt = 0;
  int64_t n_generated = 0;
  double prefill_seconds = 0;
  double decode_seconds = 0;
  bool stopped_at_eog = false;  // an end-of-generation token ended it
  bool cancelled = false;       // the callback asked to stop

  double prefill_tok_s() const { return prefill_seconds > 0 ? n_prompt / prefill_seconds : 0; }
  double decode_tok_s() const { return decode_seconds > 0 ? n_generated / decode_seconds : 0; }
};

// Receives each generated token and the text it completes (possibly empty while a multi-byte
// character is still incomplete). Return false to stop.
using TokenCallback = std::function<bool(int32_t token, std::string_view text)>;

// Evaluates `prompt` in the session (after what it already holds), then generates up to
// `n_predict` tokens, stopping early at an end-of-generation token of the model's tokenizer. The
// end-of-generation token itself is not streamed. `after_prompt`, when given, runs once the
// prompt is evaluated, before the first token is sampled (ktx generate saves --prompt-cache
// there). Throws ktx::Error on bad input (the session is then as it was before the failing
// step).
GenerateStats generate(Session& session, std::span<const int32_t> prompt, int64_t n_predict,
                       Sampler& sampler, const TokenCallback& on_token,
                       const std::function<void()>& after_prompt = {});

}  // namespace ktx::runtime
