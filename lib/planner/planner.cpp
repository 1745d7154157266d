// Greedy placement by decode time saved per GPU byte, and the time/memory model that both the
// planner and `ktx plan --rules` use to predict a plan's speed.
#include "planner/planner.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <map>
#include <optional>
#include <unordered_map>

#include "exec/expert_split.h"
#include "ktx/error.h"
#include "ops/cpu/repacked.h"

namespace ktx::planner {
namespace {

using model::ModuleKind;
using registry::Device;
using registry::DeviceKind;

std::string seconds_text(double s) {
  if (s >= 1e-3) return fmt::format("{:.2f} ms", s * 1e3);
  return fmt::format("{:.1f} us", s * 1e6);
}

std::string group_name(const ModuleCost& c) {
  switch (c.kind) {
    case ModuleKind::kEmbedding:
      return "embedding";
    case ModuleKind::kRmsNorm:
      return "norms";
    case ModuleKind::kMlaAttention:
      return "attention (MLA)";
    case ModuleKind::kGqaAttention:
      return "attention (GQA)";
    case ModuleKind::kMlp:
      return c.shared_experts ? "shared experts" : "dense MLP";
    case ModuleKind::kMoeGate:
      return "router";
    case ModuleKind::kExperts:
      return "routed experts";
    case ModuleKind::kLmHead:
      return "lm_head";
  }
  return "other";
}

// The routed experts a placement serves on a GPU (options gpu_experts / gpu_experts_device).
std::optional<exec::ExpertSplit> hot_experts(const exec::Placement& p, const ModuleCost& c) {
  if (c.kind != ModuleKind::kExperts) return std::nullopt;
  return exec::expert_split(p, c.n_expert);
}

std::vector<double> expert_shares(const ModuleCost& c, const RoutingStats* routing) {
  if (routing != nullptr) return routing->shares(c.layer, c.n_expert);
  return std::vector<double>(static_cast<size_t>(c.n_expert),
                             1.0 / static_cast<double>(c.n_expert));
}

// Fraction of a routed-experts module's weights one prefill batch of `tokens` touches, when a
// token picks each expert with probability `p`.
double batch_touch(double p, int64_t tokens) {
  return 1.0 - std::pow(1.0 - std::clamp(p, 0.0, 1.0), static_cast<double>(tokens));
}

}  // namespace

double module_seconds(double bytes, double flops, const DeviceSpeed& speed) {
  const double read = speed.bandwidth > 0 ? bytes / speed.bandwidth : 0;
  const double compute = speed.flops > 0 ? flops / speed.flops : 0;
  return std::max(read, compute);
}

PlanReport evaluate_plan(const exec::Plan& plan, const std::vector<ModuleCost>& costs,
                         const PlannerOptions& options) {
  PlanReport report;
  report.plan = plan;
  for (size_t i = 0; i < options.gpu_budgets.size(); ++i) {
    report.devices.push_back(
        {Device::cuda(static_cast<int>(i)), options.gpu_budgets[i], 0, 0, options.gpu_reserve});
  }
  report.devices.push_back({Device::cpu(), options.dram_budget, 0, 0, 0});
  auto usage = [&](const Device& d) -> DeviceUsage& {
    for (DeviceUsage& u : report.devices) {
      if (u.device == d) return u;
    }
    report.problems.push_back(fmt::format("the plan uses {}, but only {} GPU(s) were described",
                                          d.name(), options.gpu_budgets.size()));
    report.devices.insert(report.devices.end() - 1, {d, 0, 0, 0, options.gpu_reserve});
    return report.devices[report.devices.size() - 2];
  };
  auto speed = [&](const Device& d) {
    return d.kind == DeviceKind::kCpu ? options.cpu : options.gpu;
  };

  std::unordered_map<std::string, const exec::Placement*> by_module;
  for (const exec::Placement& p : plan.placements) by_module.emplace(p.module, &p);

  std::map<std::pair<std::string, std::string>, size_t> group_index;
  auto group = [&](const std::string& name, const Device& d,
                   const std::string& why) -> GroupEstimate& {
    auto [it, added] = group_index.emplace(std::pair{name, d.name()}, report.groups.size());
    if (added) report.groups.push_back({name, d, 0, 0, 0, why});
    return report.groups[it->second];
  };

  const int64_t batch = std::max<int64_t>(1, options.prefill_batch);
  double decode = 0, prefill = 0;
  std::map<int64_t, std::map<std::string, double>> branch;  // layer -> device -> seconds
  std::vector<Device> sequence;
  for (const ModuleCost& c : costs) {
    auto found = by_module.find(c.name);
    if (found == by_module.end()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("the plan has no placement for module {}", c.name));
    }
    const exec::Placement& p = *found->second;
    const std::optional<exec::ExpertSplit> hot = hot_experts(p, c);

    struct Part {
      Device device;
      Device prefill_device;
      double share;       // of the module's per-token work
      double hit;         // probability a token uses this part (experts), for prefill touch
      uint64_t resident;  // weight bytes
      std::string group;
    };
    std::vector<Part> parts;
    const std::string gname = group_name(c);
    if (hot) {
      const std::vector<double> shares = expert_shares(c, options.routing);
      double covered = 0;
      for (int64_t id : hot->ids) covered += shares[static_cast<size_t>(id)];
      const uint64_t hot_bytes = c.bytes_per_expert * hot->ids.size();
      const double k = static_cast<double>(c.n_expert_used);
      parts.push_back({hot->device, hot->device, covered,
                       k * covered / std::max<size_t>(1, hot->ids.size()), hot_bytes,
                       gname + " (hot)"});
      const size_t cold = static_cast<size_t>(c.n_expert) - hot->ids.size();
      parts.push_back({p.generate_device, p.prefill_device, 1.0 - covered,
                       k * (1.0 - covered) / std::max<size_t>(1, cold), c.weight_bytes - hot_bytes,
                       gname});
    } else {
      const double hit = c.n_expert > 0 ? static_cast<double>(c.n_expert_used) / c.n_expert : 1.0;
      parts.push_back({p.generate_device, p.prefill_device, 1.0, hit, c.weight_bytes, gname});
    }

    // Option repack on the CPU: the operator keeps a copy of its matrices (all of them, also the
    // experts another device serves); the copies whose file pages stay mapped add to the memory.
    if (p.generate_device.kind == DeviceKind::kCpu && ops::cpu::parse_repack(p.options) == true) {
      parts.back().resident += c.repack_added_bytes;
    }
    for (size_t i = 0; i < parts.size(); ++i) {
      const Part& part = parts[i];
      const bool main = i + 1 == parts.size();
      usage(part.device).weights += part.resident;
      if (part.prefill_device != part.device) usage(part.prefill_device).weights += part.resident;
      const double bytes = c.weight_bytes_read * part.share + (main ? c.kv_bytes_read : 0);
      const double seconds = module_seconds(bytes, c.flops * part.share, speed(part.device));
      if (c.kind == ModuleKind::kExperts || c.shared_experts) {
        branch[c.layer][part.device.name()] += seconds;
      } else {
        decode += seconds;
      }
      GroupEstimate& g = group(part.group, part.device, p.why);
      g.modules += 1;
      g.bytes += part.resident + (main ? c.kv_bytes : 0);
      g.decode_seconds += seconds;

      // Prefill: a batch reads each weight it touches once and does `batch` tokens of FLOPs.
      double touched = static_cast<double>(part.resident);
      if (c.kind == ModuleKind::kExperts) touched *= batch_touch(part.hit, batch);
      if (c.kind == ModuleKind::kEmbedding && c.rows > 0) {
        touched = std::min(touched, c.weight_bytes_read * static_cast<double>(batch));
      }
      prefill += module_seconds(touched, c.prefill_flops * part.share * static_cast<double>(batch),
                                speed(part.prefill_device));
    }
    usage(p.generate_device).kv_cache += c.kv_bytes;
    sequence.push_back(p.generate_device);
  }
  for (const auto& [layer, per_device] : branch) {
    double slowest = 0;  // devices work on a layer's experts at the same time
    for (const auto& [device, seconds] : per_device) slowest = std::max(slowest, seconds);
    decode += slowest;
  }
  size_t switches = 0;
  for (size_t i = 1; i < sequence.size(); ++i) switches += sequence[i] != sequence[i - 1];
  decode += static_cast<double>(switches) * options.switch_seconds;
  prefill += static_cast<double>(switches) * options.switch_seconds;

  report.decode_seconds_per_token = decode;
  report.predicted_decode_tok_s = decode > 0 ? 1.0 / decode : 0;
  report.predicted_prefill_tok_s = prefill > 0 ? static_cast<double>(batch) / prefill : 0;
  for (const DeviceUsage& u : report.devices) {
    if (u.budget > 0 && u.total() > u.budget) {
      report.fits = false;
      report.problems.push_back(
          fmt::format("{} needs {} (weights {}, KV cache {}, reserve {}) but has {}",
                      u.device.name(), format_bytes(u.total()), format_bytes(u.weights),
                      format_bytes(u.kv_cache), format_bytes(u.reserve), format_bytes(u.budget)));
    }
  }
  if (!report.problems.empty()) report.fits = false;
  return report;
}

PlanReport plan_placement(const std::vector<ModuleCost>& costs, const PlannerOptions& options) {
  const size_t n_gpu = options.gpu_budgets.size();
  exec::Plan plan;
  plan.placements.resize(costs.size());
  for (size_t i = 0; i < costs.size(); ++i) {
    exec::Placement& p = plan.placements[i];
    p.module = costs[i].name;
    p.impl = fmt::format("cpu.{}", model::module_kind_name(costs[i].kind));
    p.generate_device = p.prefill_device = Device::cpu();
    p.why = "cpu: no GPU given";
  }
  if (n_gpu == 0) return evaluate_plan(plan, costs, options);

  // Each layer's home GPU: contiguous layer ranges in proportion to the GPUs' budgets, so
  // activations cross between GPUs once per range.
  int64_t n_layer = 0;
  for (const ModuleCost& c : costs) n_layer = std::max(n_layer, c.layer + 1);
  double total_budget = 0;
  for (uint64_t b : options.gpu_budgets) total_budget += static_cast<double>(b);
  auto home = [&](const ModuleCost& c) -> size_t {
    if (c.layer < 0) return c.kind == ModuleKind::kEmbedding ? 0 : n_gpu - 1;
    double cumulative = 0;
    for (size_t g = 0; g < n_gpu; ++g) {
      cumulative += static_cast<double>(options.gpu_budgets[g]);
      const double bound = total_budget > 0 ? n_layer * cumulative / total_budget
                                            : static_cast<double>(n_layer) * (g + 1) / n_gpu;
      if (static_cast<double>(c.layer) + 0.5 < bound) return g;
    }
    return n_gpu - 1;
  };
  std::vector<double> free(n_gpu);
  for (size_t g = 0; g < n_gpu; ++g) {
    free[g] = std::max(0.0, static_cast<double>(options.gpu_budgets[g]) -
                                static_cast<double>(options.gpu_reserve));
  }

  struct Item {
    size_t module;
    int64_t expert;  // -1: the whole module
    double bytes;
    double saved;  // decode seconds per token saved by running it on the GPU
    double score;  // saved per byte
  };
  std::vector<Item> items;
  std::vector<std::vector<double>> shares(costs.size());
  for (size_t i = 0; i < costs.size(); ++i) {
    const ModuleCost& c = costs[i];
    auto saved = [&](double bytes, double flops) {
      return module_seconds(bytes, flops, options.cpu) - module_seconds(bytes, flops, options.gpu);
    };
    if (c.kind == ModuleKind::kExperts) {
      if (!options.experts_to_gpu) continue;
      if (options.routing != nullptr) {
        shares[i] = expert_shares(c, options.routing);
        for (int64_t e = 0; e < c.n_expert; ++e) {
          // Expert e is read when chosen: probability n_expert_used × its share, i.e. a share of
          // n_expert of the module's uniform per-token reading.
          const double f = shares[i][static_cast<size_t>(e)];
          const double bytes = static_cast<double>(c.bytes_per_expert);
          const double s = saved(c.weight_bytes_read * f, c.flops * f);
          items.push_back({i, e, bytes, s, bytes > 0 ? s / bytes : 0});
        }
        continue;
      }
    }
    const double bytes = static_cast<double>(c.weight_bytes + c.kv_bytes);
    const double s = saved(c.bytes_read(), c.flops);
    items.push_back({i, -1, bytes, s, bytes > 0 ? s / bytes : HUGE_VAL});
  }
  std::stable_sort(items.begin(), items.end(),
                   [](const Item& a, const Item& b) { return a.score > b.score; });

  struct Outcome {
    bool placed = false;
    size_t rank = 0;
    double free_when_refused = -1;
    std::vector<int64_t> hot;  // experts placed one by one
  };
  std::vector<Outcome> outcome(costs.size());
  for (size_t r = 0; r < items.size(); ++r) {
    const Item& item = items[r];
    const size_t g = home(costs[item.module]);
    Outcome& o = outcome[item.module];
    if (item.expert < 0) o.rank = r + 1;
    if (item.saved <= 0) continue;
    if (item.bytes <= free[g]) {
      free[g] -= item.bytes;
      if (item.expert < 0) {
        o.placed = true;
      } else {
        o.hot.push_back(item.expert);
      }
    } else if (o.free_when_refused < 0) {
      o.free_when_refused = free[g];
    }
  }

  const size_t n_items = items.size();
  for (size_t i = 0; i < costs.size(); ++i) {
    const ModuleCost& c = costs[i];
    const Outcome& o = outcome[i];
    exec::Placement& p = plan.placements[i];
    const Device gpu = Device::cuda(static_cast<int>(home(c)));
    const uint64_t resident = c.weight_bytes + c.kv_bytes;
    const double share_read =
        c.weight_bytes > 0 ? c.weight_bytes_read / static_cast<double>(c.weight_bytes) : 0;
    const std::string reads = share_read < 0.999
                                  ? fmt::format("reads {:.2g}% of its {} a token", 100 * share_read,
                                                format_bytes(static_cast<double>(c.weight_bytes)))
                                  : fmt::format("reads all of its {} a token",
                                                format_bytes(static_cast<double>(resident)));
    const bool all_hot = c.kind == ModuleKind::kExperts && c.n_expert > 0 &&
                         static_cast<int64_t>(o.hot.size()) == c.n_expert;
    if (o.placed || all_hot) {
      p.impl = fmt::format("cuda.{}", model::module_kind_name(c.kind));
      p.generate_device = p.prefill_device = gpu;
      const double saved = module_seconds(c.bytes_read(), c.flops, options.cpu) -
                           module_seconds(c.bytes_read(), c.flops, options.gpu);
      p.why = o.rank > 0 ? fmt::format(
                               "{}: #{} of {} by decode time saved per GPU byte; {}, "
                               "saves {} a token",
                               gpu.name(), o.rank, n_items, reads, seconds_text(saved))
                         : fmt::format("{}: all its experts fit in spare GPU memory", gpu.name());
      continue;
    }
    if (c.kind == ModuleKind::kExperts && !o.hot.empty()) {
      std::vector<int64_t> hot = o.hot;
      std::sort(hot.begin(), hot.end());
      std::string ids;
      double covered = 0;
      for (int64_t e : hot) {
        ids += fmt::format("{}{}", ids.empty() ? "" : ",", e);
        covered += shares[i][static_cast<size_t>(e)];
      }
      p.options[exec::kGpuExpertsOption] = ids;
      p.options[exec::kGpuExpertsDeviceOption] = gpu.name();
      p.why = fmt::format(
          "cpu, with its {} busiest experts ({:.1f}% of its routing) in spare "
          "memory on {}",
          hot.size(), 100 * covered, gpu.name());
      continue;
    }
    if (c.kind == ModuleKind::kExperts && !options.experts_to_gpu) {
      p.why =
          fmt::format("cpu: routed experts stay on the CPU (experts to GPU disabled); {}", reads);
    } else if (o.rank > 0 && o.free_when_refused >= 0) {
      p.why = fmt::format(
          "cpu: {} had {} left, needs {}; #{} of {} by decode time saved per GPU "
          "byte, {}",
          gpu.name(), format_bytes(o.free_when_refused),
          format_bytes(static_cast<double>(resident)), o.rank, n_items, reads);
    } else if (c.kind == ModuleKind::kExperts && o.free_when_refused >= 0) {
      p.why = fmt::format("cpu: {} had {} left, not enough for one more expert ({}); {}",
                          gpu.name(), format_bytes(o.free_when_refused),
                          format_bytes(static_cast<double>(c.bytes_per_expert)), reads);
    } else {
      p.why = fmt::format("cpu: no faster on the GPU; {}", reads);
    }
  }
  return evaluate_plan(plan, costs, options);
}

}  // namespace ktx::planner
