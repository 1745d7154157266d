// `ktx chat -m M [--system TEXT]`: an interactive conversation with the model's chat template.
// Each turn re-renders the whole conversation and evaluates only what the session does not
// already hold (the longest common prefix is kept; the rest is rewound). When the conversation
// outgrows the context, its oldest turns are dropped (the system message stays), with a note.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <string>

#include "commands.h"
#include "ktx/tokenizer.h"
#include "model_args.h"
#include "runtime/generate.h"
#include "sampling_args.h"

namespace ktx::cli {

int run_chat(const std::vector<std::string>& argv) {
  std::set<std::string> options = with_model_options({"system", "n", "n-predict"});
  options.insert(kSamplingOptions.begin(), kSamplingOptions.end());
  Args args("chat", argv, {}, options);
  args.positional({});
  const int64_t n_predict =
      args.int_option("n", args.int_option("n-predict", 512, 1, 1 << 24), 1, 1 << 24);
  runtime::Sampler sampler(sampling_params(args));
  auto model = load_model(args);
  const Tokenizer& tokenizer = model->tokenizer();
  runtime::Session session(model, context_size(args));

  std::vector<ChatMessage> messages;
  if (auto system = args.option("system")) messages.push_back({"system", *system});
  const bool terminal = isatty(fileno(stdin)) != 0;
  if (terminal) fmt::print(stderr, "ktx chat — an empty line or end of input quits.\n");
  std::string line;
  while (true) {
    if (terminal) fmt::print("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line) || line.empty()) break;
    const size_t first_turn = !messages.empty() && messages.front().role == "system" ? 1 : 0;
    // Room for the prompt and at least a few tokens of the reply.
    const int64_t room = session.n_ctx() - std::min<int64_t>(16, session.n_ctx() / 4);
    {
      // A message that cannot fit even with every earlier turn dropped is refused before any
      // is: the conversation stays as it was.
      std::vector<ChatMessage> alone(messages.begin(),
                                     messages.begin() + static_cast<ptrdiff_t>(first_turn));
      alone.push_back({"user", line});
      const size_t needed =
          tokenizer.encode(tokenizer.apply_chat_template(alone, true), false, true).size();
      if (static_cast<int64_t>(needed) > room) {
        fmt::print(stderr,
                   "[this message needs {} tokens with the template, the context holds {} "
                   "(--ctx): not sent]\n",
                   needed, session.n_ctx());
        continue;
      }
    }
    messages.push_back({"user", line});
    std::vector<int32_t> tokens;
    while (true) {
      tokens = tokenizer.encode(tokenizer.apply_chat_template(messages, true), false, true);
      // Fits, or only the new message is left (which fits: checked above).
      if (static_cast<int64_t>(tokens.size()) <= room || messages.size() - first_turn <= 1) break;
      // The oldest exchange goes: the user's message and the reply to it.
      const size_t drop = messages.size() - first_turn >= 3 ? 2 : 1;
      messages.erase(messages.begin() + static_cast<ptrdiff_t>(first_turn),
                     messages.begin() + static_cast<ptrdiff_t>(first_turn + drop));
      fmt::print(stderr,
                 "[the oldest turn was dropped: the conversation outgrew the context of {} "
                 "tokens (--ctx)]\n",
                 session.n_ctx());
    }
    // Keep what the session already evaluated of this rendering.
    const std::vector<int32_t>& held = session.tokens();
    size_t common = 0;
    while (common < held.size() && common < tokens.size() && held[common] == tokens[common]) {
      ++common;
    }
    if (common == tokens.size() && common > 0) --common;  // re-evaluate one token for logits
    session.rewind(static_cast<int64_t>(common));
    std::string reply;
    sampler.reset();
    const runtime::GenerateStats stats =
        runtime::generate(session, std::span(tokens).subspan(common), n_predict, sampler,
                          [&](int32_t, std::string_view piece) {
                            reply += piece;
                            std::fwrite(piece.data(), 1, piece.size(), stdout);
                            std::fflush(stdout);
                            return true;
                          });
    std::fputc('\n', stdout);
    if (!stats.stopped_at_eog && session.position() >= session.n_ctx()) {
      fmt::print(stderr, "[the reply stopped at the end of the context ({} tokens, --ctx)]\n",
                 session.n_ctx());
    }
    messages.push_back({"assistant", reply});
  }
  return 0;
}

}  // namespace ktx::cli
