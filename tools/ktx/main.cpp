// `ktx`: the command-line tool. Dispatches to one subcommand per file and turns errors into one
// clear line on stderr and a non-zero exit code.
#include <signal.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <exception>
#include <new>
#include <string>
#include <system_error>
#include <vector>

#include "commands.h"
#include "core/output_path.h"
#include "ktx/error.h"
#include "ktx/ktx.h"

namespace {

constexpr const char* kUsage =
    "usage: ktx COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  inspect FILE [--json]            metadata and tensor table of a GGUF file (or split model)\n"
    "  quantize IN OUT PRESET [--threads N] [--pure]\n"
    "                                   requantize a GGUF model (presets: ktx quantize --help)\n"
    "  generate -m MODEL -p PROMPT [-n N] [--temp T --top-k K --top-p P --min-p P --seed S]\n"
    "           [--chat] [--threads N] [--ctx N] [--rules FILE] [--backend PATH]\n"
    "           [--prompt-cache FILE]\n"
    "                                   stream a continuation, then prefill/decode speed;\n"
    "                                   --prompt-cache: reuse the prompt's evaluation that an\n"
    "                                   earlier run with the same model saved there, and save\n"
    "                                   this one's (a session file)\n"
    "                                   (chat, logits, perplexity and bench take -t/--threads,\n"
    "                                   --ctx, --rules and --backend too; --backend: backend\n"
    "                                   modules to load, ':'-separated like KTX_BACKEND_PATH)\n"
    "  chat -m MODEL [--system TEXT]    interactive chat with the model's template\n"
    "  logits -m MODEL --tokens 1,2,3 -o OUT.f32\n"
    "                                   all positions' logits as raw float32 [n][n_vocab]\n"
    "  perplexity -m MODEL -f FILE.txt [--ctx N]\n"
    "  make-model OUT.gguf [...]        a GGUF with random weights (ktx make-model --help)\n"
    "  plan [-m MODEL | --arch-preset NAME --quant TYPE] --gpu-mem SIZE --dram SIZE [...]\n"
    "                                   where every module would run, and the predicted speed\n"
    "  backends [--load PATH]... [--no-search]\n"
    "                                   backends found, their devices and operators\n"
    "  bench -m MODEL [-p 512] [-n 128] [-t N] [--json] [--batch B]\n"
    "                                   prefill/decode speed, per-kind breakdown, roofline\n"
    "  version                          print the library version\n"
    "  help                             this text\n";

// Ctrl-C, kill or a closed terminal: the temporary files being written (a quantized model can
// be tens of GB) go, then the signal does what it would have done.
extern "C" void on_stop_signal(int sig) {
  ktx::core::remove_temporaries();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

}  // namespace

int main(int argc, char** argv) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal the caller ignores stays ignored: `nohup ktx quantize …` must survive a hang-up,
    // and a background job the shell's Ctrl-C.
    struct sigaction old {};
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) continue;
    struct sigaction action {};
    action.sa_handler = on_stop_signal;
    sigemptyset(&action.sa_mask);
    sigaction(sig, &action, nullptr);
  }
  if (argc < 2) {
    std::fputs(kUsage, stderr);
    return 2;
  }
  const std::string command = argv[1];
  const std::vector<std::string> args(argv + 2, argv + argc);
  // The commands without a usage text of their own answer --help anywhere, or -h first (a
  // later "-h" may be a prompt: -p -h), with the general one, which gives their arguments.
  const bool own_usage = command == "quantize" || command == "make-model" || command == "plan" ||
                         command == "backends" || command == "bench";
  const bool help = !args.empty() && (args.front() == "-h" ||
                                      std::find(args.begin(), args.end(), "--help") != args.end());
  if (!own_usage && help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  try {
    int (*run)(const std::vector<std::string>&) = nullptr;
    if (command == "inspect") run = ktx::cli::run_inspect;
    if (command == "quantize") run = ktx::cli::run_quantize;
    if (command == "generate") run = ktx::cli::run_generate;
    if (command == "chat") run = ktx::cli::run_chat;
    if (command == "logits") run = ktx::cli::run_logits;
    if (command == "perplexity") run = ktx::cli::run_perplexity;
    if (command == "make-model") run = ktx::cli::run_make_model;
    if (command == "plan") run = ktx::cli::run_plan;
    if (command == "backends") run = ktx::cli::run_backends;
    if (command == "bench") run = ktx::cli::run_bench;
    if (run != nullptr) {
      const int status = run(args);
      // Output that never arrived (a full disk, a closed pipe) is a failure, not a success.
      if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
        std::fprintf(stderr, "ktx %s: error: cannot write to standard output: %s\n",
                     command.c_str(), std::strerror(errno));
        return 1;
      }
      return status;
    }
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
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "ktx %s: error: out of memory\n", command.c_str());
    return 1;
  } catch (const std::system_error& e) {  // the operating system refused: fmt's failed writes
    std::fprintf(stderr, "ktx %s: error: %s\n", command.c_str(), e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ktx %s: internal error: %s\n", command.c_str(), e.what());
    return 1;
  }
}
