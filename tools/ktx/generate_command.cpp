// `ktx generate -m M -p "…" -n N [sampling flags] [--chat] [--prompt-cache FILE]`: streams the
// continuation of a prompt to stdout, then prints prefill and decode speed to stderr.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "commands.h"
#include "core/output_path.h"
#include "ktx/tokenizer.h"
#include "model_args.h"
#include "runtime/generate.h"
#include "sampling_args.h"

namespace ktx::cli {

namespace {

// --prompt-cache FILE: restores the session saved there by an earlier run, if any, and returns
// how many of the prompt's tokens it already holds (the longest common prefix). What follows
// them is rewound; the last prompt token is kept only when the file also holds its logits.
size_t restore_prompt_cache(runtime::Session& session, const std::string& path,
                            std::span<const int32_t> prompt) {
  std::error_code ec;
  const bool exists = std::filesystem::exists(path, ec);
  if (ec) {
    throw Error(ErrorCode::kIo, fmt::format("--prompt-cache {}: {}", path, ec.message()));
  }
  if (!exists) return 0;
  try {
    session.load(path);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("--prompt-cache: {} (or name another file to start a new "
                                      "cache)",
                                      e.what()));
  }
  const std::vector<int32_t>& held = session.tokens();
  size_t common = 0;
  while (common < held.size() && common < prompt.size() && held[common] == prompt[common]) {
    ++common;
  }
  const bool has_all =
      common == prompt.size() && common == held.size() && !session.logits().empty();
  if (!has_all) {
    // Generation starts from the last prompt token's logits: evaluate it again.
    if (common == prompt.size() && common > 0) --common;
    session.rewind(static_cast<int64_t>(common));
  }
  return common;
}

// The session is saved by writing a temporary file in the file's folder and renaming it: that
// folder must exist and be writable. Checked before the prompt is evaluated (minutes, on a big
// model), not after.
void check_cache_folder(const std::string& path) {
  std::filesystem::path folder = std::filesystem::path(path).parent_path();
  if (folder.empty()) folder = ".";
  if (::access(folder.c_str(), W_OK | X_OK) != 0) {
    throw Error(ErrorCode::kIo, fmt::format("--prompt-cache {}: cannot write in the folder {}: {}",
                                            path, folder.string(), std::strerror(errno)));
  }
}

}  // namespace

int run_generate(const std::vector<std::string>& argv) {
  std::set<std::string> options =
      with_model_options({"p", "prompt", "n", "n-predict", "prompt-cache"});
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
  const auto cache_path = args.option("prompt-cache");
  size_t restored = 0;
  if (cache_path) {
    // Refused before anything is evaluated, not after the prompt was.
    core::refuse_output_path(*cache_path, model->file().paths(), "--prompt-cache");
    check_cache_folder(*cache_path);
    restored = restore_prompt_cache(session, *cache_path, tokens);
    // The sampler sees the whole prompt, as without the cache (repetition penalties).
    for (size_t i = 0; i < restored; ++i) sampler.accept(tokens[i]);
  }
  // With --prompt-cache, the session is saved once the prompt is evaluated (a failure is a
  // warning: generating is still worth it, without the file).
  bool saved = false;
  const auto save_prompt = [&] {
    if (!cache_path || restored == tokens.size()) return;
    try {
      session.save(*cache_path);
      saved = true;
    } catch (const Error& e) {
      std::fflush(stdout);
      fmt::print(stderr, "\nktx generate: warning: the prompt cache was not saved: {}\n", e.what());
    }
  };
  if (!args.flag("chat")) std::fputs(prompt->c_str(), stdout);
  std::fflush(stdout);
  runtime::GenerateStats stats;
  try {
    stats = runtime::generate(
        session, std::span(tokens).subspan(restored), n_predict, sampler,
        [](int32_t, std::string_view piece) {
          std::fwrite(piece.data(), 1, piece.size(), stdout);
          std::fflush(stdout);
          return true;
        },
        save_prompt);
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
  if (cache_path) {
    fmt::print(stderr, "prompt cache: {} of the prompt's {} tokens restored from {}{}\n", restored,
               tokens.size(), *cache_path, saved ? ", the prompt saved there" : "");
  }
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
