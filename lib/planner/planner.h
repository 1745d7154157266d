// The placement planner: KTransformers' arithmetic-intensity argument made into arithmetic.
// Every module is a candidate for GPU memory; candidates are taken in order of decode time saved
// per byte of GPU memory they occupy, while they fit. Attention (compute-heavy over its small
// latent cache), dense layers, shared experts, norms and lm_head read all their bytes every token
// and come first; routed experts read n_expert_used / n_expert of theirs and come last (they get
// what is left, whole layers — or, given routing statistics, the busiest single experts); the
// embedding reads one row a token and stays on the CPU unless memory is plentiful.
// docs/RULES.md ("The planner") states the time model and its constants.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "exec/plan.h"
#include "planner/costs.h"
#include "planner/hardware.h"
#include "planner/routing_stats.h"
#include "registry/device.h"

namespace ktx::planner {

struct PlannerOptions {
  std::vector<uint64_t> gpu_budgets;  // bytes usable on cuda:0, cuda:1 …; empty: CPU only
  uint64_t dram_budget = 0;           // bytes of host memory for weights and caches; 0: no limit
  DeviceSpeed gpu{1008e9 * kGpuBandwidthEfficiency, 165e12 * kGpuFlopsEfficiency};  // rtx4090
  DeviceSpeed cpu{100e9, 1e12};
  uint64_t gpu_reserve = uint64_t{512} << 20;  // per GPU: CUDA context, activations, workspace
  int64_t prefill_batch = 512;                 // tokens per prefill step
  double switch_seconds = 20e-6;  // one GPU <-> CPU hand-over: launch, sync, a hidden-state copy
  bool experts_to_gpu = true;     // spend GPU memory left over on routed experts
  const RoutingStats* routing = nullptr;  // busiest experts first; null: whole layers, in order
};

struct DeviceUsage {
  registry::Device device;
  uint64_t budget = 0;  // 0: unknown / unlimited
  uint64_t weights = 0;
  uint64_t kv_cache = 0;
  uint64_t reserve = 0;
  uint64_t total() const { return weights + kv_cache + reserve; }
};

// Modules of one kind-of-work on one device, for the printout.
struct GroupEstimate {
  std::string name;  // "attention (MLA)", "routed experts", "shared experts" …
  registry::Device device;
  size_t modules = 0;
  uint64_t bytes = 0;         // resident: weights + KV cache
  double decode_seconds = 0;  // per token, summed over the group's modules
  std::string why;            // the first module's reason
};

struct PlanReport {
  exec::Plan plan;
  std::vector<DeviceUsage> devices;   // cuda:0 … then cpu
  std::vector<GroupEstimate> groups;  // in order of first module
  double decode_seconds_per_token = 0;
  double predicted_decode_tok_s = 0;
  double predicted_prefill_tok_s = 0;
  bool fits = true;
  std::vector<std::string> problems;  // why it does not fit
};

// Places every module. Placements name "cuda.<kind>" / "cpu.<kind>" implementations; a routed-
// experts module split between devices stays cpu.experts with options gpu_experts ("3,17,42")
// and gpu_experts_device ("cuda:0") for an implementation that serves hot experts on the GPU.
PlanReport plan_placement(const std::vector<ModuleCost>& costs, const PlannerOptions& options);

// Memory and predicted speed of a given plan (from rules, say), with the planner's time model.
// Throws ktx::Error(kInvalidArgument) when the plan lacks a module of `costs`.
PlanReport evaluate_plan(const exec::Plan& plan, const std::vector<ModuleCost>& costs,
                         const PlannerOptions& options);

// Decode time of one module on a device with this speed: the slower of reading and computing.
double module_seconds(double bytes, double flops, const DeviceSpeed& speed);

}  // namespace ktx::planner
