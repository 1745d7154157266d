// The operator registry: named implementations of each module kind ("cpu.mla", "ref.experts",
// later "cuda.mla", "cuda.linear.marlin"), each saying which devices and weight types it can
// serve and how to create an operator for one module. Backends add their implementations here
// (the CPU backend at start-up, others when their module is loaded); the plan picks one per
// module by name.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "model/config.h"
#include "model/module_tree.h"
#include "ops/operator.h"
#include "registry/device.h"

namespace ktx::registry {

// Implementation options from a rule's `kwargs` (strings; each implementation parses its own
// and refuses unknown keys).
using OpOptions = std::map<std::string, std::string>;

struct OpCreateArgs {
  const model::ModuleDesc& module;
  const model::ModelConfig& config;
  Device device;
  const OpOptions& options;
};

struct OpImpl {
  std::string name;  // "cpu.mla": backend name, a dot, the implementation
  model::ModuleKind kind;
  // The devices it runs on: kCpu, the host (any backend may offer host operators); kAccelerator,
  // the devices of the backend that registered it (the name's prefix: cuda.mla on cuda:N).
  DeviceKind device_kind;
  std::string description;  // one line for `ktx plan` and docs
  // nullopt when it can run this module on this device with these options; otherwise why not
  // ("blk.3.attn_kv_b.weight is IQ2_XXS, which cpu.mla cannot read").
  std::function<std::optional<std::string>(const OpCreateArgs&)> check;
  std::function<std::unique_ptr<ops::Operator>(const OpCreateArgs&)> create;
};

// "cpu" for host operators, else the backend prefix of the name ("cuda" for cuda.mla).
std::string device_family(const OpImpl& impl);
// The family of devices a device belongs to: "cpu", or its backend ("cuda" for cuda:1).
std::string device_family(const Device& device);
// Whether `impl` can be placed on `device` at all (its type checks come later, in check()).
bool runs_on(const OpImpl& impl, const Device& device);

class OperatorRegistry {
 public:
  // Throws ktx::Error (kInvalidArgument) on a duplicate name or an implementation without create.
  void add(OpImpl impl);
  const OpImpl* find(std::string_view name) const;  // nullptr when unknown
  std::vector<const OpImpl*> all() const;           // sorted by name
  std::vector<const OpImpl*> for_kind(model::ModuleKind kind) const;

  // The implementation used when no rule names one: "<family>.<kind name>" where the family is
  // "cpu" for the host and the owning backend's name for an accelerator ("cuda.mla_attention").
  const OpImpl* default_for(model::ModuleKind kind, const Device& device) const;

 private:
  std::map<std::string, OpImpl, std::less<>> impls_;
};

}  // namespace ktx::registry
