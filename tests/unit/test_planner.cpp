// The placement planner: decisions on small synthetic cost lists whose answers are worked out by
// hand in the comments, the time model (overlap of shared and routed experts, device switches),
// routing statistics, the published DeepSeek-V2/V3 arithmetic from the presets, sizes, and the
// `ktx plan` command's JSON and rule-file output.
#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/error.h"
#include "model_test_files.h"
#include "ops/cpu/repacked.h"
#include "planner/arch_preset.h"
#include "planner/costs.h"
#include "planner/hardware.h"
#include "planner/planner.h"
#include "planner/routing_stats.h"
#include "rules/rules.h"

// The CLI command is compiled into this test so its JSON and files are checked end to end.
#include "../../tools/ktx/plan_command.cpp"

#ifndef KTX_SOURCE_DIR
#define KTX_SOURCE_DIR "."
#endif

namespace {

using ktx::model::ModuleKind;
using ktx::planner::ModuleCost;
using ktx::planner::PlannerOptions;
using ktx::registry::Device;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

ModuleCost cost(std::string name, ModuleKind kind, int64_t layer, uint64_t bytes, double read,
                double flops = 0) {
  ModuleCost c;
  c.name = std::move(name);
  c.kind = kind;
  c.layer = layer;
  c.weight_bytes = bytes;
  c.weight_bytes_read = read;
  c.flops = flops;
  c.prefill_flops = flops;
  return c;
}

// Toy units: the GPU reads 1000 B/s, the CPU 100 B/s; FLOP/s 1e6 and 1000; a switch costs 1 ms.
//   embedding  500 B, reads 5 a token         saved 0.05 - 0.005 = 0.045 s  -> 9e-5 s/B
//   attention  100 B + 20 B KV, 2000 FLOP     cpu max(1.2, 2.0) = 2.0, gpu 0.12 -> 1.88/120
//   norm        10 B                          saved 0.09 -> 9e-3 s/B
//   experts   1000 B, 10 experts, 1 used: reads 100       saved 0.9 -> 9e-4 s/B
//   lm_head    200 B                          saved 1.8 -> 9e-3 s/B
// so the GPU takes attention first, then norm and lm_head, then experts, then the embedding.
std::vector<ModuleCost> toy_costs() {
  std::vector<ModuleCost> c;
  c.push_back(cost("model.embed_tokens", ModuleKind::kEmbedding, -1, 500, 5));
  c.back().rows = 100;
  c.push_back(cost("model.layers.0.self_attn", ModuleKind::kMlaAttention, 0, 100, 100, 2000));
  c.back().kv_bytes = 20;
  c.back().kv_bytes_read = 20;
  c.push_back(cost("model.layers.0.input_layernorm", ModuleKind::kRmsNorm, 0, 10, 10));
  c.push_back(cost("model.layers.0.mlp.experts", ModuleKind::kExperts, 0, 1000, 100));
  c.back().n_expert = 10;
  c.back().n_expert_used = 1;
  c.back().bytes_per_expert = 100;
  c.push_back(cost("lm_head", ModuleKind::kLmHead, -1, 200, 200));
  return c;
}

PlannerOptions toy_options(std::vector<uint64_t> budgets) {
  PlannerOptions o;
  o.gpu_budgets = std::move(budgets);
  o.gpu = {1000, 1e6};
  o.cpu = {100, 1000};
  o.gpu_reserve = 0;
  o.switch_seconds = 1e-3;
  o.prefill_batch = 1;
  return o;
}

const ktx::exec::Placement& placement(const ktx::planner::PlanReport& r, const std::string& m) {
  const ktx::exec::Placement* p = r.plan.find(m);
  REQUIRE(p != nullptr);
  return *p;
}

std::string device_of(const ktx::planner::PlanReport& r, const std::string& m) {
  return placement(r, m).generate_device.name();
}

const ktx::planner::DeviceUsage& usage(const ktx::planner::PlanReport& r, const Device& d) {
  for (const auto& u : r.devices) {
    if (u.device == d) return u;
  }
  FAIL("no usage for " << d.name());
  return r.devices.front();
}

}  // namespace

TEST_CASE("planner: the GPU takes modules by decode time saved per byte while they fit",
          "[planner]") {
  const auto costs = toy_costs();
  SECTION("200 B: attention (120) and the norm (10); lm_head (200) does not fit in 70") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({200}));
    CHECK(device_of(r, "model.layers.0.self_attn") == "cuda:0");
    CHECK(placement(r, "model.layers.0.self_attn").impl == "cuda.mla_attention");
    CHECK(device_of(r, "model.layers.0.input_layernorm") == "cuda:0");
    CHECK(device_of(r, "lm_head") == "cpu");
    CHECK(placement(r, "lm_head").impl == "cpu.lm_head");
    CHECK(device_of(r, "model.layers.0.mlp.experts") == "cpu");
    CHECK(device_of(r, "model.embed_tokens") == "cpu");
    CHECK_THAT(placement(r, "model.layers.0.self_attn").why,
               Catch::Matchers::StartsWith("cuda:0: #1 of 5 by decode time saved per GPU byte"));
    CHECK_THAT(placement(r, "lm_head").why,
               Catch::Matchers::StartsWith("cpu: cuda:0 had 70 B left, needs 200 B"));
    // Decode: embedding 5/100 + attention 120/1000 + norm 10/1000 + experts 100/100 +
    // lm_head 200/100, and 2 switches (cpu -> gpu at attention, gpu -> cpu at experts).
    CHECK(r.decode_seconds_per_token == Approx(0.05 + 0.12 + 0.01 + 1.0 + 2.0 + 0.002));
    CHECK(usage(r, Device::cuda(0)).weights == 110);
    CHECK(usage(r, Device::cuda(0)).kv_cache == 20);
    CHECK(usage(r, Device::cpu()).weights == 1700);
    CHECK(r.fits);
  }
  SECTION("400 B: lm_head joins (330 used); the experts (1000) do not fit in 70") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({400}));
    CHECK(device_of(r, "lm_head") == "cuda:0");
    CHECK(device_of(r, "model.layers.0.mlp.experts") == "cpu");
    CHECK(usage(r, Device::cuda(0)).total() == 330);
    // 3 switches: cpu (embedding) -> gpu -> cpu (experts) -> gpu (lm_head).
    CHECK(r.decode_seconds_per_token == Approx(0.05 + 0.12 + 0.01 + 1.0 + 0.2 + 0.003));
    CHECK(r.predicted_decode_tok_s == Approx(1.0 / 1.383));
  }
  SECTION("1400 B: the routed experts take the spare memory before the embedding") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({1400}));
    CHECK(device_of(r, "model.layers.0.mlp.experts") == "cuda:0");
    CHECK(placement(r, "model.layers.0.mlp.experts").impl == "cuda.experts");
    CHECK(device_of(r, "model.embed_tokens") == "cpu");
    CHECK(usage(r, Device::cuda(0)).total() == 1330);
    CHECK(r.decode_seconds_per_token == Approx(0.05 + 0.12 + 0.01 + 0.1 + 0.2 + 0.001));
  }
  SECTION("1830 B: everything") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({1830}));
    for (const auto& p : r.plan.placements) CHECK(p.generate_device == Device::cuda(0));
    CHECK(r.decode_seconds_per_token == Approx(0.005 + 0.12 + 0.01 + 0.1 + 0.2));
  }
  SECTION("the reserve comes off the budget first") {
    auto o = toy_options({400});
    o.gpu_reserve = 100;  // 300 left: attention, norm; lm_head (200) no longer fits in 170
    const auto r = ktx::planner::plan_placement(costs, o);
    CHECK(device_of(r, "lm_head") == "cpu");
    CHECK(usage(r, Device::cuda(0)).total() == 100 + 130);
  }
  SECTION("no GPU: everything on the CPU") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({}));
    for (const auto& p : r.plan.placements) {
      CHECK(p.generate_device == Device::cpu());
      CHECK(p.why == "cpu: no GPU given");
    }
    REQUIRE(r.devices.size() == 1);
    CHECK(r.devices[0].total() == 1830);
  }
  SECTION("routed experts can be kept off the GPU") {
    auto o = toy_options({1830});
    o.experts_to_gpu = false;
    const auto r = ktx::planner::plan_placement(costs, o);
    CHECK(device_of(r, "model.layers.0.mlp.experts") == "cpu");
    CHECK(device_of(r, "model.embed_tokens") == "cuda:0");
    CHECK_THAT(placement(r, "model.layers.0.mlp.experts").why,
               Catch::Matchers::StartsWith("cpu: routed experts stay on the CPU"));
  }
}

TEST_CASE("planner: a plan that needs more memory than given does not fit, and says why",
          "[planner]") {
  auto o = toy_options({400});
  o.dram_budget = 1000;  // the CPU keeps experts (1000) and the embedding (500)
  const auto r = ktx::planner::plan_placement(toy_costs(), o);
  CHECK_FALSE(r.fits);
  REQUIRE(r.problems.size() == 1);
  CHECK(r.problems[0] ==
        "cpu needs 1.5 KiB (weights 1.5 KiB, KV cache 0 B, reserve 0 B) but has 1000 B");
}

TEST_CASE("planner: GPUs take contiguous layer ranges in proportion to their memory", "[planner]") {
  std::vector<ModuleCost> costs;
  costs.push_back(cost("model.embed_tokens", ModuleKind::kEmbedding, -1, 10, 10));
  for (int l = 0; l < 4; ++l) {
    costs.push_back(
        cost(fmt::format("model.layers.{}.self_attn", l), ModuleKind::kMlaAttention, l, 10, 10));
  }
  costs.push_back(cost("lm_head", ModuleKind::kLmHead, -1, 10, 10));
  SECTION("equal GPUs: layers 0-1 and 2-3") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({1000, 1000}));
    CHECK(device_of(r, "model.embed_tokens") == "cuda:0");
    CHECK(device_of(r, "model.layers.1.self_attn") == "cuda:0");
    CHECK(device_of(r, "model.layers.2.self_attn") == "cuda:1");
    CHECK(device_of(r, "lm_head") == "cuda:1");
  }
  SECTION("a GPU with three times the memory takes three times the layers") {
    const auto r = ktx::planner::plan_placement(costs, toy_options({3000, 1000}));
    CHECK(device_of(r, "model.layers.2.self_attn") == "cuda:0");
    CHECK(device_of(r, "model.layers.3.self_attn") == "cuda:1");
  }
  SECTION("a module goes to the CPU when its own GPU is full, not to another GPU") {
    costs[1].weight_bytes = costs[2].weight_bytes = 600;  // layers 0 and 1: home cuda:0
    costs[1].weight_bytes_read = costs[2].weight_bytes_read = 600;
    const auto r = ktx::planner::plan_placement(costs, toy_options({1000, 1000}));
    CHECK(device_of(r, "model.layers.0.self_attn") == "cuda:0");
    CHECK(device_of(r, "model.layers.1.self_attn") == "cpu");  // 390 B left on cuda:0
    CHECK(usage(r, Device::cuda(1)).weights == 30);
  }
}

TEST_CASE("planner: shared experts on the GPU overlap routed experts on the CPU", "[planner]") {
  std::vector<ModuleCost> costs;
  costs.push_back(cost("model.layers.1.mlp.experts", ModuleKind::kExperts, 1, 1000, 100));
  costs.back().n_expert = 10;
  costs.back().n_expert_used = 1;
  costs.back().bytes_per_expert = 100;
  costs.push_back(cost("model.layers.1.mlp.shared_experts", ModuleKind::kMlp, 1, 300, 300));
  costs.back().shared_experts = true;
  ktx::exec::Plan plan;
  plan.placements.push_back(
      {"model.layers.1.mlp.experts", "cpu.experts", Device::cpu(), Device::cpu(), {}, "test"});
  plan.placements.push_back({"model.layers.1.mlp.shared_experts",
                             "cuda.mlp",
                             Device::cuda(0),
                             Device::cuda(0),
                             {},
                             "test"});
  const auto o = toy_options({10000});
  // CPU: 100 B / 100 = 1.0 s; GPU: 300 B / 1000 = 0.3 s; they run at once; one switch.
  const auto r = ktx::planner::evaluate_plan(plan, costs, o);
  CHECK(r.decode_seconds_per_token == Approx(1.0 + 0.001));
  // On one device they add up.
  plan.placements[1].generate_device = plan.placements[1].prefill_device = Device::cpu();
  const auto serial = ktx::planner::evaluate_plan(plan, costs, o);
  CHECK(serial.decode_seconds_per_token == Approx(1.0 + 3.0));
  // A plan missing a module is refused.
  plan.placements.pop_back();
  CHECK_THROWS_WITH(ktx::planner::evaluate_plan(plan, costs, o),
                    "the plan has no placement for module model.layers.1.mlp.shared_experts");
}

TEST_CASE("planner: with routing statistics the busiest experts take the spare memory",
          "[planner]") {
  std::vector<ModuleCost> costs;
  costs.push_back(cost("model.layers.0.mlp.experts", ModuleKind::kExperts, 0, 400, 100));
  costs.back().n_expert = 4;
  costs.back().n_expert_used = 1;
  costs.back().bytes_per_expert = 100;
  const auto stats = ktx::planner::parse_routing_stats(
      R"({"format": "ktx-routing-stats", "version": 1, "layers": {"0": [10, 70, 10, 10]}})",
      "stats.json");
  auto o = toy_options({150});
  o.routing = &stats;
  // 150 B hold one expert: number 1, chosen by 70% of the tokens.
  const auto r = ktx::planner::plan_placement(costs, o);
  const auto& p = placement(r, "model.layers.0.mlp.experts");
  CHECK(p.impl == "cpu.experts");
  CHECK(p.generate_device == Device::cpu());
  CHECK(p.options.at("gpu_experts") == "1");
  CHECK(p.options.at("gpu_experts_device") == "cuda:0");
  CHECK(p.why ==
        "cpu, with its 1 busiest experts (70.0% of its routing) in spare memory on cuda:0");
  CHECK(usage(r, Device::cuda(0)).weights == 100);
  CHECK(usage(r, Device::cpu()).weights == 300);
  // GPU reads 70% of the 100 B a token (0.07 s), the CPU 30% (0.3 s), at the same time.
  CHECK(r.decode_seconds_per_token == Approx(0.3));

  o.gpu_budgets = {400};  // every expert fits: the whole module moves
  const auto all = ktx::planner::plan_placement(costs, o);
  CHECK(placement(all, "model.layers.0.mlp.experts").impl == "cuda.experts");

  CHECK_THROWS_WITH(stats.shares(0, 8),
                    "stats.json: layer 0 has 4 counts, but the model has 8 experts");
  CHECK(stats.shares(5, 4) == std::vector<double>(4, 0.25));  // absent layers are uniform
}

TEST_CASE("planner: routing statistics files are checked", "[planner]") {
  using ktx::planner::parse_routing_stats;
  CHECK_THROWS_WITH(parse_routing_stats("{\"layers\": {\"1\": [1, -2]}}", "s.json"),
                    "s.json:1: layer 1: counts must be non-negative numbers");
  CHECK_THROWS_WITH(parse_routing_stats("{\"layers\": {\"x\": [1]}}", "s.json"),
                    "s.json:1: layer 'x' is not a layer number");
  CHECK_THROWS_WITH(parse_routing_stats("{\"format\": \"other\"}", "s.json"),
                    "s.json:1: \"format\" must be \"ktx-routing-stats\"");
  CHECK_THROWS_WITH(parse_routing_stats("{\n\"layer\": {}}", "s.json"),
                    Catch::Matchers::StartsWith("s.json:2: unknown key \"layer\""));
  CHECK_THROWS_WITH(parse_routing_stats("{\"layers\": [", "s.json"),
                    Catch::Matchers::StartsWith("s.json:1: not valid JSON"));
}

TEST_CASE("planner: module costs from a module tree", "[planner]") {
  auto m = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2,
                                          ktx::quantize::Preset::Q4_K_M);
  ktx::planner::CostOptions co;
  co.ctx = 4096;
  const auto costs = ktx::planner::compute_costs(m->modules, m->config, co);
  REQUIRE(costs.size() == m->modules.size());
  // 1 embedding + 60 x (2 norms + attention) + 1 dense MLP + 59 x (gate, experts, shared) + 2.
  CHECK(costs.size() == 1 + 60 * 3 + 1 + 59 * 3 + 2);
  for (const ModuleCost& c : costs) {
    INFO(c.name);
    if (c.kind == ModuleKind::kMlaAttention) {
      // MLA caches kv_lora_rank + rope = 576 values per token, f32 (4 bytes) each.
      CHECK(c.kv_bytes == uint64_t{576} * 4 * 4096);
      CHECK(c.kv_bytes_read == Approx(576.0 * 4 * 4096));
    }
    if (c.kind == ModuleKind::kExperts) {
      CHECK(c.n_expert == 160);
      CHECK(c.bytes_per_expert * 160 == c.weight_bytes);
      CHECK(c.weight_bytes_read == Approx(c.weight_bytes * 6.0 / 160.0));
      // 2 FLOPs per weight of the 6 experts used: 3 matrices of 5120 x 1536.
      CHECK(c.flops == Approx(2.0 * 3 * 5120 * 1536 * 6));
    }
    if (c.kind == ModuleKind::kEmbedding) {
      CHECK(c.rows == 102400);
      CHECK(c.weight_bytes_read == Approx(c.weight_bytes / 102400.0));
    }
    if (c.name == "model.layers.1.mlp.shared_experts") CHECK(c.shared_experts);
    if (c.name == "model.layers.0.mlp") CHECK_FALSE(c.shared_experts);
  }
}

TEST_CASE("planner: the DeepSeek presets have the published sizes at Q4_K_M", "[planner]") {
  using ktx::planner::ArchPreset;
  const auto v2 =
      ktx::planner::synthesize_model(ArchPreset::kDeepseekV2, ktx::quantize::Preset::Q4_K_M);
  // 236B parameters; published Q4_K_M files of DeepSeek-V2(-Chat) are about 142.5 GB.
  CHECK(v2->total_parameters() / 1e9 == Approx(235.7).margin(0.5));
  CHECK(v2->total_bytes() / 1e9 == Approx(142.5).margin(1.0));
  const auto v3 =
      ktx::planner::synthesize_model(ArchPreset::kDeepseekV3, ktx::quantize::Preset::Q4_K_M);
  CHECK(v3->total_parameters() / 1e9 == Approx(671).margin(1.0));  // MTP layer not counted
  CHECK(v3->total_bytes() / 1e9 == Approx(404.5).margin(2.0));
  const auto lite =
      ktx::planner::synthesize_model(ArchPreset::kDeepseekV2Lite, ktx::quantize::Preset::Q4_K_M);
  CHECK(lite->total_parameters() / 1e9 == Approx(15.7).margin(0.1));
  CHECK(lite->total_bytes() / 1e9 == Approx(10.4).margin(0.3));
  // BF16: two bytes a weight, F32 norms and routers.
  const auto bf16 = ktx::planner::synthesize_model(ArchPreset::kDeepseekV2Lite, std::nullopt);
  CHECK(bf16->total_bytes() / 1e9 == Approx(31.4).margin(0.2));
  CHECK(ktx::planner::arch_preset_from_name("deepseek-r1") == ArchPreset::kDeepseekV3);
  CHECK_THROWS_WITH(ktx::planner::parse_arch_preset("deepseek-v4"),
                    Catch::Matchers::Contains("unknown architecture preset 'deepseek-v4'"));
}

TEST_CASE("planner: DeepSeek-V2 236B at Q4_K_M fits in 21 GB of GPU + 136 GB of DRAM",
          "[planner]") {
  auto m = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2,
                                          ktx::quantize::Preset::Q4_K_M);
  const auto costs = ktx::planner::compute_costs(m->modules, m->config, {});
  PlannerOptions o;
  o.gpu = ktx::planner::gpu_speed(*ktx::planner::find_gpu_preset("rtx4090"));
  o.cpu = {100e9, 1e12};
  SECTION("KTransformers' split: routed experts in DRAM, everything else on the GPU") {
    o.gpu_budgets = {uint64_t{21} << 30};
    o.dram_budget = 136'000'000'000;
    o.experts_to_gpu = false;
    const auto r = ktx::planner::plan_placement(costs, o);
    CHECK(r.fits);
    for (const auto& p : r.plan.placements) {
      INFO(p.module);
      CHECK(p.generate_device ==
            (p.module.ends_with(".mlp.experts") ? Device::cpu() : Device::cuda(0)));
    }
    const auto& gpu = usage(r, Device::cuda(0));
    const auto& cpu = usage(r, Device::cpu());
    // GPU: 7.4 GiB of attention, shared experts, dense MLP, router, norms, lm_head and the
    // embedding; 540 MiB of latent cache (f32) for 4096 tokens; the 512 MiB reserve.
    CHECK(gpu.weights / kGiB == Approx(7.4).margin(0.1));
    CHECK(gpu.kv_cache == uint64_t{60} * 576 * 4 * 4096);
    CHECK(gpu.total() / kGiB == Approx(8.4).margin(0.1));
    CHECK(gpu.total() <= uint64_t{21} << 30);
    // DRAM: the 59 layers of routed experts, 125.4 GiB = 134.7 GB.
    CHECK(cpu.weights / kGiB == Approx(125.4).margin(0.1));
    CHECK(cpu.total() <= 136'000'000'000);
    // Decode: 4.97 GiB of experts read a token at 100 GB/s (53.4 ms less the overlap with the
    // GPU's shared experts) + ~10 ms on the GPU.
    CHECK(r.predicted_decode_tok_s == Approx(16.5).margin(0.3));
  }
  SECTION("a 24 GiB card spends what is left on whole layers of routed experts") {
    o.gpu_budgets = {uint64_t{24} << 30};
    o.dram_budget = 136'000'000'000;
    const auto r = ktx::planner::plan_placement(costs, o);
    CHECK(r.fits);
    const auto& gpu = usage(r, Device::cuda(0));
    CHECK(gpu.total() <= uint64_t{24} << 30);
    size_t gpu_layers = 0;
    uint64_t smallest_cpu_layer = UINT64_MAX;
    for (size_t i = 0; i < costs.size(); ++i) {
      if (costs[i].kind != ModuleKind::kExperts) continue;
      if (r.plan.placements[i].generate_device == Device::cuda(0)) {
        ++gpu_layers;
      } else {
        smallest_cpu_layer = std::min(smallest_cpu_layer, costs[i].weight_bytes);
      }
    }
    // (24 GiB - 8.1 GiB) / 2.0-2.3 GiB a layer: 7 layers, and no layer left on the CPU would fit.
    CHECK(gpu_layers == 7);
    CHECK(gpu.total() + smallest_cpu_layer > gpu.budget);
    CHECK(r.predicted_decode_tok_s > 17.5);
  }
}

namespace {

// Runs `ktx plan ARGS` in-process; returns what it printed on stdout, and on stderr in `err`.
std::string run_plan_command(const std::vector<std::string>& args, int* rc,
                             std::string* err = nullptr) {
  struct Capture {
    char path[32] = "/tmp/ktx_plan_test_XXXXXX";  // declared first: initialised first
    int fd, saved;
    explicit Capture(int target) : fd(mkstemp(path)), saved(dup(target)) {
      std::fflush(target == 1 ? stdout : stderr);
      dup2(fd, target);
    }
    std::string finish(int target) {
      std::fflush(target == 1 ? stdout : stderr);
      dup2(saved, target);
      close(saved);
      close(fd);
      std::ifstream in(path);
      std::stringstream text;
      text << in.rdbuf();
      unlink(path);
      return text.str();
    }
  };
  Capture out(1), error(2);
  try {
    *rc = ktx::cli::run_plan(args);
  } catch (...) {
    out.finish(1);
    error.finish(2);
    throw;
  }
  const std::string text = out.finish(1);
  const std::string error_text = error.finish(2);
  if (err != nullptr) *err = error_text;
  return text;
}

}  // namespace

TEST_CASE("planner: ktx plan --json prints devices and the predicted speed", "[planner][cli]") {
  int rc = -1;
  const std::string out =
      run_plan_command({"--arch-preset", "deepseek-v2", "--quant", "Q4_K_M", "--gpu-mem", "24G",
                        "--dram", "136G", "--cpu-bw", "100", "--cpu-tflops", "1", "--json"},
                       &rc);
  CHECK(rc == 0);
  const YAML::Node doc = YAML::Load(out);  // JSON is YAML
  REQUIRE(doc.IsMap());
  REQUIRE(doc["devices"].IsSequence());
  REQUIRE(doc["devices"].size() == 2);
  CHECK(doc["devices"][0]["name"].as<std::string>() == "cuda:0");
  CHECK(doc["devices"][1]["name"].as<std::string>() == "cpu");
  CHECK(doc["devices"][0]["bytes"].as<uint64_t>() <= uint64_t{24} << 30);
  CHECK(doc["devices"][1]["bytes"].as<uint64_t>() > uint64_t{100} << 30);
  CHECK(doc["predicted_decode_tok_s"].as<double>() > 10);
  CHECK(doc["predicted_prefill_tok_s"].as<double>() > 0);
  CHECK(doc["fits"].as<bool>());
  CHECK(doc["modules"].size() == 1 + 60 * 3 + 1 + 59 * 3 + 2);
  CHECK(doc["modules"][1]["name"].as<std::string>() == "model.layers.0.input_layernorm");
  CHECK(doc["modules"][1]["impl"].as<std::string>() == "cuda.rms_norm");
  CHECK(doc["groups"].size() >= 8);
}

TEST_CASE("planner: ktx plan --rules evaluates a rule file and --rules-out writes one",
          "[planner][cli]") {
  const std::string rules_out = "/tmp/ktx_plan_test_rules_out.yaml";
  int rc = -1;
  const std::string out = run_plan_command(
      {"--arch-preset", "deepseek-v2", "--gpu-mem", "24G", "--dram", "136G", "--cpu-bw", "100",
       "--cpu-tflops", "1", "--rules",
       std::string(KTX_SOURCE_DIR) + "/rules/deepseek-v2-gpu-cpu.yaml", "--rules-out", rules_out},
      &rc);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Matchers::Contains("routed experts"));
  CHECK_THAT(out, Catch::Matchers::Contains("predicted: decode"));
  CHECK_THAT(out, Catch::Matchers::Contains("deepseek-v2-gpu-cpu.yaml:10 matched"));
  const auto set = ktx::rules::load_rules(rules_out);
  CHECK(set.rules.size() == 10);
  std::remove(rules_out.c_str());

  // Too little DRAM: printed, and the exit code says it does not fit.
  run_plan_command({"--arch-preset", "deepseek-v2", "--gpu-mem", "24G", "--dram", "64G", "--cpu-bw",
                    "100", "--no-gpu-experts"},
                   &rc);
  CHECK(rc == 1);
  CHECK_THROWS_WITH(run_plan_command({"--arch-preset", "deepseek-v9"}, &rc),
                    Catch::Matchers::Contains("unknown architecture preset"));
  CHECK_THROWS_WITH(run_plan_command({"--arch-preset", "deepseek-v2", "--gpu-mem", "24X"}, &rc),
                    "--gpu-mem: '24X' is not a size (24G, 512M, 136GB, ...)");
  // 0 is not "unlimited", a speed must be finite, and --gpus 0 does not drop --gpu-mem's GPU.
  CHECK_THROWS_WITH(run_plan_command({"--arch-preset", "deepseek-v2", "--dram", "0"}, &rc),
                    Catch::Matchers::StartsWith("--dram is 0"));
  CHECK_THROWS_WITH(run_plan_command({"--arch-preset", "deepseek-v2", "--gpu-mem", "0"}, &rc),
                    Catch::Matchers::StartsWith("--gpu-mem is 0"));
  for (const char* speed : {"inf", "nan", "1e308", "1e-300", "-5"}) {
    CHECK_THROWS_WITH(
        run_plan_command({"--arch-preset", "deepseek-v2", "--dram", "1T", "--cpu-bw", speed}, &rc),
        Catch::Matchers::StartsWith("--cpu-bw must be a number from 1e-6 to 1e9"));
  }
  CHECK_THROWS_WITH(
      run_plan_command({"--arch-preset", "deepseek-v2", "--gpus", "0", "--gpu-mem", "24G"}, &rc),
      Catch::Matchers::StartsWith("--gpus 0 leaves out"));
}

TEST_CASE("planner: modules no rule matches are planned for the memory the rules leave",
          "[planner][cli]") {
  // Attention on the GPU and every routed expert on the CPU by rule; nothing says where the
  // embedding goes. Planned for the whole model, the planner would have filled the GPU with
  // expert layers, left the embedding no room, and said so, though the rules leave 16 GiB free.
  const std::string rules = "/tmp/ktx_plan_test_unmatched.yaml";
  {
    std::ofstream f(rules);
    f << "- match: {kind: mla_attention}\n  replace: {device: cuda:0}\n"
         "- match: {kind: experts}\n  replace: {device: cpu}\n";
  }
  int rc = -1;
  const std::string out =
      run_plan_command({"--arch-preset", "deepseek-v2", "--quant", "Q4_K_M", "--gpu-mem", "24G",
                        "--dram", "512G", "--cpu-bw", "100", "--cpu-tflops", "1", "--rules", rules},
                       &rc);
  std::remove(rules.c_str());
  CHECK(rc == 0);
  std::istringstream lines(out);
  std::string line, embedding;
  while (std::getline(lines, line)) {
    if (line.rfind("embedding", 0) == 0) embedding = line;
  }
  INFO(out);
  CHECK_THAT(embedding, Catch::Matchers::Contains("cuda:0"));
  CHECK_THAT(out, !Catch::Matchers::Contains("had"));
}

TEST_CASE("planner: sizes", "[planner]") {
  using ktx::planner::parse_size;
  CHECK(parse_size("24G") == uint64_t{24} << 30);
  CHECK(parse_size("24GiB") == uint64_t{24} << 30);
  CHECK(parse_size("136GB") == uint64_t{136'000'000'000});
  CHECK(parse_size("512M") == uint64_t{512} << 20);
  CHECK(parse_size("1.5T") == uint64_t{3} << 39);
  CHECK(parse_size("1000") == uint64_t{1000});
  CHECK_FALSE(parse_size("G").has_value());
  CHECK_FALSE(parse_size("24X").has_value());
  CHECK_FALSE(parse_size("-1G").has_value());
  CHECK(ktx::planner::format_bytes(1536) == "1.5 KiB");
}

TEST_CASE("planner: synthetic models have the module tree build_module_tree gives a real file",
          "[planner]") {
  for (auto spec : {ktx::model::test::TinyModelSpec::lite(), ktx::model::test::TinyModelSpec::v2(),
                    ktx::model::test::TinyModelSpec::v3()}) {
    ktx::model::test::TempDir dir;
    const std::string path = dir.file("tiny.gguf");
    ktx::model::test::write_tiny_model(spec, path);
    const auto file = ktx::gguf::File::open(path);
    const auto config = ktx::model::ModelConfig::from_gguf(file);
    const auto tree = ktx::model::build_module_tree(config, file);
    const auto synthetic = ktx::planner::synthesize_deepseek2(config, std::nullopt, "same");
    REQUIRE(synthetic->modules.size() == tree.size());
    for (size_t i = 0; i < tree.size(); ++i) {
      INFO(tree[i].name);
      const auto& s = synthetic->modules[i];
      CHECK(s.name == tree[i].name);
      CHECK(s.kind == tree[i].kind);
      CHECK(s.layer == tree[i].layer);
      REQUIRE(s.weights.size() == tree[i].weights.size());
      for (const auto& [role, t] : tree[i].weights) {
        const ktx::gguf::TensorInfo* mine = s.find_weight(role);
        REQUIRE(mine != nullptr);
        CHECK(mine->name == t->name);
        CHECK(mine->shape == t->shape);
      }
    }
    // Costs come out of a real tree as well.
    CHECK(ktx::planner::compute_costs(tree, config).size() == tree.size());
  }
}

TEST_CASE("planner: ktx plan -m plans a model file, checking rules with the CPU operators",
          "[planner][cli]") {
  ktx::model::test::TempDir dir;
  const std::string path = dir.file("tiny.gguf");
  ktx::model::test::write_tiny_model(ktx::model::test::TinyModelSpec::v2(), path);
  int rc = -1;
  const std::string out =
      run_plan_command({"-m", path, "--gpu-mem", "1G", "--dram", "1G", "--cpu-bw", "50",
                        "--cpu-tflops", "1", "--ctx", "256", "--json"},
                       &rc);
  CHECK(rc == 0);
  const YAML::Node doc = YAML::Load(out);
  REQUIRE(doc["modules"].IsSequence());
  const auto file = ktx::gguf::File::open(path);
  const auto config = ktx::model::ModelConfig::from_gguf(file);
  CHECK(doc["modules"].size() == ktx::model::build_module_tree(config, file).size());
  CHECK(doc["devices"][0]["name"].as<std::string>() == "cuda:0");
  // A tiny model fits on the GPU whole (the embedding included: there is room).
  for (const auto& m : doc["modules"]) CHECK(m["generate_device"].as<std::string>() == "cuda:0");

  const std::string cpu_out = run_plan_command(
      {"-m", path, "--dram", "1G", "--cpu-bw", "50", "--cpu-tflops", "1", "--rules",
       std::string(KTX_SOURCE_DIR) + "/rules/deepseek-v2-cpu.yaml", "--json"},
      &rc);
  CHECK(rc == 0);
  const YAML::Node cpu_doc = YAML::Load(cpu_out);
  REQUIRE(cpu_doc["devices"].size() == 1);
  CHECK(cpu_doc["devices"][0]["name"].as<std::string>() == "cpu");
  CHECK(cpu_doc["warnings"].size() == 0);
}

TEST_CASE("planner: option repack counts the operators' copies in the CPU's memory",
          "[planner][cli][row_tiles]") {
  const std::string rules = std::string(KTX_SOURCE_DIR) + "/rules/deepseek-v2-cpu";
  auto cpu_bytes = [](const std::string& file) {
    int rc = -1;
    const std::string out =
        run_plan_command({"--arch-preset", "deepseek-v2-lite", "--quant", "Q4_K_M", "--cpu-bw",
                          "50", "--cpu-tflops", "1", "--rules", file, "--json"},
                         &rc);
    REQUIRE(rc == 0);
    const YAML::Node doc = YAML::Load(out);
    REQUIRE(doc["devices"].size() == 1);
    return doc["devices"][0]["bytes"].as<uint64_t>();
  };
  const uint64_t plain = cpu_bytes(rules + ".yaml"), repacked = cpu_bytes(rules + "-repack.yaml");
  // What the operators would copy (the matrices RepackedTensor accepts on this CPU), and what of
  // it adds to the memory: the copies whose file pages are not handed back.
  auto model = ktx::planner::synthesize_model(ktx::planner::ArchPreset::kDeepseekV2Lite,
                                              ktx::quantize::Preset::Q4_K_M);
  uint64_t copies = 0, added = 0;
  for (const ktx::model::ModuleDesc& m : model->modules) {
    copies += ktx::ops::cpu::repacked_bytes(m);
    added += ktx::ops::cpu::repack_added_bytes(m);
  }
  CHECK(repacked == plain + added);
  CHECK(added <= copies);
  if (ktx::kernels::cpu::vec_dot_tiles_fn(ktx::TensorType::Q4_K) != nullptr) {
    // V2-Lite Q4_K_M: most of the routed experts (Q4_K gate/up; Q5_0 or Q8_0 down).
    CHECK(copies > uint64_t{7} << 30);
    if (ktx::kernels::cpu::gemm_tiles_fn(ktx::TensorType::Q4_K) != nullptr) {
      // Q4_K, Q5_0 and Q8_0 copies replace their file pages: at most the Q6_K ones (AMD) add.
      CHECK(copies - added > uint64_t{7} << 30);
    }
  } else {
    CHECK(copies == 0);  // no tile kernels: nothing is copied
  }
}
