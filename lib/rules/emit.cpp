// A Plan written back as a rule file (`ktx plan --rules-out`): modules placed alike are grouped
// into one rule whose pattern lists their layers, so a 60-layer model gives a dozen rules, not 300.
#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <map>
#include <tuple>

#include "rules/rules.h"

namespace ktx::rules {
namespace {

// "model.layers.12.mlp.experts" -> (12, "mlp.experts"); other names -> (-1, name).
std::pair<int64_t, std::string> split_layer(const std::string& name) {
  constexpr std::string_view kPrefix = "model.layers.";
  if (!name.starts_with(kPrefix)) return {-1, name};
  const char* begin = name.data() + kPrefix.size();
  const char* end = name.data() + name.size();
  int64_t layer = 0;
  auto [p, ec] = std::from_chars(begin, end, layer);
  if (ec != std::errc() || p == begin || p == end || *p != '.') return {-1, name};
  return {layer, std::string(p + 1, end)};
}

std::string escape_regex(std::string_view text) {
  std::string out;
  for (char c : text) {
    if (std::string_view("\\^$.|?*+()[]{}").find(c) != std::string_view::npos) out += '\\';
    out += c;
  }
  return out;
}

// YAML single-quoted scalar: backslashes are literal, quotes are doubled.
std::string quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

std::string ranges(const std::vector<int64_t>& layers) {
  std::string out;
  for (size_t i = 0; i < layers.size();) {
    size_t j = i;
    while (j + 1 < layers.size() && layers[j + 1] == layers[j] + 1) ++j;
    out += fmt::format(
        "{}{}", out.empty() ? "" : ", ",
        i == j ? fmt::format("{}", layers[i]) : fmt::format("{}-{}", layers[i], layers[j]));
    i = j + 1;
  }
  return out;
}

struct Group {
  std::string suffix;  // the name after "model.layers.N." or the whole name
  bool layered = false;
  const exec::Placement* first = nullptr;
  std::vector<int64_t> layers;
};

}  // namespace

std::string plan_to_rules_yaml(const exec::Plan& plan, const std::string& header_comment) {
  using Key =
      std::tuple<std::string, bool, std::string, std::string, std::string, registry::OpOptions>;
  std::map<Key, size_t> index;
  std::vector<Group> groups;
  std::map<std::string, size_t> layers_with_suffix;
  for (const exec::Placement& p : plan.placements) {
    auto [layer, suffix] = split_layer(p.module);
    const bool layered = layer >= 0;
    if (layered) ++layers_with_suffix[suffix];
    Key key{suffix, layered, p.impl, p.generate_device.name(), p.prefill_device.name(), p.options};
    auto [it, added] = index.emplace(key, groups.size());
    if (added) groups.push_back(Group{suffix, layered, &p, {}});
    if (layered) groups[it->second].layers.push_back(layer);
  }

  std::string out;
  if (!header_comment.empty()) {
    size_t start = 0;
    while (start <= header_comment.size()) {
      size_t end = header_comment.find('\n', start);
      if (end == std::string::npos) end = header_comment.size();
      out += fmt::format("# {}\n", header_comment.substr(start, end - start));
      start = end + 1;
    }
  }
  out +=
      "# One rule per group of modules placed alike; the first rule that matches a module wins.\n"
      "# Format: docs/RULES.md.\n";
  for (const Group& g : groups) {
    const exec::Placement& p = *g.first;
    std::string pattern;
    std::string what;
    if (!g.layered) {
      pattern = escape_regex(g.suffix);
      what = g.suffix;
    } else {
      std::vector<int64_t> layers = g.layers;
      std::sort(layers.begin(), layers.end());
      layers.erase(std::unique(layers.begin(), layers.end()), layers.end());
      std::string alternatives;
      if (layers.size() == layers_with_suffix[g.suffix]) {
        alternatives = "\\d+";
      } else {
        alternatives = "(";
        for (size_t i = 0; i < layers.size(); ++i) {
          alternatives += fmt::format("{}{}", i ? "|" : "", layers[i]);
        }
        alternatives += ")";
      }
      pattern = fmt::format("model\\.layers\\.{}\\.{}", alternatives, escape_regex(g.suffix));
      what = fmt::format("{}, layers {}", g.suffix, ranges(layers));
    }
    std::string why = p.why;
    std::replace(why.begin(), why.end(), '\n', ' ');
    if (why.size() > 160) why = why.substr(0, 157) + "...";
    out += fmt::format("\n# {}: {}\n", what, why);
    out += fmt::format("- match:\n    name: {}\n  replace:\n    op: {}\n", quote(pattern), p.impl);
    if (p.generate_device == p.prefill_device) {
      out += fmt::format("    device: {}\n", p.generate_device.name());
    } else {
      out += fmt::format("    generate_device: {}\n    prefill_device: {}\n",
                         p.generate_device.name(), p.prefill_device.name());
    }
    if (!p.options.empty()) {
      out += "    kwargs:\n";
      for (const auto& [k, v] : p.options) out += fmt::format("      {}: {}\n", k, quote(v));
    }
  }
  return out;
}

}  // namespace ktx::rules
