// `ktx generate -m M -p "…" -n N [sampling flags] [--chat]`: streams the continuation of a prompt
// to stdout, then prints prefill and decode speed to stderr.
#include <fmt/format.h>

#include <cstdio>

#include "commands.h"
#include "ktx/tokenizer.h"
#include "model_args.h"
#include "runtime/generate.h"
#include "sampling_args.h"

namespace ktx::cli {

int run_generate(const std::vector<std::string>& argv) {
  std::set<std::string> options = with_model_options({"p", "prompt", "n", "n-predict"});
  options.insert(kSamplingOptions.begin(), kSamplingOptions.end());
  Args args("generate", argv, {"chat", "no-special"}, options);
  args.positional({});
  auto prompt = args.option("p");
  if (!prompt) prompt = args.option("prompt");
  if (!prompt) args.fail("needs a prompt: -p \"text\"");
  const int64_t n_predict =
      args.int_option("n", args.int_option("n-predict", 64, 0, 1 << 24), 0, 1 << 24);
  runtime::Sampler sampler(sampling_params(args));

  auto model = load_model(args);
  const Tokenizer& tokenizer = model->tokenizer();
  std::string text = *prompt;
  if (args.flag("chat")) {
    const ChatMessage turn{"user", text};
    text = tokenizer.apply_chat_template({&turn, 1}, true);
  }
  // A chat template writes the BOS itself; a plain prompt gets the file's BOS rule.
  const std::vector<int32_t> tokens =
      tokenizer.encode(text, /*add_special=*/!args.flag("chat"), /*parse_special=*/!args.flag("no-special"));

  runtime::Session session(model, context_size(args));
  if (static_cast<int64_t>(tokens.size()) > session.n_ctx()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("the prompt is {} tokens, the context {} (--ctx)", tokens.size(),
                            session.n_ctx()));
  }
  if (!args.flag("chat")) std::fputs(prompt->c_str(), stdout);
  std::fflush(stdout);
  runtime::GenerateStats stats;
  try {
    stats =
        runtime::generate(session, tokens, n_predict, sampler, [](int32_t, std::string_view piece) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          return true;
        });
  } catch (...) {
    std::fputc('\n', stdout);  // the error goes on a line of its own, after the text so far
    std::fflush(stdout);
    throw;
  }
  std::fputc('\n', stdout);
  const bool context_full = !stats.stopped_at_eog && stats.n_generated < n_predict &&
                            session.position() >= session.n_ctx();
  fmt::print(stderr, "\nprefill: {} tokens in {:.2f} s, {:.2f} tok/s\n", stats.n_prompt,
             stats.prefill_seconds, stats.prefill_tok_s());
  fmt::print(stderr, "decode:  {} tokens in {:.2f} s, {:.2f} tok/s ({} threads{})\n",
             stats.n_generated, stats.decode_seconds, stats.decode_tok_s(), model->n_threads(),
             stats.stopped_at_eog ? ", stopped at end of generation"
             : context_full       ? ", stopped: the context is full (--ctx)"
                                  : "");
  fmt::print(stderr, "KV cache: {} bytes per token ({} positions reserved)\n",
             session.kv_bytes_per_token(), session.n_ctx());
  return 0;
}

}  // namespace ktx::cli
