// How often each routed expert is chosen, per layer, so the planner can put the busiest experts in
// spare GPU memory. A JSON file (parsed with yaml-cpp, JSON being YAML):
//
//   {"format": "ktx-routing-stats", "version": 1,
//    "layers": {"1": [1204, 88, ...one count per expert...], "2": [...]}}
//
// Counts are how many tokens chose the expert (any non-negative numbers: only their ratios
// matter). Layers left out are taken as uniform.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace ktx::planner {

struct RoutingStats {
  std::string source;
  std::map<int64_t, std::vector<double>> counts;  // layer -> count per expert

  // Each expert's share of the layer's routing choices (sums to 1): the counts normalised, or
  // 1/n_expert each when the layer has none. Throws ktx::Error(kInvalidFile) when the layer's
  // list does not have n_expert entries.
  std::vector<double> shares(int64_t layer, int64_t n_expert) const;
};

// Throws ktx::Error(kInvalidFile) naming the file and line of a malformed entry.
RoutingStats parse_routing_stats(const std::string& text, const std::string& name);
RoutingStats load_routing_stats(const std::string& path);

}  // namespace ktx::planner
