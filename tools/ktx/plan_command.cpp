// `ktx plan`: where each module of a model should run on the described hardware, why, and how
// fast that should be — from a model file (-m) or from a published config (--arch-preset), by the
// planner or by a rule file (--rules); --rules-out writes the plan as a rule file.
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <optional>
#include <thread>

#include "args.h"
#include "commands.h"
#include "core/output_path.h"
#include "json_writer.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quantize.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "planner/arch_preset.h"
#include "planner/costs.h"
#include "planner/planner.h"
#include "registry/backend_loader.h"
#include "rules/rules.h"

namespace ktx::cli {
namespace {

constexpr const char* kUsage =
    "usage: ktx plan (-m MODEL.gguf | --arch-preset NAME [--quant PRESET]) [options]\n"
    "\n"
    "model:\n"
    "  -m, --model FILE         a GGUF model (the first part of a split model opens all parts)\n"
    "  --arch-preset NAME       a published config instead: deepseek-v2, deepseek-v2-lite,\n"
    "                           deepseek-v3 (= deepseek-r1)\n"
    "  --quant PRESET           with --arch-preset: llama.cpp preset giving each tensor its type\n"
    "                           (Q4_K_M, Q8_0, ...; BF16 = unquantized) [Q4_K_M]\n"
    "hardware:\n"
    "  --gpu-mem SIZE[,SIZE..]  memory ktx may use on each GPU (24G; G = GiB, GB = 10^9 bytes)\n"
    "  --gpus N                 number of GPUs [1 with --gpu-mem, else 0]\n"
    "  --dram SIZE              host memory for weights and caches [physical memory]\n"
    "  --gpu NAME               GPU speed preset [rtx4090]; --gpu list shows them\n"
    "  --gpu-bw GB/s, --gpu-tflops T   sustained GPU bandwidth / FLOP/s instead of the preset's\n"
    "  --cpu-bw GB/s            CPU memory bandwidth [measured now, 0.3 s]\n"
    "  --cpu-tflops T           CPU FLOP/s for prefill [threads x 0.12 (AVX-512 VNNI), 0.03 "
    "(AVX2)]\n"
    "  --gpu-reserve SIZE       per GPU, for the CUDA context and activations [512M]\n"
    "workload:\n"
    "  --ctx N                  context tokens: KV cache size, and decode is timed there [4096]\n"
    "  --prefill-batch N        tokens per prefill step [512]\n"
    "  --routing-stats FILE     expert counts (docs/RULES.md): busiest experts to spare GPU "
    "memory\n"
    "  --no-gpu-experts         keep every routed expert on the CPU\n"
    "placement:\n"
    "  --rules FILE             place by this rule file (unmatched modules: the planner's choice)\n"
    "  --rules-out FILE         write the plan as a rule file\n"
    "  --json                   one JSON document instead of text\n";

// The model, from a file or synthesized from a preset; `file` and `synthetic` keep alive what the
// modules point into.
struct LoadedModel {
  std::string description;
  std::optional<gguf::File> file;
  std::unique_ptr<planner::SyntheticModel> synthetic;
  model::ModelConfig config;
  std::vector<model::ModuleDesc> modules;
  uint64_t total_bytes = 0;
  uint64_t parameters = 0;
};

LoadedModel load_model(const Args& args) {
  LoadedModel m;
  const std::optional<std::string> path = args.option("model");
  const std::optional<std::string> preset = args.option("arch-preset");
  if (path.has_value() == preset.has_value()) {
    args.fail("give either -m MODEL.gguf or --arch-preset NAME (see ktx plan --help)");
  }
  if (path) {
    if (args.option("quant"))
      args.fail("--quant goes with --arch-preset; a model file has its types");
    m.file.emplace(gguf::File::open(*path));
    m.config = model::ModelConfig::from_gguf(*m.file);
    m.modules = model::build_module_tree(m.config, *m.file);
    m.description = *path;
    if (const gguf::Value* name = m.file->find("general.name"); name && name->as_string()) {
      m.description = fmt::format("{} ({})", *name->as_string(), *path);
    }
    for (const gguf::TensorInfo& t : m.file->tensors()) {
      m.total_bytes += t.n_bytes;
      m.parameters += t.n_elements;
    }
    return m;
  }
  const std::string quant_name = args.option("quant").value_or("Q4_K_M");
  std::optional<quantize::Preset> quant;
  if (quant_name != "BF16" && quant_name != "bf16") quant = quantize::parse_preset(quant_name);
  m.synthetic = planner::synthesize_model(planner::parse_arch_preset(*preset), quant);
  m.config = m.synthetic->config;
  m.modules = m.synthetic->modules;
  m.description = m.synthetic->description + " (published config, no file)";
  m.total_bytes = m.synthetic->total_bytes();
  m.parameters = m.synthetic->total_parameters();
  return m;
}

// A memory size; 0 only where it means something (a reserve), never "unlimited".
uint64_t size_option(const Args& args, const std::string& name, const std::string& text,
                     bool zero_allowed = false) {
  std::optional<uint64_t> v = planner::parse_size(text);
  if (!v) args.fail(fmt::format("--{}: '{}' is not a size (24G, 512M, 136GB, ...)", name, text));
  if (*v == 0 && !zero_allowed) {
    args.fail(fmt::format("--{} is 0: a device with no memory holds nothing ({})", name,
                          name == "gpu-mem" ? "for no GPU, leave --gpu-mem out"
                                            : "leave --dram out for the physical memory"));
  }
  return *v;
}

// A speed in GB/s or TFLOP/s: finite, and within what any machine could have.
double number_option(const Args& args, const std::string& name) {
  const std::string text = *args.option(name);
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size() || !std::isfinite(v) || !(v >= 1e-6 && v <= 1e9)) {
    args.fail(fmt::format("--{} must be a number from 1e-6 to 1e9, not '{}'", name, text));
  }
  return v;
}

struct Hardware {
  planner::PlannerOptions options;
  std::string gpu_name;
  std::string cpu_bandwidth_source;
  std::optional<planner::RoutingStats> routing;
};

Hardware describe_hardware(const Args& args) {
  Hardware hw;
  planner::PlannerOptions& o = hw.options;
  std::vector<uint64_t> budgets;
  if (std::optional<std::string> mem = args.option("gpu-mem")) {
    size_t start = 0;
    while (start <= mem->size()) {
      size_t comma = mem->find(',', start);
      if (comma == std::string::npos) comma = mem->size();
      budgets.push_back(size_option(args, "gpu-mem", mem->substr(start, comma - start)));
      start = comma + 1;
    }
  }
  const int64_t gpus = args.int_option("gpus", static_cast<int64_t>(budgets.size()), 0, 64);
  if (gpus > 0 && budgets.empty()) args.fail("--gpus needs --gpu-mem (the memory of each GPU)");
  if (gpus == 0 && !budgets.empty()) {
    args.fail("--gpus 0 leaves out the GPU that --gpu-mem describes; give one or the other");
  }
  if (budgets.size() == 1) budgets.resize(static_cast<size_t>(gpus), budgets[0]);
  if (static_cast<int64_t>(budgets.size()) != gpus) {
    args.fail(fmt::format("--gpu-mem lists {} sizes but --gpus is {}", budgets.size(), gpus));
  }
  o.gpu_budgets = budgets;
  o.dram_budget = args.option("dram") ? size_option(args, "dram", *args.option("dram"))
                                      : planner::physical_memory_bytes();
  hw.gpu_name = args.option("gpu").value_or("rtx4090");
  std::optional<planner::GpuPreset> gpu = planner::find_gpu_preset(hw.gpu_name);
  if (!gpu) {
    std::string names;
    for (const planner::GpuPreset& p : planner::gpu_presets()) names += " " + std::string(p.name);
    args.fail(
        fmt::format("--gpu: unknown GPU '{}'; presets:{} (or give --gpu-bw and "
                    "--gpu-tflops)",
                    hw.gpu_name, names));
  }
  o.gpu = planner::gpu_speed(*gpu);
  if (args.option("gpu-bw")) o.gpu.bandwidth = number_option(args, "gpu-bw") * 1e9;
  if (args.option("gpu-tflops")) o.gpu.flops = number_option(args, "gpu-tflops") * 1e12;
  if (args.option("cpu-bw")) {
    o.cpu.bandwidth = number_option(args, "cpu-bw") * 1e9;
    hw.cpu_bandwidth_source = "given";
  } else {
    o.cpu.bandwidth = planner::measure_cpu_bandwidth();
    hw.cpu_bandwidth_source = "measured now; --cpu-bw to set";
  }
  o.cpu.flops = args.option("cpu-tflops") ? number_option(args, "cpu-tflops") * 1e12
                                          : planner::default_cpu_flops();
  if (args.option("gpu-reserve")) {
    o.gpu_reserve = size_option(args, "gpu-reserve", *args.option("gpu-reserve"), true);
  }
  o.prefill_batch = args.int_option("prefill-batch", 512, 1, 1 << 20);
  o.experts_to_gpu = !args.flag("no-gpu-experts");
  if (std::optional<std::string> stats = args.option("routing-stats")) {
    hw.routing = planner::load_routing_stats(*stats);
  }
  return hw;
}

// The planner's choice for the modules no rule matches, made for the memory the rules leave:
// a plan made for the whole model would count GPU memory that the rules gave elsewhere (an old
// KTransformers file without an embedding rule got "cuda:0 had 246 MiB left" with 16 GiB free).
exec::Plan plan_unmatched(const rules::RuleSet& set, const LoadedModel& m,
                          const std::vector<planner::ModuleCost>& costs,
                          const planner::PlannerOptions& options,
                          const registry::OperatorRegistry& registry,
                          const std::vector<registry::Device>& available) {
  std::vector<planner::ModuleCost> matched, unmatched;
  for (const planner::ModuleCost& c : costs) {
    const auto module = std::find_if(m.modules.begin(), m.modules.end(),
                                     [&](const model::ModuleDesc& d) { return d.name == c.name; });
    const bool any = module != m.modules.end() &&
                     std::any_of(set.rules.begin(), set.rules.end(),
                                 [&](const rules::Rule& r) { return r.matches(*module); });
    (any ? matched : unmatched).push_back(c);
  }
  if (unmatched.empty()) return {};
  // What the rules place, the unmatched modules left out of the count.
  std::vector<std::string> warnings;  // the caller's own apply_rules reports them
  const exec::Plan ruled =
      rules::apply_rules(set, m.modules, m.config, registry, available, &warnings, nullptr);
  const planner::PlanReport used = planner::evaluate_plan(ruled, matched, options);
  planner::PlannerOptions left = options;
  for (const planner::DeviceUsage& u : used.devices) {
    const uint64_t taken = u.weights + u.kv_cache;
    // A budget of 0 means "unlimited" to the planner: a full device keeps 1 byte.
    auto shrink = [&](uint64_t& budget) { budget = budget > taken ? budget - taken : 1; };
    if (u.device.is_cpu()) {
      if (left.dram_budget > 0) shrink(left.dram_budget);
    } else if (u.device.index >= 0 &&
               static_cast<size_t>(u.device.index) < left.gpu_budgets.size()) {
      shrink(left.gpu_budgets[static_cast<size_t>(u.device.index)]);
    }
  }
  return planner::plan_placement(unmatched, left).plan;
}

// The registry `--rules` is checked against: the CPU backend's operators when the model file is
// there (their checks read the tensors), and stand-ins for the rest — the CUDA operators, since a
// plan describes hardware that need not be this machine's, and for a preset (no file, no data)
// the CPU ones too.
struct PlanningRegistry {
  registry::BackendSet backends;  // declared first: outlives the operators registered from it
  registry::OperatorRegistry registry;
};

void planning_registry(bool have_file, PlanningRegistry& out) {
  registry::OperatorRegistry& registry = out.registry;
  // With a file: the CPU backend and every backend module found (ref …), as a model load would.
  if (have_file) out.backends = registry::load_backends(registry);
  for (const char* backend : {"cpu", "cuda"}) {
    for (int k = 0; k <= static_cast<int>(model::ModuleKind::kLmHead); ++k) {
      const auto kind = static_cast<model::ModuleKind>(k);
      const std::string name = fmt::format("{}.{}", backend, model::module_kind_name(kind));
      if (registry.find(name) != nullptr) continue;
      registry.add(
          {name, kind,
           backend[1] == 'p' ? registry::DeviceKind::kCpu : registry::DeviceKind::kAccelerator,
           "planning stand-in",
           [](const registry::OpCreateArgs&) { return std::optional<std::string>(); },
           [name](const registry::OpCreateArgs&) -> std::unique_ptr<ops::Operator> {
             throw Error(ErrorCode::kUnsupported, fmt::format("{} is a planning stand-in", name));
           }});
    }
  }
}

void print_text(const LoadedModel& m, const Hardware& hw, const planner::PlanReport& r, int64_t ctx,
                const std::string& source, const std::vector<std::string>& warnings) {
  const planner::PlannerOptions& o = hw.options;
  fmt::print("model:    {}\n          {:.1f}B parameters, {} of weights; context {} tokens\n",
             m.description, m.parameters / 1e9, planner::format_bytes(m.total_bytes), ctx);
  if (o.gpu_budgets.empty()) {
    fmt::print("hardware: no GPU");
  } else {
    fmt::print("hardware: {} x {} ({:.0f} GB/s, {:.0f} TFLOP/s sustained)", o.gpu_budgets.size(),
               hw.gpu_name, o.gpu.bandwidth / 1e9, o.gpu.flops / 1e12);
  }
  fmt::print("; CPU {:.0f} GB/s ({}), {:.1f} TFLOP/s\nplan:     {}\n\n", o.cpu.bandwidth / 1e9,
             hw.cpu_bandwidth_source, o.cpu.flops / 1e12, source);
  fmt::print("{:<22} {:<7} {:>7} {:>11} {:>12}  {}\n", "group", "device", "modules", "bytes",
             "decode/token", "why (first module)");
  for (const planner::GroupEstimate& g : r.groups) {
    fmt::print("{:<22} {:<7} {:>7} {:>11} {:>9.3f} ms  {}\n", g.name, g.device.name(), g.modules,
               planner::format_bytes(static_cast<double>(g.bytes)), g.decode_seconds * 1e3, g.why);
  }
  fmt::print("\ndevices:\n");
  for (const planner::DeviceUsage& u : r.devices) {
    fmt::print("  {:<7} {:>10} of {:<10} (weights {}, KV cache {}, reserve {})\n", u.device.name(),
               planner::format_bytes(static_cast<double>(u.total())),
               u.budget ? planner::format_bytes(static_cast<double>(u.budget)) : "unlimited",
               planner::format_bytes(static_cast<double>(u.weights)),
               planner::format_bytes(static_cast<double>(u.kv_cache)),
               planner::format_bytes(static_cast<double>(u.reserve)));
  }
  fmt::print(
      "\npredicted: decode {:.1f} tok/s ({:.1f} ms a token), prefill {:.0f} tok/s "
      "(batches of {})\n",
      r.predicted_decode_tok_s, r.decode_seconds_per_token * 1e3, r.predicted_prefill_tok_s,
      o.prefill_batch);
  for (const std::string& w : warnings) fmt::print(stderr, "warning: {}\n", w);
  for (const std::string& p : r.problems) fmt::print(stderr, "does not fit: {}\n", p);
}

void print_json(const LoadedModel& m, const Hardware& hw, const planner::PlanReport& r,
                const std::vector<planner::ModuleCost>& costs, int64_t ctx,
                const std::string& source, const std::vector<std::string>& warnings) {
  JsonWriter json(stdout);
  json.begin_object();
  json.field("model", m.description);
  json.field("parameters", m.parameters);
  json.field("weight_bytes", m.total_bytes);
  json.field("ctx", ctx);
  json.field("plan_source", source);
  json.key("hardware");
  json.begin_object();
  json.field("gpu", hw.gpu_name);
  json.field("gpu_count", static_cast<int64_t>(hw.options.gpu_budgets.size()));
  json.field("gpu_bandwidth_bytes_per_s", hw.options.gpu.bandwidth);
  json.field("gpu_flops", hw.options.gpu.flops);
  json.field("cpu_bandwidth_bytes_per_s", hw.options.cpu.bandwidth);
  json.field("cpu_flops", hw.options.cpu.flops);
  json.end_object();
  json.key("devices");
  json.begin_array();
  for (const planner::DeviceUsage& u : r.devices) {
    json.begin_object();
    json.field("name", u.device.name());
    json.field("bytes", u.total());
    json.field("budget_bytes", u.budget);
    json.field("weight_bytes", u.weights);
    json.field("kv_cache_bytes", u.kv_cache);
    json.field("reserve_bytes", u.reserve);
    json.end_object();
  }
  json.end_array();
  json.field("predicted_decode_tok_s", r.predicted_decode_tok_s);
  json.field("predicted_prefill_tok_s", r.predicted_prefill_tok_s);
  json.field("decode_seconds_per_token", r.decode_seconds_per_token);
  json.field("fits", r.fits);
  json.key("problems");
  json.begin_array();
  for (const std::string& p : r.problems) json.value(p);
  json.end_array();
  json.key("warnings");
  json.begin_array();
  for (const std::string& w : warnings) json.value(w);
  json.end_array();
  json.key("groups");
  json.begin_array();
  for (const planner::GroupEstimate& g : r.groups) {
    json.begin_object();
    json.field("name", g.name);
    json.field("device", g.device.name());
    json.field("modules", static_cast<uint64_t>(g.modules));
    json.field("bytes", g.bytes);
    json.field("decode_seconds_per_token", g.decode_seconds);
    json.field("why", g.why);
    json.end_object();
  }
  json.end_array();
  json.key("modules");
  json.begin_array();
  for (size_t i = 0; i < r.plan.placements.size(); ++i) {
    const exec::Placement& p = r.plan.placements[i];
    json.begin_object();
    json.field("name", p.module);
    if (i < costs.size() && costs[i].name == p.module) {
      json.field("kind", model::module_kind_name(costs[i].kind));
      json.field("bytes", costs[i].weight_bytes + costs[i].kv_bytes);
    }
    json.field("impl", p.impl);
    json.field("generate_device", p.generate_device.name());
    json.field("prefill_device", p.prefill_device.name());
    if (!p.options.empty()) {
      json.key("options");
      json.begin_object();
      for (const auto& [k, v] : p.options) json.field(k, v);
      json.end_object();
    }
    json.field("why", p.why);
    json.end_object();
  }
  json.end_array();
  json.end_object();
  std::fputc('\n', stdout);
}

}  // namespace

int run_plan(const std::vector<std::string>& argv_in) {
  std::vector<std::string> argv = argv_in;
  for (std::string& a : argv) {
    if (a == "-m") a = "--model";
  }
  Args args("plan", argv, {"json", "help", "no-gpu-experts"},
            {"model", "arch-preset", "quant", "gpu-mem", "gpus", "dram", "ctx", "gpu", "gpu-bw",
             "gpu-tflops", "cpu-bw", "cpu-tflops", "gpu-reserve", "prefill-batch", "routing-stats",
             "rules", "rules-out"});
  if (args.flag("help")) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (args.option("gpu") == "list") {
    for (const planner::GpuPreset& p : planner::gpu_presets()) {
      fmt::print("{:<10} {:>6.0f} GB/s {:>5.0f} TFLOP/s {:>4.0f} GiB\n", p.name, p.bandwidth_gbs,
                 p.tflops, p.memory_gib);
    }
    return 0;
  }
  try {
    args.positional({});
  } catch (const Error&) {
    args.fail("unexpected argument; give the model with -m MODEL.gguf or --arch-preset NAME");
  }
  if (std::optional<std::string> out = args.option("rules-out")) {
    // Checked before any work: the inputs are the model, the rule file and the statistics.
    std::vector<std::string> inputs;
    for (const char* input : {"m", "model", "rules", "routing-stats"}) {
      if (std::optional<std::string> path = args.option(input)) inputs.push_back(*path);
    }
    core::refuse_output_path(*out, inputs, "--rules-out");
  }
  const LoadedModel m = load_model(args);
  if (std::optional<std::string> out = args.option("rules-out"); out && m.file) {
    core::refuse_output_path(*out, m.file->paths(), "--rules-out");  // every part of a split file
  }
  Hardware hw = describe_hardware(args);
  if (hw.routing) {
    // Counts for a layer without routed experts would be ignored: a file for another model.
    for (const auto& [layer, counts] : hw.routing->counts) {
      if (layer < 0 || layer >= m.config.n_layer || !m.config.is_moe_layer(layer)) {
        throw Error(
            ErrorCode::kInvalidFile,
            fmt::format("{}: layer {} has no routed experts in this model ({} layers, "
                        "the first {} dense): statistics for another model?",
                        hw.routing->source, layer, m.config.n_layer,
                        m.config.n_expert > 0 ? m.config.n_layer_dense_lead : m.config.n_layer));
      }
    }
    hw.options.routing = &*hw.routing;
  }

  planner::CostOptions cost_options;
  cost_options.ctx = args.int_option("ctx", 4096, 1, int64_t{1} << 24);
  cost_options.prefill_batch = hw.options.prefill_batch;
  const std::vector<planner::ModuleCost> costs =
      planner::compute_costs(m.modules, m.config, cost_options);

  planner::PlanReport report = planner::plan_placement(costs, hw.options);
  std::string source = "planner (decode time saved per GPU byte, greedy)";
  std::vector<std::string> warnings;
  if (std::optional<std::string> rules_path = args.option("rules")) {
    const rules::RuleSet set = rules::load_rules(*rules_path);
    std::vector<registry::Device> available{registry::Device::cpu()};
    for (size_t i = 0; i < hw.options.gpu_budgets.size(); ++i) {
      available.push_back(registry::Device::cuda(static_cast<int>(i)));
    }
    PlanningRegistry planning;
    planning_registry(m.file.has_value(), planning);
    const registry::OperatorRegistry& registry = planning.registry;
    exec::Plan plan;
    try {
      const exec::Plan unmatched = plan_unmatched(set, m, costs, hw.options, registry, available);
      plan =
          rules::apply_rules(set, m.modules, m.config, registry, available, &warnings, &unmatched);
    } catch (const Error& e) {
      // The plan's GPUs are the ones the options describe, not this machine's.
      if (std::string_view(e.what()).find("does not exist here") == std::string_view::npos) throw;
      throw Error(e.code(), fmt::format("{} — ktx plan plans for the GPUs --gpu-mem lists "
                                        "(e.g. --gpu-mem 24G,24G for two)",
                                        e.what()));
    }
    report = planner::evaluate_plan(plan, costs, hw.options);
    source = fmt::format("rules {} (modules no rule matches: the planner's choice)", *rules_path);
  }
  if (std::optional<std::string> out = args.option("rules-out")) {
    core::write_file_atomically(
        *out, rules::plan_to_rules_yaml(report.plan, fmt::format("{}\nwritten by ktx plan from: {}",
                                                                 m.description, source)));
  }
  if (args.flag("json")) {
    print_json(m, hw, report, costs, cost_options.ctx, source, warnings);
  } else {
    print_text(m, hw, report, cost_options.ctx, source, warnings);
  }
  return report.fits ? 0 : 1;
}

}  // namespace ktx::cli
