// `ktx backends`: the backends this ktx would use — built in, found next to it, or named with
// --load — with their devices, memory and operators, and every module left out and why.
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <vector>

#include "commands.h"
#include "ktx/error.h"
#include "registry/backend_loader.h"

namespace ktx::cli {
namespace {

constexpr const char* kUsage =
    "usage: ktx backends [--load PATH]... [--no-search]\n"
    "\n"
    "Lists the backends ktx loads: the built-in CPU backend, the modules (libktx-backend-*.so)\n"
    "found in the default folders and KTX_BACKEND_PATH, and those given with --load.\n"
    "\n"
    "  --load PATH    a module file, or a folder of modules, to load as well (repeatable)\n"
    "  --no-search    skip the default folders and KTX_BACKEND_PATH\n"
    "\n"
    "Exit code 1 when a module could not be loaded (warnings), else 0.\n";

std::string gib(uint64_t bytes) {
  return fmt::format("{:.1f} GiB", static_cast<double>(bytes) / (1024.0 * 1024.0 * 1024.0));
}

}  // namespace

int run_backends(const std::vector<std::string>& args) {
  registry::BackendLoadOptions options;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (a == "--no-search") {
      options.search_default_dirs = false;
    } else if (a == "--load") {
      if (i + 1 == args.size()) {
        throw Error(ErrorCode::kInvalidArgument, "--load needs a PATH: a module file or a folder");
      }
      options.paths.push_back(args[++i]);
    } else if (a.rfind("--load=", 0) == 0) {
      options.paths.push_back(a.substr(7));
    } else {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("backends: unexpected argument '{}'\n\n{}", a, kUsage));
    }
  }

  registry::OperatorRegistry registry;
  const registry::BackendSet set = registry::load_backends(registry, options);

  for (const auto& b : set.backends) {
    const std::string from = b->builtin() ? "built in" : b->path();
    std::printf("%s  (%s, score %d)\n", b->name().c_str(), from.c_str(), b->score());
    if (!b->description().empty()) std::printf("  %s\n", b->description().c_str());
    for (int d = 0; d < b->device_count(); ++d) {
      const registry::BackendDeviceInfo dev = b->device(d);
      std::string line = "  device " + dev.name;
      if (!dev.description.empty()) line += ": " + dev.description;
      if (dev.total_bytes)
        line += fmt::format(", {} free of {}", gib(*dev.free_bytes), gib(*dev.total_bytes));
      std::printf("%s\n", line.c_str());
    }
    std::printf("  %s\n", b->has_streams() ? "streams: yes" : "streams: no (synchronous)");
    std::printf("  operators (%zu):\n", b->operators().size());
    for (const std::string& name : b->operators()) {
      const registry::OpImpl* impl = registry.find(name);
      std::printf("    %-26s %s\n", name.c_str(), impl ? impl->description.c_str() : "");
    }
  }

  if (options.search_default_dirs) {
    std::printf("\nsearched:\n");
    for (const std::string& dir : registry::default_backend_dirs()) {
      std::printf("  %s\n", dir.c_str());
    }
  }
  bool warned = false;
  if (!set.refused.empty()) {
    std::printf("\nnot loaded:\n");
    for (const registry::BackendRefusal& r : set.refused) {
      std::printf("  %s: %s\n", r.warning ? "warning" : "note", r.message.c_str());
      warned = warned || r.warning;
    }
  }
  return warned ? 1 : 0;
}

}  // namespace ktx::cli
