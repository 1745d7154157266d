// Options shared by the subcommands that load a model: -m/--model, --rules, --threads, --ctx,
// --backend, and loading with a progress bar on a terminal.
#pragma once

#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "args.h"
#include "registry/backend_loader.h"
#include "runtime/model.h"

namespace ktx::cli {

inline const std::set<std::string> kModelOptions = {"model", "m",   "rules",  "threads",
                                                    "t",     "ctx", "backend"};

// --backend PATH: backend modules (libktx-backend-*.so files or folders of them) to load besides
// those found by default, ':'-separated like KTX_BACKEND_PATH.
inline std::vector<std::string> backend_paths(const Args& args) {
  const std::optional<std::string> list = args.option("backend");
  if (!list) return {};
  std::vector<std::string> out = registry::split_path_list(list->c_str());
  if (out.empty()) args.fail("--backend needs a module file or folder");
  return out;
}

inline std::string model_path(const Args& args) {
  auto m = args.option("model");
  if (!m) m = args.option("m");
  if (!m) args.fail("needs a model: -m FILE.gguf");
  return *m;
}

inline std::shared_ptr<runtime::Model> load_model(const Args& args) {
  runtime::ModelOptions options;
  options.rules_path = args.option("rules").value_or("");
  options.backend_paths = backend_paths(args);
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
  std::shared_ptr<runtime::Model> model = runtime::Model::load(model_path(args), options);
  // A rule that matches nothing or is shadowed by an earlier one is most likely a mistake.
  for (const std::string& w : model->warnings()) {
    fmt::print(stderr, "ktx {}: warning: {}\n", args.command(), w);
  }
  const int64_t trained = model->config().n_ctx_train;
  if (const std::optional<std::string> ctx = args.option("ctx");
      ctx && trained > 0 && args.int_option("ctx", 0, 0, int64_t{1} << 40) > trained) {
    fmt::print(stderr,
               "ktx {}: warning: --ctx {} is beyond the {} positions the model was trained for "
               "(context_length); its output degrades past them\n",
               args.command(), *ctx, trained);
  }
  return model;
}

inline int64_t context_size(const Args& args) { return args.int_option("ctx", 0, 0, 1 << 24); }

// The positional/flag sets of a model command: the shared options plus its own.
inline std::set<std::string> with_model_options(std::set<std::string> own) {
  own.insert(kModelOptions.begin(), kModelOptions.end());
  return own;
}

}  // namespace ktx::cli
