// The plan used when the user gives no rule file and no planner budget: every module on the CPU
// with its default implementation ("cpu.<kind>").
#pragma once

#include <vector>

#include "exec/plan.h"
#include "model/module_tree.h"
#include "registry/registry.h"

namespace ktx::exec {

Plan default_cpu_plan(const std::vector<model::ModuleDesc>& modules,
                      const registry::OperatorRegistry& registry);

}  // namespace ktx::exec
