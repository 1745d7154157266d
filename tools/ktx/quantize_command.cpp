// `ktx quantize IN.gguf OUT.gguf PRESET [--threads N] [--pure]`: requantize a model with one of
// llama.cpp's presets, reporting progress on a terminal and a summary at the end.
#include <fmt/format.h>
#include <unistd.h>

#include <cstdio>
#include <thread>

#include "args.h"
#include "commands.h"
#include "ktx/quantize.h"

namespace ktx::cli {
namespace {

void print_presets(std::FILE* out) {
  fmt::print(out, "usage: ktx quantize IN.gguf OUT.gguf PRESET [--threads N] [--pure]\n\npresets:\n");
  for (const quantize::PresetInfo& p : quantize::presets()) {
    fmt::print(out, "  {:<8} {}\n", p.name, p.description);
  }
}

}  // namespace

int run_quantize(const std::vector<std::string>& argv) {
  Args args("quantize", argv, {"pure", "help"}, {"threads"});
  if (args.flag("help")) {
    print_presets(stdout);
    return 0;
  }
  const auto& pos = args.positional({"IN.gguf", "OUT.gguf", "PRESET"});
  quantize::Options options;
  options.threads = static_cast<int>(args.int_option("threads", 0, 0, 4096));
  options.pure = args.flag("pure");
  const quantize::Preset preset = quantize::parse_preset(pos[2]);
  const bool terminal = isatty(fileno(stderr)) != 0;
  options.progress = [terminal](const quantize::Progress& p) {
    // Warnings are in the summary at the end; on a terminal they also show as they happen,
    // between the progress lines.
    if (!terminal) return;
    if (p.kind == quantize::Progress::Kind::kWarning) {
      fmt::print(stderr, "\r\033[Kwarning: {}\n", p.message);
    } else {
      fmt::print(stderr, "\r\033[K[{}/{}] {} -> {}", p.done, p.count, p.tensor->name,
                 type_name(p.tensor->to));
      if (p.done == p.count) fmt::print(stderr, "\n");
    }
  };
  quantize::Summary summary = quantize::quantize_model(pos[0], pos[1], preset, options);
  // On one terminal the warnings were just shown live: the summary counts them instead of
  // showing each a second time (into a file or a pipe it lists them).
  const size_t shown_live = terminal && isatty(fileno(stdout)) ? summary.warnings.size() : 0;
  if (shown_live > 0) summary.warnings.clear();
  fmt::print("{}", quantize::format_summary(summary));
  if (shown_live > 0) {
    fmt::print("{} warning{} (above)\n", shown_live, shown_live == 1 ? "" : "s");
  }
  return 0;
}

}  // namespace ktx::cli
