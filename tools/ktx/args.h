// Command-line parsing for the ktx subcommands: positional arguments and --flags, with errors that
// name the subcommand, the argument and what was expected.
#pragma once

#include <fmt/format.h>

#include <charconv>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/error.h"

namespace ktx::cli {

class Args {
 public:
  // `flags` take no value (--json); `options` take one (--threads 4 or --threads=4).
  Args(std::string command, const std::vector<std::string>& argv, std::set<std::string> flags,
       std::set<std::string> options)
      : command_(std::move(command)) {
    for (size_t i = 0; i < argv.size(); ++i) {
      const std::string& a = argv[i];
      // --name and, for the one-letter options llama.cpp users type (-m, -p, -n), -x.
      const bool long_form = a.size() > 2 && a.rfind("--", 0) == 0;
      const bool short_form = a.size() == 2 && a[0] == '-' && a[1] != '-';
      if (long_form || short_form) {
        std::string name = a.substr(long_form ? 2 : 1);
        std::optional<std::string> inline_value;
        if (auto eq = name.find('='); eq != std::string::npos) {
          inline_value = name.substr(eq + 1);
          name = name.substr(0, eq);
        }
        if (flags.count(name)) {
          if (inline_value) fail(fmt::format("{} takes no value", a.substr(0, a.find('='))));
          flags_.insert(name);
        } else if (options.count(name)) {
          if (inline_value) {
            options_[name] = *inline_value;
          } else if (i + 1 < argv.size()) {
            options_[name] = argv[++i];
          } else {
            fail(fmt::format("{} needs a value", a));
          }
        } else {
          std::string known;
          auto dash = [](const std::string& n) { return n.size() == 1 ? " -" + n : " --" + n; };
          for (const auto& f : flags) known += dash(f);
          for (const auto& o : options) known += dash(o) + " VALUE";
          fail(fmt::format("unknown option '{}'; expected one of:{}", a,
                           known.empty() ? " (none)" : known));
        }
      } else {
        positional_.push_back(a);
      }
    }
  }

  const std::string& command() const { return command_; }
  bool flag(const std::string& name) const { return flags_.count(name) != 0; }

  std::optional<std::string> option(const std::string& name) const {
    auto it = options_.find(name);
    if (it == options_.end()) return std::nullopt;
    return it->second;
  }

  int64_t int_option(const std::string& name, int64_t fallback, int64_t min, int64_t max) const {
    auto s = option(name);
    if (!s) return fallback;
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s->data(), s->data() + s->size(), v);
    if (ec != std::errc() || p != s->data() + s->size() || v < min || v > max) {
      fail(fmt::format("--{} must be a whole number from {} to {}, not '{}'", name, min, max, *s));
    }
    return v;
  }

  // Exactly `n` positional arguments, named for the error message.
  const std::vector<std::string>& positional(const std::vector<std::string_view>& names) const {
    if (positional_.size() != names.size()) {
      std::string usage, got;
      for (auto n : names) usage += fmt::format(" {}", n);
      for (const std::string& p : positional_) got += fmt::format(" '{}'", p);
      if (names.empty())
        fail(fmt::format("unexpected argument{}:{}", positional_.size() == 1 ? "" : "s", got));
      fail(fmt::format("expected{} ({} argument{}), got {}{}", usage, names.size(),
                       names.size() == 1 ? "" : "s", positional_.size(),
                       got.empty() ? "" : ":" + got));
    }
    return positional_;
  }

  [[noreturn]] void fail(const std::string& what) const {
    throw Error(ErrorCode::kInvalidArgument, what);  // main() prefixes the command
  }

 private:
  std::string command_;
  std::set<std::string> flags_;
  std::map<std::string, std::string> options_;
  std::vector<std::string> positional_;
};

}  // namespace ktx::cli
