// The ktx subcommands. Each takes its arguments (after the subcommand name) and returns the
// process exit code; errors are thrown as ktx::Error and printed by main().
#pragma once

#include <string>
#include <vector>

namespace ktx::cli {

int run_inspect(const std::vector<std::string>& args);
int run_quantize(const std::vector<std::string>& args);
int run_generate(const std::vector<std::string>& args);
int run_chat(const std::vector<std::string>& args);
int run_logits(const std::vector<std::string>& args);
int run_perplexity(const std::vector<std::string>& args);
int run_make_model(const std::vector<std::string>& args);
int run_plan(const std::vector<std::string>& args);
int run_backends(const std::vector<std::string>& args);
int run_bench(const std::vector<std::string>& args);

}  // namespace ktx::cli
