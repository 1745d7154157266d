// Routing statistics files: validation and per-layer shares.
#include "planner/routing_stats.h"

#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ktx/error.h"

namespace ktx::planner {
namespace {

[[noreturn]] void fail(const std::string& file, const YAML::Node& node, const std::string& what) {
  const YAML::Mark m = node.Mark();
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}:{}: {}", file, m.is_null() ? 1 : m.line + 1, what));
}

}  // namespace

RoutingStats parse_routing_stats(const std::string& text, const std::string& name) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}:{}: not valid JSON: {}", name, e.mark.line + 1, e.msg));
  }
  if (!root.IsMap()) fail(name, root, "routing statistics are a JSON object with \"layers\"");
  RoutingStats stats;
  stats.source = name;
  for (auto it = root.begin(); it != root.end(); ++it) {
    const std::string key = it->first.Scalar();
    if (key == "format") {
      if (!it->second.IsScalar() || it->second.Scalar() != "ktx-routing-stats") {
        fail(name, it->second, "\"format\" must be \"ktx-routing-stats\"");
      }
    } else if (key == "version") {
      if (!it->second.IsScalar() || it->second.Scalar() != "1") {
        fail(name, it->second, "only version 1 of the routing statistics format is known");
      }
    } else if (key == "layers") {
      const YAML::Node layers = it->second;  // a copy: it-> returns a temporary proxy
      if (!layers.IsMap()) fail(name, layers, "\"layers\" must be an object {\"LAYER\": [counts]}");
      for (auto l = layers.begin(); l != layers.end(); ++l) {
        const std::string layer_text = l->first.Scalar();
        int64_t layer = -1;
        auto [p, ec] =
            std::from_chars(layer_text.data(), layer_text.data() + layer_text.size(), layer);
        if (ec != std::errc() || p != layer_text.data() + layer_text.size() || layer < 0) {
          fail(name, l->first, fmt::format("layer '{}' is not a layer number", layer_text));
        }
        const YAML::Node list = l->second;  // a copy: l-> returns a temporary proxy
        if (!list.IsSequence()) {
          fail(name, list, fmt::format("layer {}: expected a list of counts", layer));
        }
        std::vector<double> counts;
        for (const YAML::Node& c : list) {
          double v = -1;
          if (!c.IsScalar() || !YAML::convert<double>::decode(c, v) || !std::isfinite(v) || v < 0) {
            fail(name, c, fmt::format("layer {}: counts must be non-negative numbers", layer));
          }
          counts.push_back(v);
        }
        if (!stats.counts.emplace(layer, std::move(counts)).second) {
          fail(name, l->first, fmt::format("layer {} is given twice", layer));
        }
      }
    } else if (key != "model" && key != "tokens" && key != "comment") {
      fail(name, it->first,
           fmt::format("unknown key \"{}\"; expected format, version, layers, "
                       "model, tokens, comment",
                       key));
    }
  }
  return stats;
}

RoutingStats load_routing_stats(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    throw Error(ErrorCode::kIo, fmt::format("{}: is a directory, not routing statistics", path));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw Error(ErrorCode::kIo,
                fmt::format("{}: cannot open routing statistics: {}", path, std::strerror(errno)));
  }
  std::ostringstream text;
  text << in.rdbuf();
  return parse_routing_stats(text.str(), path);
}

std::vector<double> RoutingStats::shares(int64_t layer, int64_t n_expert) const {
  std::vector<double> out(static_cast<size_t>(n_expert), 1.0 / static_cast<double>(n_expert));
  auto it = counts.find(layer);
  if (it == counts.end()) return out;
  if (static_cast<int64_t>(it->second.size()) != n_expert) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: layer {} has {} counts, but the model has {} experts", source,
                            layer, it->second.size(), n_expert));
  }
  double total = 0;
  for (double c : it->second) total += c;
  if (total <= 0) return out;
  for (size_t e = 0; e < out.size(); ++e) out[e] = it->second[e] / total;
  return out;
}

}  // namespace ktx::planner
