// Everything on the CPU, each module with "cpu.<kind>".
#include "exec/default_plan.h"

#include <fmt/format.h>

#include "ktx/error.h"

namespace ktx::exec {

Plan default_cpu_plan(const std::vector<model::ModuleDesc>& modules,
                      const registry::OperatorRegistry& registry) {
  Plan plan;
  for (const model::ModuleDesc& m : modules) {
    const registry::OpImpl* impl = registry.default_for(m.kind, registry::Device::cpu());
    if (impl == nullptr) {
      throw Error(ErrorCode::kInternal,
                  fmt::format("no CPU implementation of {} is registered (module {})",
                              model::module_kind_name(m.kind), m.name));
    }
    plan.placements.push_back({m.name,
                               impl->name,
                               registry::Device::cpu(),
                               registry::Device::cpu(),
                               {},
                               "default: no rule file, everything on the CPU"});
  }
  return plan;
}

}  // namespace ktx::exec
