// Reading the gpu_experts options (see expert_split.h).
#include "exec/expert_split.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <string_view>

#include "ktx/error.h"

namespace ktx::exec {

std::optional<ExpertSplit> expert_split(const Placement& p, int64_t n_expert) {
  auto it = p.options.find(kGpuExpertsOption);
  if (it == p.options.end()) return std::nullopt;
  ExpertSplit split;
  if (auto d = p.options.find(kGpuExpertsDeviceOption); d != p.options.end()) {
    std::optional<registry::Device> parsed = registry::parse_device(d->second);
    if (!parsed || parsed->is_cpu()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{}: {} '{}' is not an accelerator (cuda:N, …)", p.module,
                              kGpuExpertsDeviceOption, d->second));
    }
    split.device = *parsed;
  }
  split.ids =
      parse_expert_list(it->second, n_expert, fmt::format("{}: {}", p.module, kGpuExpertsOption));
  std::sort(split.ids.begin(), split.ids.end());
  split.ids.erase(std::unique(split.ids.begin(), split.ids.end()), split.ids.end());
  if (split.ids.empty()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: {} names no experts", p.module, kGpuExpertsOption));
  }
  return split;
}

std::vector<int64_t> parse_expert_list(std::string_view list, int64_t n_expert,
                                       std::string_view what) {
  std::vector<int64_t> ids;
  while (!list.empty()) {
    const size_t comma = list.find(',');
    std::string_view item = list.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    int64_t id = -1;
    auto [end, ec] = std::from_chars(item.data(), item.data() + item.size(), id);
    if (ec != std::errc() || end != item.data() + item.size() || id < 0 || id >= n_expert) {
      throw Error(
          ErrorCode::kInvalidArgument,
          fmt::format("{} entry '{}' is not an expert number below {}", what, item, n_expert));
    }
    ids.push_back(id);
    list = comma == std::string_view::npos ? std::string_view() : list.substr(comma + 1);
  }
  return ids;
}

registry::OpOptions without_expert_split(const registry::OpOptions& options) {
  registry::OpOptions out = options;
  out.erase(kGpuExpertsOption);
  out.erase(kGpuExpertsDeviceOption);
  return out;
}

}  // namespace ktx::exec
