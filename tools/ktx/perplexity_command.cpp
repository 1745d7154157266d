// `ktx perplexity -m M -f file.txt [--ctx N]`: perplexity of a text, evaluated in independent
// windows of --ctx tokens (default 512); the first half of each window is context only, the
// second half is scored, as llama.cpp's perplexity tool does.
#include <fmt/format.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "commands.h"
#include "ktx/error.h"
#include "ktx/tokenizer.h"
#include "model_args.h"
#include "runtime/session.h"

namespace ktx::cli {

int run_perplexity(const std::vector<std::string>& argv) {
  Args args("perplexity", argv, {}, with_model_options({"f", "file", "chunks"}));
  args.positional({});
  auto path = args.option("f");
  if (!path) path = args.option("file");
  if (!path) args.fail("needs a text file: -f FILE.txt");
  std::error_code ec;
  if (std::filesystem::is_directory(*path, ec)) {
    args.fail(fmt::format("-f {} is a directory; give a text file", *path));
  }
  std::ifstream in(*path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, fmt::format("cannot read {}", *path));
  std::stringstream buffer;
  buffer << in.rdbuf();

  auto model = load_model(args);
  const std::vector<int32_t> tokens =
      model->tokenizer().encode(buffer.str(), /*add_special=*/false, /*parse_special=*/false);
  const int64_t window = context_size(args) > 0 ? context_size(args) : 512;
  if (window < 4) args.fail("--ctx must be at least 4 for perplexity");
  const int64_t n_windows = static_cast<int64_t>(tokens.size()) / window;
  const int64_t max_chunks = args.int_option("chunks", n_windows, 1, 1 << 30);
  if (n_windows == 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{} has {} tokens, fewer than one window of {} (lower --ctx)", *path,
                            tokens.size(), window));
  }
  const int64_t n_vocab = model->config().n_vocab;
  runtime::Session session(model, window);
  double nll = 0.0;
  int64_t scored = 0;
  for (int64_t w = 0; w < std::min(n_windows, max_chunks); ++w) {
    session.reset();
    const std::span<const int32_t> chunk(tokens.data() + w * window, static_cast<size_t>(window));
    const std::vector<float> logits = session.eval_all(chunk);
    for (int64_t i = window / 2; i + 1 < window; ++i) {
      const float* row = logits.data() + i * n_vocab;
      double max = row[0];
      for (int64_t v = 1; v < n_vocab; ++v) max = std::max<double>(max, row[v]);
      double sum = 0.0;
      for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(row[v] - max);
      const double log_p = row[chunk[static_cast<size_t>(i + 1)]] - max - std::log(sum);
      if (!std::isfinite(log_p)) {
        throw Error(ErrorCode::kInvalidFile,
                    fmt::format("the model's logits at window {}, position {} are not finite "
                                "(a weight or an activation overflowed): no perplexity",
                                w + 1, i));
      }
      nll -= log_p;
      ++scored;
    }
    fmt::print("[{}] {:.4f}\n", w + 1, std::exp(nll / static_cast<double>(scored)));
    std::fflush(stdout);
  }
  fmt::print("perplexity: {:.4f} over {} scored tokens ({} windows of {})\n",
             std::exp(nll / static_cast<double>(scored)), scored, std::min(n_windows, max_chunks),
             window);
  return 0;
}

}  // namespace ktx::cli
