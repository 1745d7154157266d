// A plan: for every module of the model, the operator implementation that runs it and on which
// device, for generation (decode) and for prefill, with the reason — the rule line that chose it,
// or the planner's argument. Rule files (lib/rules) and the placement planner (lib/planner) both
// produce plans; the executor runs them.
#pragma once

#include <string>
#include <vector>

#include "registry/device.h"
#include "registry/registry.h"

namespace ktx::exec {

struct Placement {
  std::string module;                // "model.layers.3.mlp.experts"
  std::string impl;                  // "cpu.experts"
  registry::Device generate_device;  // decode steps
  registry::Device prefill_device;   // batches of more than one token
  registry::OpOptions options;
  std::string why;                   // "rules.yaml:12 matched name ^model\\.layers\\..*\\.mlp\\.experts$"
};

struct Plan {
  std::vector<Placement> placements;  // one per module, in module-tree order

  const Placement* find(std::string_view module) const;
};

}  // namespace ktx::exec
