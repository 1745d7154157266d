// Backend modules: the reference backend (libktx-backend-ref.so) loads, registers ref.* and gives
// the golden models' logits through a rule file that puts every module on it; broken modules
// (tests/backends/) are each refused with their own message while ktx carries on.
#include <fmt/format.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "model/module_tree.h"
#include "registry/backend_loader.h"
#include "runtime/model.h"
#include "runtime/session.h"

namespace fs = std::filesystem;
using ktx::registry::BackendLoadOptions;
using ktx::registry::BackendSet;
using ktx::registry::OperatorRegistry;
using ktx::runtime::Model;
using ktx::runtime::ModelOptions;
using ktx::runtime::Session;

namespace {

const std::vector<int32_t> kTokens = {1, 17, 42, 60, 5, 17, 33};

std::string golden(const std::string& name, const char* ext = ".gguf") {
  return std::string(KTX_SOURCE_DIR) + "/tests/data/golden/" + name + ext;
}

std::string test_module(const std::string& name) {
  return std::string(KTX_TEST_BACKEND_DIR) + "/libktx-backend-" + name + ".so";
}

// Only the given files: no directory search, no KTX_BACKEND_PATH.
BackendSet load_only(OperatorRegistry& registry, std::vector<std::string> paths) {
  return ktx::registry::load_backends(registry, BackendLoadOptions{std::move(paths), false});
}

// A float32 .npy file (the golden logits): little-endian '<f4', C order.
std::vector<float> read_npy(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  char magic[8];
  in.read(magic, 8);
  REQUIRE(std::memcmp(magic, "\x93NUMPY", 6) == 0);
  uint32_t header_len = 0;
  if (magic[6] == 1) {
    uint16_t n = 0;
    in.read(reinterpret_cast<char*>(&n), 2);
    header_len = n;
  } else {
    in.read(reinterpret_cast<char*>(&header_len), 4);
  }
  std::string header(header_len, '\0');
  in.read(header.data(), header_len);
  REQUIRE(header.find("'<f4'") != std::string::npos);
  REQUIRE(header.find("'fortran_order': False") != std::string::npos);
  std::vector<float> data;
  float v;
  while (in.read(reinterpret_cast<char*>(&v), sizeof v)) data.push_back(v);
  return data;
}

float max_diff(const std::vector<float>& a, const std::vector<float>& b) {
  REQUIRE(a.size() == b.size());
  float m = 0.0f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

// A temporary folder, removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("ktx-backends-" + std::to_string(::getpid()) + "-" +
                                        std::to_string(reinterpret_cast<uintptr_t>(this)));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// One rule per module kind, each naming the ref.* operator.
std::string write_ref_rules(const fs::path& dir) {
  const fs::path file = dir / "all-ref.yaml";
  std::ofstream out(file);
  for (const char* kind : {"embedding", "rms_norm", "mla_attention", "gqa_attention", "mlp",
                           "moe_gate", "experts", "lm_head"}) {
    out << "- match: {name: '.*', kind: " << kind << "}\n"
        << "  replace: {op: ref." << kind << ", device: 'ref:0'}\n";
  }
  return file.string();
}

// The only warning of `set`, which must have refused exactly `path`.
std::string only_warning(const BackendSet& set, const std::string& path) {
  const std::vector<std::string> w = set.warnings();
  REQUIRE(w.size() == 1);
  CHECK(w[0].rfind(path + ": ", 0) == 0);  // the message starts with the file
  return w[0];
}

}  // namespace

TEST_CASE("the reference backend module loads and registers its operators", "[backends]") {
  OperatorRegistry registry;
  const BackendSet set = load_only(registry, {KTX_REF_BACKEND});
  REQUIRE(set.warnings().empty());
  REQUIRE(set.backends.size() == 2);
  CHECK(set.backends[0]->name() == "cpu");
  CHECK(set.backends[0]->builtin());

  const ktx::registry::Backend* ref = set.find("ref");
  REQUIRE(ref != nullptr);
  CHECK(ref->path() == KTX_REF_BACKEND);
  CHECK_FALSE(ref->builtin());
  CHECK(ref->score() == 1);
  CHECK(ref->table().api_version == KTX_BACKEND_API_VERSION);
  const std::vector<std::string> expected = {
      "ref.embedding",     "ref.experts", "ref.gqa_attention", "ref.lm_head",
      "ref.mla_attention", "ref.mlp",     "ref.moe_gate",      "ref.rms_norm"};
  CHECK(ref->operators() == expected);
  for (const std::string& name : expected) {
    const ktx::registry::OpImpl* impl = registry.find(name);
    REQUIRE(impl != nullptr);
    CHECK(impl->device_kind == ktx::registry::DeviceKind::kAccelerator);  // on ref:0
    CHECK(name == "ref." + std::string(ktx::model::module_kind_name(impl->kind)));
  }
  CHECK(registry.find("cpu.mla_attention") != nullptr);  // the built-in backend is still there

  REQUIRE(ref->device_count() == 1);
  const ktx::registry::BackendDeviceInfo dev = ref->device(0);
  CHECK(dev.name == "ref:0");
  REQUIRE(dev.total_bytes.has_value());
  CHECK(*dev.total_bytes > 0);
  CHECK(*dev.free_bytes <= *dev.total_bytes);

  // get_proc_address: the one extra, and nothing for an unknown name.
  auto bits = reinterpret_cast<int (*)()>(ref->proc_address("ref_accumulator_bits"));
  REQUIRE(bits != nullptr);
  CHECK(bits() == 64);
  CHECK(ref->proc_address("no_such_extra") == nullptr);

  // Buffers through the dispatcher; no streams, so the stream calls are no-ops.
  std::vector<float> src = {1.5f, -2.0f, 3.25f}, back(3);
  void* buf = ref->alloc(0, sizeof(float) * 3);
  ref->copy(0, buf, src.data(), sizeof(float) * 3, KTX_COPY_HOST_TO_DEVICE);
  ref->copy(0, back.data(), buf, sizeof(float) * 3, KTX_COPY_DEVICE_TO_HOST);
  ref->free(0, buf);
  CHECK(back == src);
  try {
    ref->alloc(0, size_t{1} << 62);
    FAIL("a 4 EiB buffer should not exist");
  } catch (const ktx::Error& e) {
    CHECK(e.code() == ktx::ErrorCode::kOutOfMemory);
    CHECK_THAT(e.what(), Catch::Matchers::StartsWith("backend ref device 0: buffer_alloc of "
                                                     "4611686018427387904 bytes failed"));
  }
  CHECK_FALSE(ref->has_streams());
  CHECK(ref->create_stream(0) == nullptr);
  ref->synchronize(nullptr);
  void* pinned = ref->alloc_host_pinned(100);
  CHECK(reinterpret_cast<uintptr_t>(pinned) % 64 == 0);
  ref->free_host_pinned(pinned);
}

TEST_CASE("every module on ref.* gives the logits of cpu.* and of the golden reference",
          "[backends][golden]") {
  TempDir tmp;
  const std::string rules = write_ref_rules(tmp.path);
  struct Case {
    const char* name;
    float vs_cpu;  // cpu.* quantizes activations for quantized weights; ref.* never does
  };
  for (const Case& c :
       {Case{"ds2_lite", 2e-3f}, Case{"ds2_v2", 2e-3f}, Case{"ds2_v3", 2e-3f},
        Case{"ds2_lite_yarn", 2e-3f}, Case{"ds2_lite_mla", 2e-3f}, Case{"llama_gqa", 2e-3f},
        Case{"ds2_lite_q8_0", 0.1f}, Case{"ds2_v3_q8_0", 0.1f}, Case{"ds2_lite_q4_k", 0.1f}}) {
    INFO(c.name);
    ModelOptions cpu_options;
    cpu_options.n_threads = 2;
    auto cpu_model = Model::load(golden(c.name), cpu_options);

    ModelOptions ref_options = cpu_options;
    ref_options.rules_path = rules;
    ref_options.backend_paths = {KTX_REF_BACKEND};
    auto ref_model = Model::load(golden(c.name), ref_options);
    for (const ktx::exec::Placement& p : ref_model->plan().placements) {
      INFO(p.module);
      CHECK(p.impl.rfind("ref.", 0) == 0);
    }

    Session cpu_session(cpu_model, 16), ref_session(ref_model, 16);
    const std::vector<float> cpu_logits = cpu_session.eval_all(kTokens);
    const std::vector<float> ref_logits = ref_session.eval_all(kTokens);
    const std::vector<float> want = read_npy(golden(c.name, ".logits.npy"));
    CHECK(max_diff(ref_logits, want) < 1e-4f);  // double all the way, as NumPy's float64
    CHECK(max_diff(ref_logits, cpu_logits) < c.vs_cpu);

    // Token by token (decode over ref's own cache) gives the same rows.
    Session steps(ref_model, 16);
    const size_t n_vocab = static_cast<size_t>(ref_model->config().n_vocab);
    for (size_t i = 0; i < kTokens.size(); ++i) {
      auto logits = steps.eval({&kTokens[i], 1});
      const std::vector<float> got(logits.begin(), logits.end());
      const std::vector<float> row(
          ref_logits.begin() + static_cast<std::ptrdiff_t>(i * n_vocab),
          ref_logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * n_vocab));
      CHECK(max_diff(got, row) < 1e-4f);
    }
  }
}

TEST_CASE("option repack: decode steps over row tiles give the golden logits",
          "[backends][golden][row_tiles]") {
  const std::string rules = std::string(KTX_SOURCE_DIR) + "/rules/deepseek-v2-cpu-repack.yaml";
  for (const char* name : {"ds2_lite_q4_k", "ds2_lite_q8_0", "ds2_lite"}) {
    INFO(name);
    ModelOptions plain_options;
    plain_options.n_threads = 2;
    auto plain = Model::load(golden(name), plain_options);
    ModelOptions repack_options = plain_options;
    repack_options.rules_path = rules;
    auto repacked = Model::load(golden(name), repack_options);
    Session batch(plain, 16);
    const std::vector<float> batch_logits = batch.eval_all(kTokens);
    const std::vector<float> want = read_npy(golden(name, ".logits.npy"));
    // Token by token, so that every product is a decode step (the tiles); K-quant tiles give the
    // file-layout kernels' numbers exactly, Q8_0's differ in the order of their float sums.
    Session steps(repacked, 16), plain_steps(plain, 16);
    const size_t n_vocab = static_cast<size_t>(plain->config().n_vocab);
    for (size_t i = 0; i < kTokens.size(); ++i) {
      auto logits = steps.eval({&kTokens[i], 1});
      const std::vector<float> got(logits.begin(), logits.end());
      auto plain_logits = plain_steps.eval({&kTokens[i], 1});
      const std::vector<float> plain_row(plain_logits.begin(), plain_logits.end());
      const std::vector<float> row(want.begin() + static_cast<std::ptrdiff_t>(i * n_vocab),
                                   want.begin() + static_cast<std::ptrdiff_t>((i + 1) * n_vocab));
      CHECK(max_diff(got, plain_row) < 1e-3f);
      CHECK(max_diff(got, row) < 0.1f);  // activation-quantized, as cpu.* without the option
    }
  }
}

// KTransformers' usual split, with ref:0 standing where the GPU would: embeddings, norms,
// attention, dense and shared MLPs and the head on the device; router and routed experts on the
// CPU. Activations cross between the two memories at every boundary.
std::string write_split_rules(const fs::path& dir) {
  const fs::path file = dir / "split.yaml";
  std::ofstream(file) << "- match: {kind: [moe_gate, experts]}\n"
                         "  replace: {device: cpu}\n"
                         "- match: {name: '.*'}\n"
                         "  replace: {device: 'ref:0'}\n";
  return file.string();
}

TEST_CASE("a plan mixing cpu and ref:0 moves activations and gives the golden logits",
          "[backends][golden]") {
  TempDir tmp;
  const std::string rules = write_split_rules(tmp.path);
  for (const char* name : {"ds2_lite", "ds2_v3", "llama_gqa", "ds2_lite_q4_k"}) {
    INFO(name);
    ModelOptions cpu_options;
    cpu_options.n_threads = 2;
    auto cpu_model = Model::load(golden(name), cpu_options);
    ModelOptions split_options = cpu_options;
    split_options.rules_path = rules;
    split_options.backend_paths = {KTX_REF_BACKEND};
    auto split = Model::load(golden(name), split_options);
    size_t on_device = 0, on_cpu = 0;
    for (const ktx::exec::Placement& p : split->plan().placements) {
      INFO(p.module);
      const bool routed = p.module.ends_with(".mlp.gate") || p.module.ends_with(".mlp.experts");
      CHECK(p.generate_device.name() == (routed ? "cpu" : "ref:0"));
      (routed ? on_cpu : on_device) += 1;
    }
    CHECK(on_device > 0);

    Session cpu_session(cpu_model, 16), split_session(split, 16);
    split->reset_timings();
    const std::vector<float> cpu_logits = cpu_session.eval_all(kTokens);
    const std::vector<float> split_logits = split_session.eval_all(kTokens);
    const std::vector<float> want = read_npy(golden(name, ".logits.npy"));
    // Routed experts and router in cpu.* (activation-quantized for quantized weights), the rest
    // in double: between the two single-backend results.
    const bool quantized = std::string(name).find("q4_k") != std::string::npos;
    CHECK(max_diff(split_logits, want) < (quantized ? 0.1f : 1e-4f));
    CHECK(max_diff(split_logits, cpu_logits) < (quantized ? 0.1f : 2e-3f));
    const ktx::exec::TransferStats moved = split->transfers();
    CHECK(moved.to_device_copies > 0);
    CHECK(moved.to_host_copies > 0);
    CHECK(cpu_model->transfers().to_device_bytes == 0);  // all on the host: nothing moves
    CHECK(cpu_model->transfers().to_host_bytes == 0);

    // Decode steps over the cache on ref:0 give the batch's rows.
    Session steps(split, 16);
    const size_t n_vocab = static_cast<size_t>(split->config().n_vocab);
    for (size_t i = 0; i < kTokens.size(); ++i) {
      auto logits = steps.eval({&kTokens[i], 1});
      const std::vector<float> got(logits.begin(), logits.end());
      const std::vector<float> row(
          split_logits.begin() + static_cast<std::ptrdiff_t>(i * n_vocab),
          split_logits.begin() + static_cast<std::ptrdiff_t>((i + 1) * n_vocab));
      CHECK(max_diff(got, row) < 1e-4f);
    }
    // Rewinding and evaluating again reuses the device cache from the rewound position.
    steps.rewind(4);
    auto again = steps.eval({&kTokens[4], 1});
    const std::vector<float> got(again.begin(), again.end());
    const std::vector<float> row(split_logits.begin() + static_cast<std::ptrdiff_t>(4 * n_vocab),
                                 split_logits.begin() + static_cast<std::ptrdiff_t>(5 * n_vocab));
    CHECK(max_diff(got, row) < 1e-4f);
  }
}

TEST_CASE("routed experts split between cpu and ref:0 (gpu_experts) give the same logits",
          "[backends][golden]") {
  TempDir tmp;
  for (const char* name : {"ds2_lite", "ds2_v3", "ds2_lite_q4_k"}) {
    INFO(name);
    ModelOptions cpu_options;
    cpu_options.n_threads = 2;
    auto cpu_model = Model::load(golden(name), cpu_options);
    const int64_t n_expert = cpu_model->config().n_expert;
    REQUIRE(n_expert >= 4);
    // Half the experts (the even ones) on ref:0, the rest on the CPU.
    std::string hot;
    for (int64_t e = 0; e < n_expert; e += 2) hot += fmt::format("{}{}", hot.empty() ? "" : ",", e);
    const fs::path rules = tmp.path / "split-experts.yaml";
    std::ofstream(rules) << "- match: {kind: experts}\n"
                         << "  replace:\n"
                         << "    device: cpu\n"
                         << "    kwargs: {gpu_experts: '" << hot
                         << "', gpu_experts_device: 'ref:0'}\n";
    ModelOptions split_options = cpu_options;
    split_options.rules_path = rules.string();
    split_options.backend_paths = {KTX_REF_BACKEND};
    auto split = Model::load(golden(name), split_options);
    Session a(cpu_model, 16), b(split, 16);
    const std::vector<float> want = a.eval_all(kTokens);
    const std::vector<float> got = b.eval_all(kTokens);
    // The hot half runs in double (ref.*), the cold half as cpu.experts does.
    const bool quantized = std::string(name).find("q4_k") != std::string::npos;
    CHECK(max_diff(got, want) < (quantized ? 0.1f : 2e-3f));
    CHECK(max_diff(got, read_npy(golden(name, ".logits.npy"))) < (quantized ? 0.1f : 2e-3f));
    CHECK(split->transfers().to_device_copies > 0);
  }
  SECTION("bad options are errors naming the module") {
    const fs::path rules = tmp.path / "bad.yaml";
    std::ofstream(rules)
        << "- match: {kind: experts}\n"
        << "  replace: {kwargs: {gpu_experts: '1,99', gpu_experts_device: 'ref:0'}}\n";
    ModelOptions options;
    options.rules_path = rules.string();
    options.backend_paths = {KTX_REF_BACKEND};
    CHECK_THROWS_WITH(Model::load(golden("ds2_lite"), options),
                      Catch::Matchers::Contains("model.layers.1.mlp.experts: gpu_experts entry "
                                                "'99' is not an expert number below"));
  }
}

TEST_CASE("ref:0 operators refuse host pointers; rules naming an absent device fail",
          "[backends]") {
  OperatorRegistry registry;
  BackendSet set = load_only(registry, {KTX_REF_BACKEND});
  auto model = Model::load(golden("ds2_lite"), {});
  const ktx::model::ModuleDesc* norm = nullptr;
  for (const ktx::model::ModuleDesc& m : model->modules()) {
    if (m.name == "model.norm") norm = &m;
  }
  REQUIRE(norm != nullptr);
  const ktx::registry::OpImpl* impl = registry.find("ref.rms_norm");
  REQUIRE(impl != nullptr);
  const ktx::registry::OpOptions none;
  const ktx::registry::Device ref0 = ktx::registry::Device::accelerator("ref", 0);
  CHECK(impl->check({*norm, model->config(), ktx::registry::Device::cpu(), none})
            .value_or("")
            .find("runs on device ref:0 only, not cpu") != std::string::npos);
  REQUIRE_FALSE(impl->check({*norm, model->config(), ref0, none}));
  auto op = impl->create({*norm, model->config(), ref0, none});
  auto* rms = dynamic_cast<ktx::ops::RmsNormOp*>(op.get());
  REQUIRE(rms != nullptr);
  const int64_t d = model->config().n_embd;
  std::vector<float> host(static_cast<size_t>(d), 1.0f), out(host.size());
  ktx::ops::ExecContext ctx;
  try {
    rms->forward(ctx, 1, host.data(), out.data());
    FAIL("a host pointer was accepted");
  } catch (const ktx::Error& e) {
    CHECK(e.code() == ktx::ErrorCode::kInternal);
    CHECK_THAT(e.what(), Catch::Matchers::Contains("the input") &&
                             Catch::Matchers::Contains("is not in the memory of device ref:0"));
  }
  // Device buffers are accepted, and copies check their device side.
  const ktx::registry::Backend* ref = set.find("ref");
  REQUIRE(ref != nullptr);
  const size_t bytes = host.size() * sizeof(float);
  void* in_dev = ref->alloc(0, bytes);
  void* out_dev = ref->alloc(0, bytes);
  ref->copy(0, in_dev, host.data(), bytes, KTX_COPY_HOST_TO_DEVICE);
  rms->forward(ctx, 1, static_cast<const float*>(in_dev), static_cast<float*>(out_dev));
  ref->copy(0, out.data(), out_dev, bytes, KTX_COPY_DEVICE_TO_HOST);
  for (float v : out) CHECK(std::isfinite(v));
  CHECK_THROWS_WITH(ref->copy(0, out.data(), host.data(), bytes, KTX_COPY_DEVICE_TO_HOST),
                    Catch::Matchers::Contains("not ref:0 memory"));
  ref->free(0, in_dev);
  ref->free(0, out_dev);

  // A rule naming a device that no loaded backend has says which ones exist.
  TempDir tmp;
  const fs::path device_rule = tmp.path / "device.yaml";
  std::ofstream(device_rule) << "- match: {kind: rms_norm}\n  replace: {device: 'ref:3'}\n";
  ModelOptions options;
  options.rules_path = device_rule.string();
  options.backend_paths = {KTX_REF_BACKEND};
  CHECK_THROWS_WITH(Model::load(golden("ds2_lite"), options),
                    Catch::Matchers::Contains(device_rule.string() + ":2") &&
                        Catch::Matchers::Contains("ref:3 does not exist here") &&
                        Catch::Matchers::Contains("ref:0"));
}

TEST_CASE("broken backend modules are refused with a message naming the file", "[backends]") {
  TempDir tmp;
  const std::string garbage = (tmp.path / "libktx-backend-garbage.so").string();
  std::ofstream(garbage) << "this is not a shared object\n";
  const std::string missing = (tmp.path / "libktx-backend-missing.so").string();

  struct Case {
    std::string path;
    std::vector<std::string> says;
  };
  const std::vector<Case> cases = {
      {missing, {"backend module not found"}},
      {garbage, {"cannot load backend module: ", "libktx-backend-garbage.so"}},
      {test_module("noinit"), {"not a ktx backend module: it does not export ktx_backend_init"}},
      {test_module("badversion"),
       {"built for ktx backend API version 999, this ktx has version 2"}},
      {test_module("size0"), {"backend table is 0 bytes (struct_size), expected at least"}},
      {test_module("score0"), {"cannot run on this machine (ktx_backend_score() returned 0)"}},
      {test_module("throws"),
       {"register_operators threw an exception: the test module's register_operators throws "
        "on purpose"}},
      {test_module("dup"), {"duplicate operator names: 'test_dup.rms_norm' is offered twice"}},
      {test_module("fails"), {"it reported: no usable device found (test)"}},
      {test_module("initnull"), {"ktx_backend_init(2) returned NULL"}},
      {test_module("badname"),
       {"operator 'cpu.rms_norm_from_a_module' is not named 'test_badname.<implementation>'"}},
      {test_module("noalloc"), {"backend table lacks the required slot buffer_alloc"}},
      {test_module("devname"),
       {"backend 'test_devname' refused: its device 0 is named 'gpu0'; expected cpu or "
        "test_devname:<index>"}},
  };
  for (const Case& c : cases) {
    INFO(c.path);
    OperatorRegistry registry;
    const BackendSet set = load_only(registry, {c.path});
    const std::string w = only_warning(set, c.path);
    for (const std::string& s : c.says) {
      INFO(w);
      CHECK(w.find(s) != std::string::npos);
    }
    // Nothing of it stayed: only the built-in backend and its operators.
    REQUIRE(set.backends.size() == 1);
    CHECK(set.backends[0]->name() == "cpu");
    for (const ktx::registry::OpImpl* impl : registry.all()) {
      CHECK(impl->name.rfind("cpu.", 0) == 0);
    }
  }

  SECTION("a model carries on without them") {
    ModelOptions options;
    options.n_threads = 2;
    auto plain = Model::load(golden("ds2_lite"), options);
    for (const Case& c : cases) options.backend_paths.push_back(c.path);
    options.backend_paths.push_back(KTX_REF_BACKEND);
    auto model = Model::load(golden("ds2_lite"), options);
    CHECK(model->warnings().size() == cases.size());
    CHECK(model->registry().find("ref.mlp") != nullptr);
    Session a(plain, 16), b(model, 16);
    CHECK(max_diff(a.eval_all(kTokens), b.eval_all(kTokens)) == 0.0f);
  }
}

TEST_CASE("a module is loaded once; a second backend of the same name is refused", "[backends]") {
  TempDir tmp;
  const fs::path copy = tmp.path / "libktx-backend-ref.so";
  fs::copy_file(KTX_REF_BACKEND, copy);
  OperatorRegistry registry;
  const BackendSet set = load_only(registry, {KTX_REF_BACKEND, KTX_REF_BACKEND, copy.string()});
  const std::string w = only_warning(set, copy.string());
  CHECK(w.find("a backend named 'ref' is already loaded (" KTX_REF_BACKEND ")") !=
        std::string::npos);
  CHECK(set.backends.size() == 2);
}

TEST_CASE("of the variants of one backend in a folder, the highest score is loaded", "[backends]") {
  OperatorRegistry registry;
  const std::string dir = std::string(KTX_TEST_BACKEND_DIR) + "/variants";
  const BackendSet set = load_only(registry, {dir});
  CHECK(set.warnings().empty());
  REQUIRE(set.backends.size() == 2);
  CHECK(set.backends[1]->name() == "test_variant_high");
  CHECK(set.backends[1]->score() == 7);
  REQUIRE(set.refused.size() == 1);
  CHECK_FALSE(set.refused[0].warning);  // a note: nothing is wrong
  CHECK(set.refused[0].message.find("libktx-backend-variant-high.so scores higher on this "
                                    "machine (7 > 1)") != std::string::npos);
}

TEST_CASE("across the module boundary: exceptions, release", "[backends]") {
  OperatorRegistry registry1, registry2;
  auto set1 = std::make_unique<BackendSet>(load_only(registry1, {test_module("good")}));
  const BackendSet set2 = load_only(registry2, {test_module("good")});
  REQUIRE(set1->warnings().empty());
  REQUIRE(set2.warnings().empty());

  // A ktx::Error thrown by the module's own copy of the core is a ktx::Error here.
  const ktx::registry::OpImpl* impl = registry1.find("test_good.rms_norm");
  REQUIRE(impl != nullptr);
  const ktx::model::ModuleDesc module{"model.norm", ktx::model::ModuleKind::kRmsNorm, -1, {}};
  const ktx::model::ModelConfig config;
  const ktx::registry::OpOptions no_options, options = {{"x", "1"}};
  auto op = impl->create({module, config, ktx::registry::Device::cpu(), no_options});
  REQUIRE(op != nullptr);
  CHECK(op->impl_name() == "test_good.rms_norm");
  CHECK(dynamic_cast<ktx::ops::RmsNormOp*>(op.get()) != nullptr);  // RTTI matches across copies
  op.reset();
  try {
    impl->create({module, config, ktx::registry::Device::cpu(), options});
    FAIL("create should have thrown");
  } catch (const ktx::Error& e) {
    CHECK(e.code() == ktx::ErrorCode::kUnsupported);
    CHECK(std::string(e.what()) == "test_good.rms_norm takes no options");
  }

  // Unloading set1 calls release() once; set2 keeps the module mapped so we can ask it.
  auto released =
      reinterpret_cast<int (*)()>(set2.find("test_good")->proc_address("test_released_count"));
  REQUIRE(released != nullptr);
  CHECK(released() == 0);
  registry1 = OperatorRegistry();  // operators first, then the backend
  set1.reset();
  CHECK(released() == 1);
}

TEST_CASE("KTX_BACKEND_PATH adds modules; the default folders are searched", "[backends]") {
  const std::vector<std::string> dirs = ktx::registry::default_backend_dirs();
  CHECK_FALSE(dirs.empty());
  // In the build tree the reference module sits in <build>/backends, next to <build>/tests.
  const std::string ref_dir = fs::path(KTX_REF_BACKEND).parent_path().lexically_normal().string();
  bool found = false;
  for (const std::string& d : dirs) {
    std::error_code ec;
    if (fs::equivalent(d, ref_dir, ec)) found = true;
  }
  CHECK(found);

  ::setenv("KTX_BACKEND_PATH", (std::string("/nonexistent/dir:") + test_module("good")).c_str(), 1);
  OperatorRegistry registry;
  const BackendSet set = ktx::registry::load_backends(registry);
  ::unsetenv("KTX_BACKEND_PATH");
  CHECK(set.find("test_good") != nullptr);
  CHECK(set.find("ref") != nullptr);  // found by the search
}
