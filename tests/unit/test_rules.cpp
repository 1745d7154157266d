// Rule files: parsing (every error with its FILE:LINE and message), matching (first match wins,
// kind and whole-name patterns, defaults), KTransformers' vocabulary, the checks against registry
// and devices, plan -> rules -> plan round trips, and the shipped rules/*.yaml on DeepSeek-V2-,
// V3- and V2-Lite-shaped module lists. Operators are fakes registered here.
#include <fmt/format.h>

#include <catch2/catch.hpp>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "planner/arch_preset.h"
#include "rules/rules.h"

#ifndef KTX_SOURCE_DIR
#define KTX_SOURCE_DIR "."
#endif

namespace {

using ktx::Error;
using ktx::ErrorCode;
using ktx::model::ModuleKind;
using ktx::registry::Device;
using ktx::registry::DeviceKind;
using ktx::registry::OperatorRegistry;
using ktx::registry::OpImpl;
using ktx::rules::apply_rules;
using ktx::rules::parse_rules;

constexpr ModuleKind kKinds[] = {ModuleKind::kEmbedding,    ModuleKind::kRmsNorm,
                                 ModuleKind::kMlaAttention, ModuleKind::kGqaAttention,
                                 ModuleKind::kMlp,          ModuleKind::kMoeGate,
                                 ModuleKind::kExperts,      ModuleKind::kLmHead};

// A fake implementation: refuses IQ2_XXS weights and options other than `threads`.
OpImpl fake_op(const std::string& name, ModuleKind kind, DeviceKind device) {
  OpImpl impl;
  impl.name = name;
  impl.kind = kind;
  impl.device_kind = device;
  impl.description = "test fake";
  impl.check = [name](const ktx::registry::OpCreateArgs& a) -> std::optional<std::string> {
    for (const auto& [role, t] : a.module.weights) {
      if (t->type == ktx::TensorType::IQ2_XXS) {
        return fmt::format("{} is IQ2_XXS, which {} cannot read", t->name, name);
      }
    }
    // "repack": an option of the real CPU operators that a shipped file sets.
    for (const auto& [key, value] : a.options) {
      if (key != "threads" && key != "repack") return fmt::format("unknown option '{}'", key);
    }
    return std::nullopt;
  };
  impl.create = [](const ktx::registry::OpCreateArgs&) -> std::unique_ptr<ktx::ops::Operator> {
    return nullptr;
  };
  return impl;
}

OperatorRegistry make_registry(bool with_cuda) {
  OperatorRegistry r;
  for (ModuleKind k : kKinds) {
    r.add(fake_op(fmt::format("cpu.{}", ktx::model::module_kind_name(k)), k, DeviceKind::kCpu));
    if (with_cuda) {
      r.add(fake_op(fmt::format("cuda.{}", ktx::model::module_kind_name(k)), k,
                    DeviceKind::kAccelerator));
    }
  }
  return r;
}

// A tiny DeepSeek-V2-shaped model: 4 layers (layer 0 dense), 8 experts (2 used), 1 shared.
std::unique_ptr<ktx::planner::SyntheticModel> tiny_model() {
  ktx::model::ModelConfig c;
  c.arch = ktx::model::Architecture::kDeepseek2;
  c.arch_name = "deepseek2";
  c.n_layer = 4;
  c.n_embd = 256;
  c.n_vocab = 1000;
  c.n_head = c.n_head_kv = 2;
  c.kv_lora_rank = 64;
  c.qk_nope_head_dim = 32;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 32;
  c.n_ff = 512;
  c.n_layer_dense_lead = 1;
  c.n_expert = 8;
  c.n_expert_used = 2;
  c.n_expert_shared = 1;
  c.n_ff_exp = 256;
  return ktx::planner::synthesize_deepseek2(c, std::nullopt, "tiny");
}

const std::vector<Device> kCpuOnly{Device::cpu()};
const std::vector<Device> kOneGpu{Device::cpu(), Device::cuda(0)};
const std::vector<Device> kTwoGpus{Device::cpu(), Device::cuda(0), Device::cuda(1)};

std::string error_of(const std::function<void()>& f, ErrorCode expected = ErrorCode::kInvalidFile) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(e.code() == expected);
    return e.what();
  }
  FAIL("no error thrown");
  return {};
}

// Parse errors: the message must start with "r.yaml:LINE: " and contain `what`.
void check_parse_error(const std::string& text, int line, const std::string& what) {
  const std::string msg = error_of([&] { parse_rules(text, "r.yaml"); });
  INFO(msg);
  CHECK(msg.rfind(fmt::format("r.yaml:{}: ", line), 0) == 0);
  CHECK_THAT(msg, Catch::Matchers::Contains(what));
}

struct Applied {
  ktx::exec::Plan plan;
  std::vector<std::string> warnings;
};

Applied apply_text(const std::string& text, const ktx::planner::SyntheticModel& m,
                   const OperatorRegistry& registry, const std::vector<Device>& devices) {
  Applied a;
  a.plan =
      apply_rules(parse_rules(text, "r.yaml"), m.modules, m.config, registry, devices, &a.warnings);
  return a;
}

void check_apply_error(const std::string& text, const OperatorRegistry& registry,
                       const std::vector<Device>& devices, int line, const std::string& what) {
  auto m = tiny_model();
  const std::string msg = error_of([&] { apply_text(text, *m, registry, devices); });
  INFO(msg);
  CHECK(msg.rfind(fmt::format("r.yaml:{}: ", line), 0) == 0);
  CHECK_THAT(msg, Catch::Matchers::Contains(what));
}

const ktx::exec::Placement& placement(const ktx::exec::Plan& plan, const std::string& module) {
  const ktx::exec::Placement* p = plan.find(module);
  REQUIRE(p != nullptr);
  return *p;
}

bool has_warning(const std::vector<std::string>& warnings, const std::string& part) {
  for (const std::string& w : warnings) {
    if (w.find(part) != std::string::npos) return true;
  }
  return false;
}

}  // namespace

TEST_CASE("rules: a rule places the modules it matches, the rest take cpu defaults", "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  const Applied a = apply_text(R"(
- match:
    name: 'model\.layers\.\d+\.self_attn'
  replace:
    op: cuda.mla_attention
    device: cuda:0
    kwargs: {threads: 4}
)",
                               *m, registry, kOneGpu);
  REQUIRE(a.plan.placements.size() == m->modules.size());
  const auto& attn = placement(a.plan, "model.layers.2.self_attn");
  CHECK(attn.impl == "cuda.mla_attention");
  CHECK(attn.generate_device == Device::cuda(0));
  CHECK(attn.prefill_device == Device::cuda(0));
  CHECK(attn.options.at("threads") == "4");
  CHECK(attn.why == "r.yaml:2 matched name 'model\\.layers\\.\\d+\\.self_attn'");
  const auto& experts = placement(a.plan, "model.layers.1.mlp.experts");
  CHECK(experts.impl == "cpu.experts");
  CHECK(experts.generate_device == Device::cpu());
  CHECK(experts.why == "no rule matched: the default cpu.experts on cpu");
  // Plan order is module order.
  for (size_t i = 0; i < m->modules.size(); ++i) {
    CHECK(a.plan.placements[i].module == m->modules[i].name);
  }
  CHECK(a.warnings.empty());
}

TEST_CASE("rules: the first matching rule wins; later ones that never win are reported",
          "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  const Applied a = apply_text(R"(
- match: {name: 'model\.layers\.[12]\.mlp\.experts'}
  replace: {op: cuda.experts, device: cuda:0}
- match: {kind: experts}
  replace: {op: cpu.experts, device: cpu}
- match: {name: 'model\.layers\.1\.mlp\.experts'}
  replace: {op: cpu.experts, device: cpu, kwargs: {threads: 2}}
)",
                               *m, registry, kOneGpu);
  CHECK(placement(a.plan, "model.layers.1.mlp.experts").impl == "cuda.experts");
  CHECK(placement(a.plan, "model.layers.2.mlp.experts").impl == "cuda.experts");
  CHECK(placement(a.plan, "model.layers.3.mlp.experts").impl == "cpu.experts");
  CHECK(placement(a.plan, "model.layers.3.mlp.experts").why == "r.yaml:4 matched kind experts");
  REQUIRE(a.warnings.size() == 1);
  CHECK(a.warnings[0] ==
        "r.yaml:6: rule never applies: earlier rules take every module it matches (r.yaml:2 "
        "first)");
}

TEST_CASE("rules: kind matching, kind lists, and op defaults per kind", "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  const Applied a = apply_text(R"(
- match:
    kind: [rms_norm, moe_gate]
  replace:
    device: cuda:0
- match:
    kind: mlp
    name: 'model\.layers\.\d+\.mlp\.shared_experts'
  replace:
    generate_device: cuda:0
    prefill_device: cuda:0
)",
                               *m, registry, kOneGpu);
  CHECK(placement(a.plan, "model.layers.0.input_layernorm").impl == "cuda.rms_norm");
  CHECK(placement(a.plan, "model.norm").impl == "cuda.rms_norm");
  CHECK(placement(a.plan, "model.layers.3.mlp.gate").impl == "cuda.moe_gate");
  CHECK(placement(a.plan, "model.layers.3.mlp.shared_experts").impl == "cuda.mlp");
  CHECK(placement(a.plan, "model.layers.0.mlp").impl == "cpu.mlp");  // dense: name does not match
  CHECK(placement(a.plan, "model.layers.2.self_attn").impl == "cpu.mla_attention");
}

TEST_CASE("rules: names match whole; a pattern that only matches prefixes warns with a hint",
          "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  const Applied a = apply_text(R"(
- match: {name: 'model\.layers\.1\.mlp'}
  replace: {device: cuda:0}
- match: {name: 'model\.layers\.2'}
  replace: {device: cuda:0}
)",
                               *m, registry, kOneGpu);
  // model.layers.1.mlp does not exist (layer 1 is MoE): the pattern must not reach
  // model.layers.1.mlp.experts or model.layers.1.mlp.gate.
  CHECK(placement(a.plan, "model.layers.1.mlp.experts").impl == "cpu.experts");
  CHECK(placement(a.plan, "model.layers.1.mlp.gate").impl == "cpu.moe_gate");
  REQUIRE(a.warnings.size() == 2);
  CHECK(a.warnings[0].rfind("r.yaml:2: rule matches no module (its pattern matches the start of "
                            "model.layers.1.mlp.gate",
                            0) == 0);
  CHECK(a.warnings[1].rfind("r.yaml:4: rule matches no module", 0) == 0);
  CHECK_THAT(a.warnings[1], Catch::Matchers::Contains("end the pattern with .*"));
}

TEST_CASE("rules: KTransformers rule files load with their classes translated", "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  // The shape of KTransformers' DeepSeek-V2-Chat.yaml (its vocabulary, prefix patterns, kwargs).
  const std::string text = R"(- match:
    class: ktransformers.models.modeling_deepseek.DeepseekV2YarnRotaryEmbedding
  replace:
    class: ktransformers.operators.RoPE.YarnRotaryEmbedding
- match:
    name: "^model\\.layers\\.(?!.*self_attn).*$"
    class: torch.nn.Linear
  replace:
    class: ktransformers.operators.linear.KTransformersLinear
    kwargs:
      generate_device: "cuda"
      prefill_device: "cuda"
      generate_op: "KLinearMarlin"
      prefill_op: "KLinearTorch"
- match:
    name: "^model\\.layers\\..*\\.mlp$"
    class: ktransformers.models.modeling_deepseek.DeepseekV2MoE
  replace:
    class: ktransformers.operators.experts.KDeepseekV2MoE
- match:
    name: "^model\\.layers\\..*\\.mlp\\.experts$"
  replace:
    class: ktransformers.operators.experts.KTransformersExperts
    device: "cpu"
    kwargs:
      prefill_device: "cuda"
      generate_device: "cpu"
      generate_op: "KExpertsCPU"
      out_device: "cuda"
  recursive: False
- match:
    name: "^model\\.layers\\..*\\.self_attn$"
  replace:
    class: ktransformers.operators.attention.KDeepseekV2Attention
- match:
    name: "^model$"
  replace:
    class: "ktransformers.operators.models.KDeepseekV2Model"
    kwargs:
      per_layer_prefill_intput_threshold: 0
      transfer_map:
        10: "cpu"
- match:
    name: "^model.embed_tokens"
  replace:
    class: "default"
    kwargs:
      generate_device: "cpu"
      prefill_device: "cpu"
- match:
    name: "^model\\.layers\\.[0-9]+\\."
  replace:
    class: "default"
    kwargs:
      generate_device: "cuda:0"
      prefill_device: "cuda:0"
)";
  const ktx::rules::RuleSet set = parse_rules(text, "kt.yaml");
  REQUIRE(set.rules.size() == 8);
  CHECK(set.rules[0].ignored);
  CHECK(set.rules[2].ignored);
  CHECK(set.rules[5].ignored);
  CHECK_FALSE(set.rules[3].recursive);
  CHECK(set.rules[3].ktransformers);
  std::vector<std::string> warnings;
  const auto plan = apply_rules(set, m->modules, m->config, registry, kOneGpu, &warnings);
  // torch.nn.Linear reaches the modules made of linear layers: dense MLP and shared experts.
  CHECK(placement(plan, "model.layers.0.mlp").impl == "cuda.mlp");
  CHECK(placement(plan, "model.layers.2.mlp.shared_experts").impl == "cuda.mlp");
  CHECK(placement(plan, "model.layers.2.mlp.shared_experts").generate_device == Device::cuda(0));
  // Experts: generate on the CPU; the CUDA prefill device falls back, with a warning.
  const auto& experts = placement(plan, "model.layers.2.mlp.experts");
  CHECK(experts.impl == "cpu.experts");
  CHECK(experts.generate_device == Device::cpu());
  CHECK(experts.prefill_device == Device::cpu());
  CHECK(experts.options.empty());  // generate_op, out_device: KTransformers-only
  // Attention with no device: KTransformers' default, the GPU.
  CHECK(placement(plan, "model.layers.1.self_attn").impl == "cuda.mla_attention");
  CHECK(placement(plan, "model.embed_tokens").impl == "cpu.embedding");
  // The prefix catch-all (KTransformers matches prefixes) reaches norms and gates.
  CHECK(placement(plan, "model.layers.3.input_layernorm").impl == "cuda.rms_norm");
  CHECK(placement(plan, "model.layers.3.mlp.gate").impl == "cuda.moe_gate");
  CHECK(placement(plan, "model.norm").impl == "cpu.rms_norm");  // no rule: default
  CHECK(has_warning(warnings,
                    "kt.yaml:1: rule ignored: match.class "
                    "ktransformers.models.modeling_deepseek."
                    "DeepseekV2YarnRotaryEmbedding: RoPE is part of ktx's attention"));
  CHECK(has_warning(warnings, "kt.yaml:15: rule ignored: match.class"));
  CHECK(has_warning(warnings,
                    "kt.yaml:35: rule ignored: replace.class "
                    "ktransformers.operators.models.KDeepseekV2Model"));
  CHECK(has_warning(warnings,
                    "kt.yaml:13: kwargs generate_op, out_device, "
                    "per_layer_prefill_intput_threshold, prefill_op, transfer_map "
                    "choose among KTransformers' own implementations; ktx ignores them"));
  CHECK(has_warning(warnings,
                    "kt.yaml:26: prefill_device cuda:0 ignored: cpu.experts runs on "
                    "cpu"));
}

TEST_CASE("rules: KTransformers' balance_serve classes, and its patterns matched anywhere",
          "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  // The shape of KTransformers' DeepSeek-V3-Chat-serve.yaml; the experts rule's pattern has no
  // ^ (KTransformers uses re.search: it matches anywhere in the name).
  const std::string text = R"(- match:
    class: ktransformers.models.modeling_deepseek_v3.DeepseekV3RotaryEmbedding
  replace:
    class: ktransformers.operators.RoPE.RotaryEmbeddingV3
- match:
    name: "^model\\.layers\\..*\\.mlp$"
    class: ktransformers.models.modeling_deepseek_v3.DeepseekV3MoE
  replace:
    class: ktransformers.operators.experts.KDeepseekV3MoEV2
- match:
    name: "\\.mlp\\.experts$"
  replace:
    class: ktransformers.operators.experts.KTransformersExpertsV2
    kwargs:
      generate_device: "cpu"
      n_deferred_experts: [1, 2]
- match:
    name: "^model\\.layers\\..*\\.self_attn$"
  replace:
    class: ktransformers.operators.balance_serve_attention.flashinfer_attn
- match:
    name: "^model\\.layers\\..*\\.shared_experts$"
  replace:
    class: ktransformers.operators.mlp.kDeepseekV3MLP
)";
  const ktx::rules::RuleSet set = parse_rules(text, "serve.yaml");
  REQUIRE(set.rules.size() == 5);
  CHECK(set.rules[0].ignored);
  CHECK(set.rules[1].ignored);
  std::vector<std::string> warnings;
  const auto plan = apply_rules(set, m->modules, m->config, registry, kOneGpu, &warnings);
  CHECK(placement(plan, "model.layers.2.mlp.experts").impl == "cpu.experts");
  CHECK(placement(plan, "model.layers.2.mlp.experts").options.empty());
  CHECK(placement(plan, "model.layers.1.self_attn").impl == "cuda.mla_attention");
  CHECK(placement(plan, "model.layers.2.mlp.shared_experts").impl == "cuda.mlp");
  CHECK(has_warning(warnings, "n_deferred_experts"));
}

TEST_CASE("rules: KTransformers classes without a ktx counterpart are errors naming them",
          "[rules]") {
  check_parse_error(R"(
- match: {name: 'lm_head'}
  replace:
    class: ktransformers.operators.linear.KLinearFP8Fancy
)",
                    4,
                    "replace.class 'ktransformers.operators.linear.KLinearFP8Fancy' has no ktx "
                    "counterpart; name a ktx operator with op:");
  check_parse_error(R"(
- match:
    class: torch.nn.Conv2d
  replace: {op: cpu.mlp}
)",
                    3, "match.class 'torch.nn.Conv2d' is a class ktx does not know");
  // A class standing for one kind refuses modules of another kind.
  const auto registry = make_registry(true);
  check_apply_error(
      R"(
- match: {name: 'model\.layers\.1\..*'}
  replace:
    class: ktransformers.operators.experts.KTransformersExperts
    kwargs: {generate_device: cpu}
)",
      registry, kOneGpu, 4,
      "operator cpu.experts (what KTransformers' "
      "ktransformers.operators.experts.KTransformersExperts becomes) runs experts "
      "modules, but this rule also matches model.layers.1.input_layernorm (rms_norm)");
}

TEST_CASE("rules: YAML and structure errors name file and line", "[rules]") {
  check_parse_error("- match: {name: 'a'\n  replace: {}\n", 2, "YAML syntax error");
  check_parse_error("match:\n  name: x\n", 1,
                    "a rule file is a list of rules ('- match: ...'), not a mapping");
  check_parse_error("- match: {kind: mlp}\n  replace: {}\n- just a string\n", 3,
                    "each rule is a mapping with match: and replace:, not the value 'just a "
                    "string'");
  check_parse_error("- match: {kind: mlp}\n  replce: {device: cpu}\n", 2,
                    "unknown key 'replce' in a rule (did you mean replace?); expected match, "
                    "replace, recursive");
  check_parse_error("- match: {kind: mlp, nmae: x}\n  replace: {}\n", 1,
                    "unknown key 'nmae' in match (did you mean name?)");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    op: cpu.mlp\n    devcie: cpu\n", 4,
                    "unknown key 'devcie' in replace (did you mean device?)");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    op: cpu.mlp\n    op: cpu.mlp\n", 4,
                    "'op' is given twice in replace");
  check_parse_error("- replace: {op: cpu.mlp}\n", 1, "the rule has no match:");
  check_parse_error("- match: {kind: mlp}\n", 1, "the rule has no replace:");
  check_parse_error("- match: {}\n  replace: {}\n", 1, "match: needs name:, kind: or class:");
  check_parse_error("- match: {kind: mlp}\n  replace: {}\n---\n- match: {kind: mlp}\n", 4,
                    "a rule file holds one YAML document");
}

TEST_CASE("rules: wrong value types are errors", "[rules]") {
  check_parse_error("- match:\n    name: [a, b]\n  replace: {}\n", 2,
                    "match.name must be a string, not a list");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    kwargs: [1, 2]\n", 3,
                    "replace.kwargs must be a mapping (key: value), not a list");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    kwargs:\n      threads: {a: 1}\n", 4,
                    "replace.kwargs.threads must be a single value, not a mapping");
  check_parse_error("- match: {kind: mlp}\n  replace: [cpu]\n", 2,
                    "replace must be a mapping (key: value), not a list");
  check_parse_error("- match: {kind: mlp}\n  replace: {}\n  recursive: maybe\n", 3,
                    "recursive must be true or false, not 'maybe'");
  check_parse_error("- match:\n    kind: []\n  replace: {}\n", 2, "match.kind is an empty list");
  check_parse_error("- match: {kind: mlp}\n  replace: {op: cpu.mlp, class: default}\n", 2,
                    "replace: has both op: (a ktx operator) and class: (a KTransformers class)");
  check_parse_error(
      "- match: {kind: mlp}\n  replace:\n    generate_device: cpu\n    kwargs:\n"
      "      generate_device: cpu\n",
      5,
      "generate_device is given twice (replace.generate_device and "
      "replace.kwargs.generate_device)");
}

TEST_CASE("rules: bad regexes, kinds and device names are errors", "[rules]") {
  check_parse_error("- match:\n    name: 'model\\.layers\\.(\\d+'\n  replace: {}\n", 2,
                    "bad regular expression 'model\\.layers\\.(\\d+': missing closing "
                    "parenthesis at character 19");
  check_parse_error("- match:\n    kind: expert\n  replace: {}\n", 2,
                    "unknown module kind 'expert' (did you mean experts?); expected one of "
                    "embedding, rms_norm, mla_attention, gqa_attention, mlp, moe_gate, experts, "
                    "lm_head");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    device: gpu\n", 3,
                    "device: 'gpu' is not a device; write cpu, cuda, cuda:N or <backend>:N");
  check_parse_error("- match: {kind: mlp}\n  replace:\n    kwargs:\n      prefill_device: cuda:x\n",
                    4, "prefill_device: 'cuda:x' is not a device");
}

TEST_CASE("rules: operator, device and type checks against the registry", "[rules]") {
  const auto with_cuda = make_registry(true);
  const auto cpu_only = make_registry(false);
  SECTION("unknown operator, with close names") {
    check_apply_error("- match: {kind: mla_attention}\n  replace:\n    op: cpu.mla\n", cpu_only,
                      kCpuOnly, 3, "unknown operator 'cpu.mla' (did you mean cpu.mla_attention");
  }
  SECTION("a CUDA operator without the CUDA backend") {
    check_apply_error(
        "- match: {kind: rms_norm}\n  replace: {op: cpu.rms_norm}\n"
        "- match: {kind: mla_attention}\n  replace:\n    op: cuda.mla_attention\n"
        "    device: cuda:0\n",
        cpu_only, kCpuOnly, 5,
        "operator cuda.mla_attention is not registered: the CUDA backend is not loaded");
  }
  SECTION("a default CUDA operator without the CUDA backend") {
    check_apply_error("- match: {kind: moe_gate}\n  replace:\n    device: cuda:0\n", cpu_only,
                      kOneGpu, 1,
                      "no operator for model.layers.1.mlp.gate (moe_gate) on cuda:0: operator "
                      "cuda.moe_gate is not registered: the CUDA backend is not loaded");
  }
  SECTION("a device that does not exist") {
    check_apply_error(
        "- match: {kind: experts}\n  replace:\n    op: cuda.experts\n"
        "    device: cuda:1\n",
        with_cuda, kOneGpu, 4,
        "generate_device cuda:1 does not exist here (available: cpu, cuda:0)");
    check_apply_error(
        "- match: {kind: experts}\n  replace:\n    op: cuda.experts\n"
        "    generate_device: cuda:0\n    prefill_device: cuda:2\n",
        with_cuda, kOneGpu, 5,
        "prefill_device cuda:2 does not exist here (available: cpu, cuda:0)");
  }
  SECTION("an operator of another kind") {
    check_apply_error(
        "- match: {name: 'model\\.layers\\.1\\.mlp\\..*'}\n  replace:\n"
        "    op: cpu.mlp\n",
        with_cuda, kOneGpu, 3,
        "operator cpu.mlp runs mlp modules, but this rule also matches "
        "model.layers.1.mlp.gate (moe_gate); narrow the match with kind: or name:");
  }
  SECTION("an operator on the wrong kind of device") {
    check_apply_error(
        "- match: {kind: experts}\n  replace:\n    op: cpu.experts\n"
        "    device: cuda:0\n",
        with_cuda, kOneGpu, 4,
        "operator cpu.experts runs on cpu devices, but generate_device is cuda:0");
    check_apply_error(
        "- match: {kind: experts}\n  replace:\n    op: cuda.experts\n"
        "    generate_device: cuda:0\n    prefill_device: cpu\n",
        with_cuda, kOneGpu, 5,
        "operator cuda.experts runs on cuda devices, but prefill_device is cpu");
  }
  SECTION("an operator that cannot read the module's tensor types") {
    auto m = tiny_model();
    for (auto& t : m->tensors) {
      if (t.name == "blk.2.ffn_down_exps.weight") t.type = ktx::TensorType::IQ2_XXS;
    }
    const std::string msg = error_of([&] {
      apply_text("- match: {kind: experts}\n  replace:\n    op: cpu.experts\n", *m, with_cuda,
                 kOneGpu);
    });
    CHECK(msg ==
          "r.yaml:3: operator cpu.experts cannot run model.layers.2.mlp.experts on cpu: "
          "blk.2.ffn_down_exps.weight is IQ2_XXS, which cpu.experts cannot read");
  }
  SECTION("options the operator refuses") {
    check_apply_error(
        "- match: {kind: experts}\n  replace:\n    op: cpu.experts\n"
        "    kwargs: {thraeds: 8}\n",
        with_cuda, kOneGpu, 3, "unknown option 'thraeds'");
  }
  SECTION("unmatched modules need the default CPU operators") {
    OperatorRegistry partial;
    partial.add(fake_op("cpu.experts", ModuleKind::kExperts, DeviceKind::kCpu));
    auto m = tiny_model();
    const std::string msg = error_of(
        [&] {
          apply_text("- match: {kind: experts}\n  replace: {op: cpu.experts}\n", *m, partial,
                     kCpuOnly);
        },
        ErrorCode::kUnsupported);
    CHECK_THAT(msg, Catch::Matchers::StartsWith(
                        "r.yaml: no rule matches model.embed_tokens and unknown operator "
                        "'cpu.embedding'"));
  }
}

TEST_CASE("rules: modules no rule matches can take a fallback plan (the planner's)", "[rules]") {
  auto m = tiny_model();
  const auto registry = make_registry(true);
  ktx::exec::Plan fallback;
  for (const auto& mod : m->modules) {
    ktx::exec::Placement p;
    p.module = mod.name;
    p.impl = fmt::format("cuda.{}", ktx::model::module_kind_name(mod.kind));
    p.generate_device = p.prefill_device = Device::cuda(0);
    p.why = "planned";
    fallback.placements.push_back(p);
  }
  std::vector<std::string> warnings;
  const auto plan =
      apply_rules(parse_rules("- match: {kind: experts}\n  replace: {op: cpu.experts}\n", "r.yaml"),
                  m->modules, m->config, registry, kOneGpu, &warnings, &fallback);
  CHECK(placement(plan, "model.layers.1.mlp.experts").impl == "cpu.experts");
  CHECK(placement(plan, "model.layers.1.self_attn").impl == "cuda.mla_attention");
  CHECK(placement(plan, "model.layers.1.self_attn").why == "no rule matched; planner: planned");
}

TEST_CASE("rules: a plan written as rules reads back to the same plan", "[rules]") {
  auto m = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2,
                                          ktx::quantize::Preset::Q4_K_M);
  const auto registry = make_registry(true);
  ktx::exec::Plan plan;
  for (const auto& mod : m->modules) {
    ktx::exec::Placement p;
    p.module = mod.name;
    const bool gpu = mod.kind != ModuleKind::kExperts && mod.kind != ModuleKind::kEmbedding;
    // Layers 30+ on the second GPU; experts of layers 1-3 and 17 on the GPU.
    const bool hot = mod.kind == ModuleKind::kExperts &&
                     (mod.layer == 1 || mod.layer == 2 || mod.layer == 3 || mod.layer == 17);
    const Device d = mod.layer >= 30 || mod.name == "lm_head" ? Device::cuda(1) : Device::cuda(0);
    p.impl =
        fmt::format("{}.{}", gpu || hot ? "cuda" : "cpu", ktx::model::module_kind_name(mod.kind));
    p.generate_device = p.prefill_device = gpu || hot ? d : Device::cpu();
    if (mod.kind == ModuleKind::kExperts && !hot) p.options["threads"] = "it's 8";
    p.why = "hand-made";
    plan.placements.push_back(p);
  }
  const std::string yaml = ktx::rules::plan_to_rules_yaml(plan, "round trip\nsecond line");
  INFO(yaml);
  CHECK_THAT(yaml, Catch::Matchers::StartsWith("# round trip\n# second line\n"));
  CHECK_THAT(yaml,
             Catch::Matchers::Contains("name: 'model\\.layers\\.(1|2|3|17)\\.mlp\\.experts'"));
  std::vector<std::string> warnings;
  const auto back = apply_rules(parse_rules(yaml, "out.yaml"), m->modules, m->config, registry,
                                kTwoGpus, &warnings);
  CHECK(warnings.empty());
  REQUIRE(back.placements.size() == plan.placements.size());
  for (size_t i = 0; i < plan.placements.size(); ++i) {
    INFO(plan.placements[i].module);
    CHECK(back.placements[i].impl == plan.placements[i].impl);
    CHECK(back.placements[i].generate_device == plan.placements[i].generate_device);
    CHECK(back.placements[i].prefill_device == plan.placements[i].prefill_device);
    CHECK(back.placements[i].options == plan.placements[i].options);
  }
}

TEST_CASE("rules: the shipped rule files parse and apply to DeepSeek-shaped models", "[rules]") {
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(KTX_SOURCE_DIR) / "rules";
  REQUIRE(fs::is_directory(dir));
  const auto registry = make_registry(true);
  auto v2 = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2,
                                           ktx::quantize::Preset::Q4_K_M);
  auto v3 = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV3,
                                           ktx::quantize::Preset::Q4_K_M);
  auto lite = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2Lite,
                                             ktx::quantize::Preset::Q4_K_M);
  size_t files = 0;
  for (const auto& entry : fs::directory_iterator(dir)) {
    if (entry.path().extension() != ".yaml") continue;
    ++files;
    const std::string name = entry.path().filename().string();
    INFO(name);
    const auto set = ktx::rules::load_rules(entry.path().string());
    CHECK(set.warnings.empty());
    const ktx::planner::SyntheticModel& m = name.starts_with("deepseek-v3")        ? *v3
                                            : name.starts_with("deepseek-v2-lite") ? *lite
                                                                                   : *v2;
    std::vector<std::string> warnings;
    const auto plan = apply_rules(set, m.modules, m.config, registry, kTwoGpus, &warnings);
    for (const auto& w : warnings) INFO(w);
    CHECK(warnings.empty());
    for (const auto& p : plan.placements) {
      INFO(p.module);
      CHECK(p.why.rfind("no rule matched", 0) != 0);  // every module is placed by a rule
    }
    // Every file keeps the embedding on the CPU.
    CHECK(placement(plan, "model.embed_tokens").generate_device == Device::cpu());
    if (name.find("gpu") == std::string::npos) {
      for (const auto& p : plan.placements) CHECK(p.generate_device == Device::cpu());
    }
  }
  CHECK(files >= 9);

  // The KTransformers split, checked module by module on V2.
  std::vector<std::string> warnings;
  const auto plan = apply_rules(ktx::rules::load_rules((dir / "deepseek-v2-gpu-cpu.yaml").string()),
                                v2->modules, v2->config, registry, kOneGpu, &warnings);
  for (const auto& p : plan.placements) {
    INFO(p.module);
    if (p.module.ends_with(".mlp.experts") || p.module == "model.embed_tokens") {
      CHECK(p.generate_device == Device::cpu());
      CHECK(p.impl.rfind("cpu.", 0) == 0);
    } else {
      CHECK(p.generate_device == Device::cuda(0));
      CHECK(p.impl.rfind("cuda.", 0) == 0);
    }
  }
  // Two GPUs: layers split at 30 (V2) / 30 (V3), lm_head on the second.
  const auto two = apply_rules(ktx::rules::load_rules((dir / "deepseek-v2-two-gpus.yaml").string()),
                               v2->modules, v2->config, registry, kTwoGpus, &warnings);
  CHECK(placement(two, "model.layers.29.self_attn").generate_device == Device::cuda(0));
  CHECK(placement(two, "model.layers.30.self_attn").generate_device == Device::cuda(1));
  CHECK(placement(two, "model.layers.59.mlp.shared_experts").generate_device == Device::cuda(1));
  CHECK(placement(two, "model.layers.0.mlp").generate_device == Device::cuda(0));
  CHECK(placement(two, "lm_head").generate_device == Device::cuda(1));
  CHECK(placement(two, "model.layers.45.mlp.experts").generate_device == Device::cpu());
  const auto two_v3 =
      apply_rules(ktx::rules::load_rules((dir / "deepseek-v3-two-gpus.yaml").string()), v3->modules,
                  v3->config, registry, kTwoGpus, &warnings);
  CHECK(placement(two_v3, "model.layers.60.self_attn").generate_device == Device::cuda(1));
  CHECK(placement(two_v3, "model.layers.2.mlp").generate_device == Device::cuda(0));
  const auto some =
      apply_rules(ktx::rules::load_rules((dir / "deepseek-v2-gpu-some-experts.yaml").string()),
                  v2->modules, v2->config, registry, kOneGpu, &warnings);
  CHECK(placement(some, "model.layers.6.mlp.experts").impl == "cuda.experts");
  CHECK(placement(some, "model.layers.7.mlp.experts").impl == "cpu.experts");
}

TEST_CASE("rules: GPU rule files fail clearly where the CUDA backend is not loaded", "[rules]") {
  auto v2 = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2,
                                           ktx::quantize::Preset::Q4_K_M);
  const auto cpu_only = make_registry(false);
  for (const char* file :
       {"deepseek-v2-gpu-cpu.yaml", "deepseek-v2-gpu-some-experts.yaml",
        "deepseek-v2-two-gpus.yaml", "deepseek-v3-gpu-cpu.yaml", "deepseek-v2-lite-gpu.yaml"}) {
    INFO(file);
    const std::string path = std::string(KTX_SOURCE_DIR) + "/rules/" + file;
    const std::string msg = error_of([&] {
      apply_rules(ktx::rules::load_rules(path), v2->modules, v2->config, cpu_only, kCpuOnly,
                  nullptr);
    });
    CHECK(msg.rfind(path + ":", 0) == 0);
    CHECK_THAT(msg, Catch::Matchers::EndsWith(
                        "operator cuda.mla_attention is not registered: the CUDA backend is not "
                        "loaded"));
  }
  // The CPU file loads.
  CHECK_NOTHROW(apply_rules(
      ktx::rules::load_rules(std::string(KTX_SOURCE_DIR) + "/rules/deepseek-v2-cpu.yaml"),
      v2->modules, v2->config, cpu_only, kCpuOnly, nullptr));
}

TEST_CASE("rules: name patterns are PCRE2, matched whole or (KTransformers) as prefixes",
          "[rules]") {
  std::string error;
  const auto re = ktx::rules::NameRegex::compile(R"(model\.layers\.1|model\.layers\.1\d)", &error);
  REQUIRE(re.valid());
  CHECK(re.full_match("model.layers.12"));  // the first alternative fails at the end: backtrack
  CHECK(re.full_match("model.layers.1"));
  CHECK_FALSE(re.full_match("model.layers.123"));
  CHECK(re.prefix_match("model.layers.123"));
  CHECK_FALSE(re.prefix_match("xmodel.layers.1"));
  CHECK(re.search("xmodel.layers.1"));  // KTransformers' re.search
  // Python's syntax, as KTransformers files use it: lookahead, lookbehind, (?P<name>...).
  const auto py = ktx::rules::NameRegex::compile(R"((?P<layer>\d+)(?<=5)\.(?!x).*)", &error);
  REQUIRE(py.valid());
  CHECK(py.full_match("15.mlp"));
  CHECK_FALSE(py.full_match("16.mlp"));
  CHECK_FALSE(py.full_match("15.xmlp"));
  const auto bad = ktx::rules::NameRegex::compile("a[", &error);
  CHECK_FALSE(bad.valid());
  CHECK(error == "missing terminating ] for character class at character 2");
}

TEST_CASE("rules: a pattern that backtracks without end is an error naming it, not a hang",
          "[rules]") {
  std::string error;
  // Two ways to match each character: 2^n paths through a name of n characters, none ending
  // in x or y. (A pattern with one required character, ((.*)*)*z, PCRE2 refuses at once.)
  const char* pattern = R"(((\w|\w)*)(x|y))";
  const auto re = ktx::rules::NameRegex::compile(pattern, &error);
  REQUIRE(re.valid());
  const std::string name = "model_layers_10_mlp_shared_experts";
  CHECK_THROWS_WITH(re.full_match(name), Catch::Contains(pattern) && Catch::Contains(name) &&
                                             Catch::Contains("simplify"));
  // Through a rule: the file and the line of its name.
  const auto set = parse_rules(
      fmt::format("- match:\n    kind: mlp\n    name: '{}'\n  replace: {{}}\n", pattern),
      "slow.yaml");
  REQUIRE(set.rules.size() == 1);
  ktx::model::ModuleDesc module;
  module.name = name;
  module.kind = ModuleKind::kMlp;
  CHECK_THROWS_WITH(set.rules[0].matches(module), Catch::StartsWith("slow.yaml:3: pattern"));
}

TEST_CASE("rules: UTF-16 and NUL bytes are named, not parsed as something else", "[rules]") {
  const std::string utf16("\xFF\xFE-\0 \0m\0", 8);
  CHECK(
      error_of([&] { parse_rules(utf16, "u16.yaml"); }, ErrorCode::kInvalidFile) ==
      "u16.yaml:1: the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8");
  const std::string nul("- match: {kind: mlp}\n  replace: {op: cpu.m\0lp}\n", 47);
  CHECK(error_of([&] { parse_rules(nul, "nul.yaml"); }, ErrorCode::kInvalidFile) ==
        "nul.yaml:2: a NUL byte at offset 42: a rule file is UTF-8 text");
}

TEST_CASE("rules: load_rules reports a missing file as an I/O error", "[rules]") {
  const std::string msg =
      error_of([] { ktx::rules::load_rules("/nonexistent/rules.yaml"); }, ErrorCode::kIo);
  CHECK(msg == "/nonexistent/rules.yaml: cannot open the rule file");
}

TEST_CASE("rules: an empty file has no rules and says so", "[rules]") {
  const auto set = parse_rules("# nothing yet\n", "empty.yaml");
  CHECK(set.rules.empty());
  REQUIRE(set.warnings.size() == 1);
  CHECK(set.warnings[0] == "empty.yaml: the file holds no rules");
}
