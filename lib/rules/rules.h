// Rule files: an ordered list of `match` → `replace` rules that choose, for each module of the
// model, the operator implementation and the devices it runs on — the format of KTransformers'
// optimize_rules/*.yaml, with ktx's operator and kind names (KTransformers' class names are
// accepted where ktx has a counterpart). docs/RULES.md is the reference.
//
//   - match: {name: 'model\.layers\.\d+\.mlp\.experts', kind: experts}
//     replace: {op: cpu.experts, device: cpu, kwargs: {threads: '32'}}
//
// Parsing checks what the file alone can tell (YAML types, keys, regexes, device spelling);
// apply_rules checks the rest against a model, an operator registry and the devices present.
// Every error is a ktx::Error(kInvalidFile) whose message starts with "FILE:LINE: ".
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "exec/plan.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "registry/device.h"
#include "registry/registry.h"
#include "rules/name_regex.h"

namespace ktx::rules {

// How a KTransformers class name (`match.class`, `replace.class`) translates; see
// ktransformers_classes.cpp for the table.
struct ClassMapping {
  enum class Action {
    kKinds,    // match.class: the module kinds it stands for (`kinds`)
    kOp,       // replace.class: "<backend>.<kind>" for `kinds[0]`; kinds empty = the module's own
    kIgnored,  // no ktx counterpart: the rule is skipped with a warning saying why (`note`)
  };
  Action action = Action::kKinds;
  std::vector<model::ModuleKind> kinds;
  std::string note;
};

// nullopt for a class ktx does not know. Looked up by the last dotted component, so
// "ktransformers.models.modeling_deepseek_v3.MoEGate" and "...modeling_deepseek.MoEGate" agree.
std::optional<ClassMapping> match_class_mapping(std::string_view cls);
std::optional<ClassMapping> replace_class_mapping(std::string_view cls);

struct Rule {
  std::string file;  // for messages
  int line = 0;      // 1-based line of the rule's first key

  // --- match (a module must pass every test given) ---
  std::optional<NameRegex> name;  // whole-name match; prefix match for KTransformers rules
  int name_line = 0;
  std::vector<model::ModuleKind> kinds;  // `kind:`; empty: any kind
  std::string match_class;               // KTransformers' match.class as written, or empty
  std::optional<std::vector<model::ModuleKind>> class_kinds;  // the kinds match.class stands for

  // --- replace ---
  std::string op;  // "cpu.experts"; empty: the default "<backend>.<kind>" for each module
  int op_line = 0;
  std::string replace_class;                    // KTransformers' replace.class as written, or empty
  std::optional<model::ModuleKind> class_kind;  // the kind replace.class implies, if it does
  std::optional<registry::Device> device, generate_device, prefill_device;
  int device_line = 0, generate_device_line = 0, prefill_device_line = 0;
  registry::OpOptions kwargs;
  bool recursive = true;  // accepted for KTransformers files; ktx modules never nest

  // A KTransformers rule (it uses `class`, or `kwargs.generate_device`): its name pattern
  // matches anywhere in the name, as KTransformers' re.search does, and a prefill device its
  // operator cannot use
  // falls back to the generate device with a warning instead of an error.
  bool ktransformers = false;
  // Set for rules that can never apply in ktx (KTransformers' RoPE, MoE-wrapper and model
  // classes); `ignored_why` says why.
  bool ignored = false;
  std::string ignored_why;

  std::string where() const;  // "FILE:LINE"
  bool matches(const model::ModuleDesc& module) const;
};

struct RuleSet {
  std::string source;  // file name or the name given to parse_rules
  std::vector<Rule> rules;
  std::vector<std::string> warnings;  // "FILE:LINE: ..." found while parsing
};

// Parses rule-file text; `name` is used in messages. Throws ktx::Error(kInvalidFile).
RuleSet parse_rules(const std::string& text, const std::string& name);
// Reads and parses a file. Throws kIo when it cannot be read.
RuleSet load_rules(const std::string& path);

// Chooses every module's placement. The first rule that matches a module decides it; modules no
// rule matches take the placement in `fallback` when given (e.g. the planner's), else the
// registry's "cpu.<kind>" on the CPU. Checks, each an error naming the rule's FILE:LINE: the
// operator exists (a cuda.* name with no CUDA operators registered says the CUDA backend is not
// loaded), serves the module's kind and the devices' kind, the devices are in `available`, and
// the operator's check() accepts the module on each device. Warnings (rules that match no module
// or are shadowed by earlier ones, KTransformers constructs ktx ignores) are appended to
// `warnings` when it is not null.
exec::Plan apply_rules(const RuleSet& rules, const std::vector<model::ModuleDesc>& modules,
                       const model::ModelConfig& config, const registry::OperatorRegistry& registry,
                       const std::vector<registry::Device>& available,
                       std::vector<std::string>* warnings, const exec::Plan* fallback = nullptr);

// A rule file that reproduces `plan` (one rule per group of modules with the same placement,
// layers listed in the pattern), for `ktx plan --rules-out`. parse_rules + apply_rules on the
// same modules give the same impls, devices and options back.
std::string plan_to_rules_yaml(const exec::Plan& plan, const std::string& header_comment = "");

}  // namespace ktx::rules
