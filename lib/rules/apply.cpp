// Rules + modules + registry + devices -> Plan: the first matching rule places each module, and
// everything the file alone could not check is checked here, against this model and machine.
#include <fmt/format.h>

#include <algorithm>
#include <tuple>

#include "exec/expert_split.h"
#include "ktx/error.h"
#include "rules/rules.h"
#include "rules/suggest.h"

namespace ktx::rules {
namespace {

using detail::did_you_mean;
using detail::join;
using registry::Device;
using registry::device_family;
using registry::DeviceKind;
using registry::OperatorRegistry;
using registry::OpImpl;

[[noreturn]] void fail(const std::string& where, const std::string& what) {
  throw Error(ErrorCode::kInvalidFile, fmt::format("{}: {}", where, what));
}

bool backend_loaded(const OperatorRegistry& registry, std::string_view backend) {
  for (const OpImpl* impl : registry.all()) {
    if (impl->name.size() > backend.size() && impl->name.starts_with(backend) &&
        impl->name[backend.size()] == '.') {
      return true;
    }
  }
  return false;
}

// Why `name` is not in the registry, in the words a user can act on.
std::string missing_op(const OperatorRegistry& registry, const std::string& name) {
  const std::string backend = name.substr(0, name.find('.'));
  if (backend == "cuda" && !backend_loaded(registry, "cuda")) {
    return fmt::format("operator {} is not registered: the CUDA backend is not loaded", name);
  }
  if (backend != "cpu" && backend != name && !backend_loaded(registry, backend)) {
    return fmt::format(
        "operator {} is not registered: no backend named '{}' is loaded (give its module, "
        "libktx-backend-{}.so, with --backend PATH or KTX_BACKEND_PATH)",
        name, backend, backend);
  }
  std::vector<std::string> names;
  for (const OpImpl* impl : registry.all()) names.push_back(impl->name);
  return fmt::format("unknown operator '{}'{}; registered operators: {}", name,
                     did_you_mean(name, names), names.empty() ? "(none)" : join(names));
}

std::string device_list(const std::vector<Device>& devices) {
  std::vector<std::string> names;
  for (const Device& d : devices) names.push_back(d.name());
  return names.empty() ? "none" : join(names);
}

std::string describe_match(const Rule& rule) {
  std::vector<std::string> parts;
  if (rule.name) {
    parts.push_back(
        fmt::format("name '{}'{}", rule.name->pattern(),
                    rule.ktransformers ? " (anywhere in the name, as KTransformers)" : ""));
  }
  if (!rule.kinds.empty()) {
    std::vector<std::string> k;
    for (model::ModuleKind kind : rule.kinds) k.emplace_back(model::module_kind_name(kind));
    parts.push_back("kind " + join(k, "|"));
  }
  if (!rule.match_class.empty()) parts.push_back("class " + rule.match_class);
  return fmt::format("{} matched {}", rule.where(), join(parts, " and "));
}

// What the rule decided independently of the module: its devices and, when named or implied by
// a KTransformers class, its operator.
struct RuleTarget {
  Device generate, prefill;
  int generate_line = 0, prefill_line = 0;
  const OpImpl* op = nullptr;  // explicit `op:`, else null (chosen per module)
  bool prefill_fallback_warned = false;
  size_t matched = 0, won = 0;
  const Rule* shadowed_by = nullptr;
};

std::string at(const Rule& rule, int line) {
  return fmt::format("{}:{}", rule.file, line > 0 ? line : rule.line);
}

RuleTarget resolve_rule(const Rule& rule, const OperatorRegistry& registry,
                        const std::vector<Device>& available) {
  RuleTarget t;
  // 1. The named operator must exist (before devices: on a machine without CUDA, "the CUDA
  //    backend is not loaded" is the actionable message, not "cuda:0 does not exist").
  Device fallback_device = Device::cpu();
  if (!rule.op.empty()) {
    t.op = registry.find(rule.op);
    if (t.op == nullptr) fail(at(rule, rule.op_line), missing_op(registry, rule.op));
    if (t.op->device_kind == DeviceKind::kAccelerator) {
      fallback_device = Device::accelerator(device_family(*t.op), 0);
    }
  } else if (rule.ktransformers) {
    fallback_device = Device::cuda(0);  // KTransformers' default device
  }
  const int device_line = rule.device_line;
  t.generate = rule.generate_device.value_or(rule.device.value_or(fallback_device));
  t.generate_line = rule.generate_device ? rule.generate_device_line : device_line;
  t.prefill = rule.prefill_device.value_or(rule.device.value_or(t.generate));
  t.prefill_line = rule.prefill_device ? rule.prefill_device_line
                   : rule.device       ? device_line
                                       : t.generate_line;
  if (rule.op.empty() && rule.class_kind) {
    const std::string implied =
        fmt::format("{}.{}", device_family(t.generate), model::module_kind_name(*rule.class_kind));
    if (registry.find(implied) == nullptr) {
      fail(at(rule, rule.op_line), fmt::format("{} (for KTransformers' {})",
                                               missing_op(registry, implied), rule.replace_class));
    }
  }
  // 2. The devices must exist here.
  for (const auto& [device, line, what] :
       {std::tuple{t.generate, t.generate_line, "generate_device"},
        std::tuple{t.prefill, t.prefill_line, "prefill_device"}}) {
    if (std::find(available.begin(), available.end(), device) == available.end()) {
      fail(at(rule, line), fmt::format("{} {} does not exist here (available: {})", what,
                                       device.name(), device_list(available)));
    }
  }
  return t;
}

void check_device_kind(const Rule& rule, RuleTarget& t, const OpImpl& op,
                       std::vector<std::string>* warnings) {
  if (!registry::runs_on(op, t.generate)) {
    fail(at(rule, t.generate_line),
         fmt::format("operator {} runs on {} devices, but generate_device is {}", op.name,
                     device_family(op), t.generate.name()));
  }
  if (!registry::runs_on(op, t.prefill)) {
    if (!rule.ktransformers) {
      fail(at(rule, t.prefill_line),
           fmt::format("operator {} runs on {} devices, but prefill_device is {} (one operator "
                       "serves both phases; give both the same kind of device)",
                       op.name, device_family(op), t.prefill.name()));
    }
    if (!t.prefill_fallback_warned && warnings != nullptr) {
      warnings->push_back(fmt::format(
          "{}: prefill_device {} ignored: {} runs on {}, so prefill runs on {} too (KTransformers "
          "used a second operator for prefill)",
          at(rule, t.prefill_line), t.prefill.name(), op.name, device_family(op),
          t.generate.name()));
    }
    t.prefill_fallback_warned = true;
    t.prefill = t.generate;
  }
}

void run_checks(const std::string& where, const OpImpl& op, const model::ModuleDesc& module,
                const model::ModelConfig& config, const exec::Placement& p, bool from_file) {
  if (!op.check) return;
  std::vector<Device> devices{p.generate_device};
  if (p.prefill_device != p.generate_device) devices.push_back(p.prefill_device);
  for (const Device& d : devices) {
    // A split experts module's gpu_experts options are the executor's, not the operator's.
    const registry::OpOptions options = module.kind == model::ModuleKind::kExperts
                                            ? exec::without_expert_split(p.options)
                                            : p.options;
    registry::OpCreateArgs args{module, config, d, options};
    if (std::optional<std::string> why = op.check(args)) {
      const std::string msg =
          fmt::format("operator {} cannot run {} on {}: {}", op.name, module.name, d.name(), *why);
      if (from_file) fail(where, msg);
      throw Error(ErrorCode::kUnsupported, fmt::format("{}: {}", where, msg));
    }
  }
}

}  // namespace

exec::Plan apply_rules(const RuleSet& rules, const std::vector<model::ModuleDesc>& modules,
                       const model::ModelConfig& config, const OperatorRegistry& registry,
                       const std::vector<Device>& available, std::vector<std::string>* warnings,
                       const exec::Plan* fallback) {
  if (warnings != nullptr) {
    warnings->insert(warnings->end(), rules.warnings.begin(), rules.warnings.end());
  }
  std::vector<RuleTarget> targets(rules.rules.size());
  for (size_t i = 0; i < rules.rules.size(); ++i) {
    const Rule& rule = rules.rules[i];
    if (rule.ignored) continue;
    targets[i] = resolve_rule(rule, registry, available);
    if (targets[i].op != nullptr) check_device_kind(rule, targets[i], *targets[i].op, warnings);
  }

  exec::Plan plan;
  plan.placements.reserve(modules.size());
  for (const model::ModuleDesc& module : modules) {
    const Rule* rule = nullptr;
    RuleTarget* target = nullptr;
    for (size_t i = 0; i < rules.rules.size(); ++i) {
      if (!rules.rules[i].matches(module)) continue;
      ++targets[i].matched;
      if (rule == nullptr) {
        rule = &rules.rules[i];
        target = &targets[i];
        ++target->won;
      } else if (targets[i].shadowed_by == nullptr) {
        targets[i].shadowed_by = rule;
      }
    }
    const std::string_view kind_name = model::module_kind_name(module.kind);
    exec::Placement p;
    p.module = module.name;

    if (rule == nullptr) {
      const exec::Placement* planned = fallback != nullptr ? fallback->find(module.name) : nullptr;
      const std::string source = rules.source.empty() ? std::string("rules") : rules.source;
      if (planned != nullptr) {
        p = *planned;
        p.why = "no rule matched; planner: " + planned->why;
      } else {
        p.impl = fmt::format("cpu.{}", kind_name);
        p.generate_device = p.prefill_device = Device::cpu();
        p.why = fmt::format("no rule matched: the default {} on cpu", p.impl);
      }
      const OpImpl* op = registry.find(p.impl);
      if (op == nullptr) {
        throw Error(ErrorCode::kUnsupported,
                    fmt::format("{}: no rule matches {} and {}", source, module.name,
                                missing_op(registry, p.impl)));
      }
      if (op->kind != module.kind) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: {} is a {} module, but the plan gives it {}", source,
                                module.name, kind_name, op->name));
      }
      run_checks(source, *op, module, config, p, false);
      plan.placements.push_back(std::move(p));
      continue;
    }

    // The operator: named by the rule, implied by its KTransformers class, or the default of
    // this module's kind on the generate device.
    const OpImpl* op = target->op;
    const int op_line = rule->op_line > 0 ? rule->op_line : rule->line;
    if (op == nullptr) {
      const model::ModuleKind kind = rule->class_kind.value_or(module.kind);
      const std::string name =
          fmt::format("{}.{}", device_family(target->generate), model::module_kind_name(kind));
      op = registry.find(name);
      if (op == nullptr) {
        fail(at(*rule, op_line),
             fmt::format("no operator for {} ({}) on {}: {}", module.name, kind_name,
                         target->generate.name(), missing_op(registry, name)));
      }
      check_device_kind(*rule, *target, *op, warnings);
    }
    if (op->kind != module.kind) {
      const std::string via =
          rule->replace_class.empty()
              ? std::string()
              : fmt::format(" (what KTransformers' {} becomes)", rule->replace_class);
      fail(at(*rule, op_line),
           fmt::format("operator {}{} runs {} modules, but this rule also matches {} ({}); narrow "
                       "the match with kind: or name:",
                       op->name, via, model::module_kind_name(op->kind), module.name, kind_name));
    }
    p.impl = op->name;
    p.generate_device = target->generate;
    p.prefill_device = target->prefill;
    p.options = rule->kwargs;
    p.why = describe_match(*rule);
    run_checks(at(*rule, op_line), *op, module, config, p, true);
    plan.placements.push_back(std::move(p));
  }

  if (warnings != nullptr) {
    for (size_t i = 0; i < rules.rules.size(); ++i) {
      const Rule& rule = rules.rules[i];
      if (rule.ignored) continue;
      if (targets[i].matched == 0) {
        std::string hint;
        if (rule.name && !rule.ktransformers) {
          for (const model::ModuleDesc& m : modules) {
            if (rule.name->prefix_match(m.name) &&
                (rule.kinds.empty() ||
                 std::find(rule.kinds.begin(), rule.kinds.end(), m.kind) != rule.kinds.end())) {
              hint = fmt::format(
                  " (its pattern matches the start of {}: ktx matches whole names, "
                  "KTransformers matched prefixes; end the pattern with .* to "
                  "match prefixes)",
                  m.name);
              break;
            }
          }
        }
        warnings->push_back(fmt::format("{}: rule matches no module{}", rule.where(), hint));
      } else if (targets[i].won == 0) {
        warnings->push_back(fmt::format(
            "{}: rule never applies: earlier rules take every module it matches ({} first)",
            rule.where(), targets[i].shadowed_by->where()));
      }
    }
  }
  return plan;
}

}  // namespace ktx::rules
