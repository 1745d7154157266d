// Options shared by the subcommands that load a model: -m/--model, --rules, --threads, --ctx,
// and loading with a progress bar on a terminal.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>

#include "args.h"
#include "runtime/model.h"

namespace ktx::cli {

inline const std::set<std::string> kModelOptions = {"model", "m", "rules", "threads", "t", "ctx"};

inline std::string model_path(const Args& args) {
  auto m = args.option("model");
  if (!m) m = args.option("m");
  if (!m) args.fail("needs a model: -m FILE.gguf");
  return *m;
}

inline std::shared_ptr<runtime::Model> load_model(const Args& args) {
  runtime::ModelOptions options;
  options.rules_path = args.option("rules").value_or("");
  options.n_threads = static_cast<int>(
      args.int_option("threads", args.int_option("t", 0, 0, 4096), 0, 4096));
  const bool terminal = isatty(fileno(stderr)) != 0;
  options.prefault = terminal;  // on a terminal, read the weights up front and show progress
  options.progress = [terminal](double f) {
    if (terminal) {
      const int width = 40;
      const int filled = static_cast<int>(f * width);
      fmt::print(stderr, "\rloading [{}{}] {:3.0f}%", std::string(filled, '#'),
                 std::string(width - filled, ' '), f * 100.0);
      if (f >= 1.0) fmt::print(stderr, "\r\033[K");
    }
    return true;
  };
  return runtime::Model::load(model_path(args), options);
}

inline int64_t context_size(const Args& args) { return args.int_option("ctx", 0, 0, 1 << 24); }

// The positional/flag sets of a model command: the shared options plus its own.
inline std::set<std::string> with_model_options(std::set<std::string> own) {
  own.insert(kModelOptions.begin(), kModelOptions.end());
  return own;
}

}  // namespace ktx::cli
