// `ktx`: the command-line tool. Dispatches to one subcommand per file and turns errors into one
// clear line on stderr and a non-zero exit code.
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "commands.h"
#include "ktx/error.h"
#include "ktx/ktx.h"

namespace {

constexpr const char* kUsage =
    "usage: ktx COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  inspect FILE [--json]            metadata and tensor table of a GGUF file (or split model)\n"
    "  quantize IN OUT PRESET [--threads N]\n"
    "                                   requantize a GGUF model (presets: ktx quantize --help)\n"
    "  generate -m MODEL -p PROMPT [-n N] [--temp T --top-k K --top-p P --min-p P --seed S]\n"
    "           [--chat] [--threads N] [--ctx N] [--rules FILE]\n"
    "                                   stream a continuation, then prefill/decode speed\n"
    "  chat -m MODEL [--system TEXT]    interactive chat with the model's template\n"
    "  logits -m MODEL --tokens 1,2,3 -o OUT.f32\n"
    "                                   all positions' logits as raw float32 [n][n_vocab]\n"
    "  perplexity -m MODEL -f FILE.txt [--ctx N]\n"
    "  make-model OUT.gguf [...]        a GGUF with random weights (ktx make-model --help)\n"
    "  plan [-m MODEL | --arch-preset NAME --quant TYPE] --gpu-mem SIZE --dram SIZE [...]\n"
    "                                   where every module would run, and the predicted speed\n"
    "  backends [--load PATH]... [--no-search]\n"
    "                                   backends found, their devices and operators\n"
    "  bench -m MODEL [-p 512] [-n 128] [-t N] [--json]\n"
    "                                   prefill/decode speed, per-kind breakdown, roofline\n"
    "  version                          print the library version\n"
    "  help                             this text\n";

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  try {
    if (command == "inspect") return ktx::cli::run_inspect(args);
    if (command == "quantize") return ktx::cli::run_quantize(args);
    if (command == "generate") return ktx::cli::run_generate(args);
    if (command == "chat") return ktx::cli::run_chat(args);
    if (command == "logits") return ktx::cli::run_logits(args);
    if (command == "perplexity") return ktx::cli::run_perplexity(args);
    if (command == "make-model") return ktx::cli::run_make_model(args);
    if (command == "plan") return ktx::cli::run_plan(args);
    if (command == "backends") return ktx::cli::run_backends(args);
    if (command == "bench") return ktx::cli::run_bench(args);
    if (command == "version" || command == "--version") {
      std::printf("ktx %s (ABI %u.%u)\n", ktx_version_string(), ktx_abi_version() >> 16,
                  ktx_abi_version() & 0xffffu);
      return 0;
    }
    if (command == "help" || command == "--help" || command == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    std::fprintf(stderr, "ktx: unknown command '%s'\n\n%s", command.c_str(), kUsage);
    return 2;
  } catch (const ktx::Error& e) {
    std::fprintf(stderr, "ktx %s: error: %s\n", command.c_str(), e.what());
    return e.code() == ktx::ErrorCode::kInvalidArgument ? 2 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ktx %s: internal error: %s\n", command.c_str(), e.what());
    return 1;
  }
}
