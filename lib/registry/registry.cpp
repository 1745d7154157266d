// The operator registry: a name -> implementation table with the lookups the planner, the rule
// files and the executor need.
#include "registry/registry.h"

#include <fmt/format.h>

#include "ktx/error.h"

namespace ktx::registry {

void OperatorRegistry::add(OpImpl impl) {
  if (impl.name.empty() || !impl.create) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("operator implementation '{}' needs a name and a create function", impl.name));
  }
  if (impls_.count(impl.name) != 0) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("operator implementation '{}' is registered twice", impl.name));
  }
  std::string name = impl.name;
  impls_.emplace(std::move(name), std::move(impl));
}

const OpImpl* OperatorRegistry::find(std::string_view name) const {
  auto it = impls_.find(name);
  return it == impls_.end() ? nullptr : &it->second;
}

std::vector<const OpImpl*> OperatorRegistry::all() const {
  std::vector<const OpImpl*> out;
  for (const auto& [name, impl] : impls_) out.push_back(&impl);
  return out;
}

std::vector<const OpImpl*> OperatorRegistry::for_kind(model::ModuleKind kind) const {
  std::vector<const OpImpl*> out;
  for (const auto& [name, impl] : impls_) {
    if (impl.kind == kind) out.push_back(&impl);
  }
  return out;
}

const OpImpl* OperatorRegistry::default_for(model::ModuleKind kind, const Device& device) const {
  return find(fmt::format("{}.{}", device_family(device), model::module_kind_name(kind)));
}

std::string device_family(const OpImpl& impl) {
  if (impl.device_kind == DeviceKind::kCpu) return "cpu";
  return impl.name.substr(0, impl.name.find('.'));
}

std::string device_family(const Device& device) {
  return device.kind == DeviceKind::kCpu ? std::string("cpu") : device.backend;
}

bool runs_on(const OpImpl& impl, const Device& device) {
  return device_family(impl) == device_family(device);
}

}  // namespace ktx::registry
