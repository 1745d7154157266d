// A routed-experts module split between devices: the placement's operator (cpu.experts) serves
// most experts, and the experts most used — chosen by the planner from routing statistics, or
// by hand in a rule — run on an accelerator. Written in a placement's options:
//   gpu_experts: "3,17,42"        the experts served on the accelerator
//   gpu_experts_device: "cuda:0"  which one (default cuda:0); any accelerator, e.g. ref:0
// The planner writes these options and the executor carries them out; both read them here.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "exec/plan.h"
#include "registry/device.h"

namespace ktx::exec {

inline constexpr const char* kGpuExpertsOption = "gpu_experts";
inline constexpr const char* kGpuExpertsDeviceOption = "gpu_experts_device";

struct ExpertSplit {
  registry::Device device = registry::Device::cuda(0);
  std::vector<int64_t> ids;  // ascending, each once
};

// nullopt when the placement has no gpu_experts option. Throws ktx::Error (kInvalidArgument)
// naming the module when the list is not expert numbers below n_expert, is empty, or the device
// is not an accelerator.
std::optional<ExpertSplit> expert_split(const Placement& p, int64_t n_expert);

// "3,17,42" (spaces allowed around entries) as expert numbers, in the order given. Throws
// ktx::Error (kInvalidArgument) "<what> entry '<item>' is not an expert number below <n_expert>".
// Also how an accelerator's experts operator reads its option experts.
std::vector<int64_t> parse_expert_list(std::string_view list, int64_t n_expert,
                                       std::string_view what);

// The options without the two above: what the placement's own operator is created with.
registry::OpOptions without_expert_split(const registry::OpOptions& options);

}  // namespace ktx::exec
