// `ktx logits -m M --tokens 1,2,3 -o out.f32`: evaluates token ids in one batch from position 0
// (no BOS added) and writes every position's logits as raw little-endian float32, row-major
// [n_tokens][n_vocab] — for comparisons with other engines.
#include <fmt/format.h>

#include <charconv>
#include <cstdio>
#include <memory>

#include "commands.h"
#include "core/output_path.h"
#include "ktx/error.h"
#include "model_args.h"
#include "runtime/session.h"

namespace ktx::cli {
namespace {

std::vector<int32_t> parse_token_list(const Args& args, const std::string& text) {
  std::vector<int32_t> tokens;
  size_t start = 0;
  while (start <= text.size()) {
    size_t end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view item(text.data() + start, end - start);
    int32_t v = 0;
    auto [p, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || p != item.data() + item.size()) {
      args.fail(fmt::format("--tokens: item #{} '{}' is not a token id (expected e.g. 1,2,3)",
                            tokens.size(), item));
    }
    tokens.push_back(v);
    start = end + 1;
  }
  return tokens;
}

}  // namespace

int run_logits(const std::vector<std::string>& argv) {
  Args args("logits", argv, {}, with_model_options({"tokens", "o", "output"}));
  args.positional({});
  const auto tokens_text = args.option("tokens");
  if (!tokens_text) args.fail("needs --tokens ID,ID,...");
  auto out_path = args.option("o");
  if (!out_path) out_path = args.option("output");
  if (!out_path) args.fail("needs -o OUT.f32");
  const std::vector<int32_t> tokens = parse_token_list(args, *tokens_text);
  core::refuse_output_path(*out_path, {model_path(args), args.option("rules").value_or("")}, "-o");
  if (context_size(args) > 0 && context_size(args) < static_cast<int64_t>(tokens.size())) {
    args.fail(fmt::format("--ctx {} is smaller than the {} tokens given", context_size(args),
                          tokens.size()));
  }

  auto model = load_model(args);
  core::refuse_output_path(*out_path, model->file().paths(), "-o");  // every part of a split file
  const int64_t ctx = std::max<int64_t>(context_size(args), static_cast<int64_t>(tokens.size()));
  runtime::Session session(model, ctx);
  const std::vector<float> logits = session.eval_all(tokens);

  static_assert(sizeof(float) == 4);
  core::write_file_atomically(
      *out_path, {reinterpret_cast<const char*>(logits.data()), logits.size() * sizeof(float)});
  fmt::print(stderr, "wrote {} x {} logits to {}\n", tokens.size(), model->config().n_vocab,
             *out_path);
  return 0;
}

}  // namespace ktx::cli
