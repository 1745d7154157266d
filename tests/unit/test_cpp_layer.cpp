// The header-only C++ layer (include/ktx/ktx.hpp) over libktx.so: RAII handles, AbiError codes,
// the buffer protocol hidden behind std::vector / std::string, callbacks whose exceptions come
// back out unchanged. Everything here goes through the C ABI, as the Python binding will.
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "ktx/ktx.hpp"

namespace {

const std::vector<int32_t> kTokens = {1, 17, 42, 60, 5, 17, 33};
const std::vector<int32_t> kArgmax = {30, 63, 49, 27, 60, 7, 32};  // manifest.json

std::string golden(const std::string& name) {
  return std::string(KTX_SOURCE_DIR) + "/tests/data/golden/" + name + ".gguf";
}

ktx::Model load_golden() {
  ktx::ModelOptions options;
  options.threads(2);
  return ktx::Model::load(golden("ds2_lite"), options);
}

// The default model's path, or "" when scripts/default_model.py finds none.
std::string default_model() {
  const std::string cmd =
      "python3 " + std::string(KTX_SOURCE_DIR) + "/scripts/default_model.py 2>/dev/null";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(popen(cmd.c_str(), "r"), pclose);
  if (!pipe) return "";
  std::string out;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe.get()) != nullptr) out += buf;
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

template <class F>
ktx_status_code code_of(F&& f) {
  try {
    f();
  } catch (const ktx::AbiError& e) {
    CHECK(std::string(e.what()).size() > 0);
    return e.code();
  }
  return KTX_STATUS_OK;
}

float max_diff(const float* a, const float* b, size_t n) {
  float m = 0;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

struct CallbackBoom : std::runtime_error {
  CallbackBoom() : std::runtime_error("boom") {}
};

}  // namespace

TEST_CASE("the C++ layer loads models and reports errors as AbiError", "[cpp_layer]") {
  CHECK(ktx::abi_compatible());
  CHECK(ktx::abi_version() == ((KTX_ABI_VERSION_MAJOR << 16) | KTX_ABI_VERSION_MINOR));
  CHECK(!ktx::version_string().empty());

  std::vector<float> seen;
  ktx::ModelOptions options;
  options.threads(2).prefault(true).progress([&](float f) {
    seen.push_back(f);
    return true;
  });
  ktx::Model model = ktx::Model::load(golden("ds2_lite"), options);
  REQUIRE(seen.size() >= 2);
  CHECK(seen.front() == 0.0f);
  CHECK(seen.back() == 1.0f);

  const ktx_model_info info = model.info();
  CHECK(std::string(info.architecture) == "deepseek2");
  CHECK(info.n_vocab == 64);
  CHECK(info.n_layer == 3);
  CHECK(info.n_threads == 2);

  CHECK(code_of([] { ktx::Model::load(golden("no_such_model")); }) == KTX_STATUS_IO_ERROR);
  CHECK(code_of([] { ktx::ModelOptions().threads(-2); }) == KTX_STATUS_INVALID_ARGUMENT);
  options.progress([](float) { return false; });
  CHECK(code_of([&] { ktx::Model::load(golden("ds2_lite"), options); }) == KTX_STATUS_CANCELLED);
  // A callback's own exception comes out as it was thrown.
  options.progress([](float f) -> bool {
    if (f > 0.5f) throw CallbackBoom();
    return true;
  });
  CHECK_THROWS_AS(ktx::Model::load(golden("ds2_lite"), options), CallbackBoom);
  try {
    ktx::Model::load(golden("ds2_lite"), ktx::ModelOptions().rules_path("nowhere.yaml"));
    FAIL("loaded with a missing rule file");
  } catch (const ktx::AbiError& e) {
    CHECK(e.code() == KTX_STATUS_IO_ERROR);
    CHECK(std::string(e.code_name()) == "KTX_STATUS_IO_ERROR");
    CHECK(std::string(e.what()).find("nowhere.yaml") != std::string::npos);
  }
  // Options that were moved from are refused, not loaded with defaults or dereferenced.
  ktx::ModelOptions moved;
  const ktx::ModelOptions taken = std::move(moved);
  CHECK(code_of([&] { ktx::Model::load(golden("ds2_lite"), moved); }) ==
        KTX_STATUS_INVALID_ARGUMENT);
  CHECK(code_of([&] { moved.progress([](float) { return true; }); }) ==
        KTX_STATUS_INVALID_ARGUMENT);
}

TEST_CASE("one ModelOptions serves loads on several threads, each with its own outcome",
          "[cpp_layer]") {
  // The callback throws on odd threads: those loads, and only those, rethrow their own error.
  thread_local int thread_id = -1;
  ktx::ModelOptions options;
  options.threads(1).progress([](float f) {
    if (f >= 1.0f && thread_id % 2 == 1) {
      throw std::runtime_error("thrown by thread " + std::to_string(thread_id));
    }
    return true;
  });
  std::vector<std::string> wrong(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      thread_id = t;
      for (int round = 0; round < 10; ++round) {
        try {
          ktx::Model::load(golden("ds2_lite"), options);
          if (t % 2 == 1) wrong[t] = "loaded";
        } catch (const std::runtime_error& e) {
          const std::string what = e.what();
          if (what != "thrown by thread " + std::to_string(t)) wrong[t] = what;
        }
      }
    });
  }
  for (std::thread& th : threads) th.join();
  for (int t = 0; t < 4; ++t) {
    INFO("thread " << t);
    CHECK(wrong[t].empty());
  }
}

TEST_CASE("the C++ layer reads metadata, the plan and the backends", "[cpp_layer]") {
  const ktx::Model model = load_golden();
  const std::vector<std::string> keys = model.meta_keys();
  CHECK(std::find(keys.begin(), keys.end(), "general.architecture") != keys.end());
  CHECK(model.meta_string("general.architecture") == "deepseek2");
  CHECK(model.meta_int("deepseek2.block_count") == 3);
  CHECK(model.meta_float("deepseek2.block_count") == 3.0);
  CHECK(model.meta_type("general.architecture") == std::optional<ktx_meta_type>(KTX_META_STRING));
  CHECK(!model.meta_type("no.such.key").has_value());
  CHECK(code_of([&] { model.meta_int("no.such.key"); }) == KTX_STATUS_NOT_FOUND);
  CHECK(code_of([&] { model.meta_int("general.architecture"); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(model.warnings().empty());

  REQUIRE(model.plan_size() == 19);
  CHECK(std::string(model.placement(0).module) == "model.embed_tokens");
  CHECK(std::string(model.placement(18).impl) == "cpu.lm_head");
  CHECK(code_of([&] { model.placement(19); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(model.plan_json().find("\"model.layers.1.mlp.experts\"") != std::string::npos);

  const ktx::BackendList backends = model.backends();
  REQUIRE(backends.size() >= 1);
  CHECK(std::string(backends.info(0).name) == "cpu");
  CHECK(std::string(backends.device(0, 0).name) == "cpu");
  CHECK(!backends.operators(0).empty());
  const ktx::BackendList standalone = ktx::BackendList::load();
  CHECK(standalone.size() == backends.size());
  CHECK(code_of([&] { standalone.info(standalone.size()); }) == KTX_STATUS_INVALID_ARGUMENT);

  CHECK(!model.has_tokenizer());
  CHECK(model.bos() == -1);
  CHECK(code_of([&] { model.tokenize("hello"); }) == KTX_STATUS_UNSUPPORTED);
  CHECK(code_of([&] { model.apply_chat_template({{"user", "hi"}}); }) == KTX_STATUS_UNSUPPORTED);
}

TEST_CASE("the C++ layer runs sessions: prefill equals decode, rewind, reset", "[cpp_layer]") {
  std::optional<ktx::Session> steps;
  std::vector<float> all;
  {
    const ktx::Model model = load_golden();
    ktx::Session batch(model, 16);
    all = batch.eval_all(kTokens);
    REQUIRE(all.size() == kTokens.size() * 64);
    steps.emplace(model, 16);
  }  // the sessions keep the weights alive after the Model goes
  for (size_t i = 0; i < kTokens.size(); ++i) {
    const ktx::Logits l = steps->decode(kTokens[i]);
    REQUIRE(l.size == 64);
    CHECK(max_diff(l.data, all.data() + i * 64, 64) < 2e-4f);
    CHECK(std::max_element(l.begin(), l.end()) - l.begin() == kArgmax[i]);
  }
  CHECK(steps->position() == 7);
  CHECK(steps->tokens() == kTokens);
  const std::vector<float> last(steps->logits().begin(), steps->logits().end());

  CHECK(code_of([&] { steps->decode(64); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(code_of([&] { steps->rewind(9); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(steps->position() == 7);
  steps->rewind(3);
  CHECK(steps->logits().empty());
  const ktx::Logits replay = steps->eval({kTokens.begin() + 3, kTokens.end()});
  CHECK(max_diff(replay.data, last.data(), 64) < 1e-5f);
  steps->reset();
  CHECK(steps->position() == 0);
  CHECK(steps->tokens().empty());
}

TEST_CASE("the C++ layer forks, saves and restores sessions", "[cpp_layer]") {
  const ktx::Model model = load_golden();
  ktx::Session original(model, 16);
  original.eval({kTokens.begin(), kTokens.begin() + 4});
  // A name of this process's own: the tier runs of this test (unit.tier_*) run beside it, and a
  // file they saved — from other kernels, so other numbers — would be read back here.
  const std::string path = (std::filesystem::temp_directory_path() /
                            ("ktx_cpp_layer_test." + std::to_string(::getpid()) + ".session"))
                               .string();
  original.save(path);
  ktx::Session fork = original.fork(32);
  ktx::Session restored(model, 8);
  restored.load(path);
  std::filesystem::remove(path);
  CHECK(fork.n_ctx() == 32);
  CHECK(restored.tokens() == original.tokens());
  const ktx::Logits next = original.decode(kTokens[4]);
  const std::vector<float> want(next.begin(), next.end());
  const ktx::Logits from_fork = fork.decode(kTokens[4]);
  const ktx::Logits from_file = restored.decode(kTokens[4]);
  CHECK(std::vector<float>(from_fork.begin(), from_fork.end()) == want);
  CHECK(std::vector<float>(from_file.begin(), from_file.end()) == want);
  CHECK(code_of([&] { original.fork(2); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(code_of([&] { restored.load(golden("ds2_lite")); }) == KTX_STATUS_INVALID_FILE);
  CHECK(code_of([&] { restored.save(golden("ds2_lite")); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(restored.position() == 5);
}

TEST_CASE("the C++ layer decodes several sessions at once", "[cpp_layer]") {
  const ktx::Model model = load_golden();
  ktx::Session a(model, 16), b(model, 16);
  a.eval({kTokens.begin(), kTokens.begin() + 3});
  b.eval({kTokens.begin(), kTokens.begin() + 5});
  ktx::Session a1 = a.fork(), b1 = b.fork();
  ktx::decode_batch({&a, &b}, {9, 21});
  const ktx::Logits la = a1.decode(9), lb = b1.decode(21);
  CHECK(max_diff(a.logits().data, la.data, 64) < 2e-4f);
  CHECK(max_diff(b.logits().data, lb.data, 64) < 2e-4f);
  CHECK(code_of([&] { ktx::decode_batch({&a, &b}, {9}); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(code_of([&] { ktx::decode_batch({&a, &a}, {9, 9}); }) == KTX_STATUS_INVALID_ARGUMENT);
  CHECK(a.position() == 4);
}

TEST_CASE("the C++ layer samples", "[cpp_layer]") {
  const ktx::Model model = load_golden();
  ktx::Session session(model, 16);
  const ktx::Logits logits = session.eval(kTokens);
  ktx::Sampler greedy(ktx::SamplingOptions().temperature(0.0f));
  CHECK(greedy.sample(logits) == kArgmax.back());
  CHECK(code_of([] { ktx::SamplingOptions().top_p(2.0f); }) == KTX_STATUS_INVALID_ARGUMENT);
  ktx::Sampler a(ktx::SamplingOptions().seed(7).temperature(1.2f));
  ktx::Sampler b(ktx::SamplingOptions().seed(7).temperature(1.2f));
  for (int i = 0; i < 16; ++i) CHECK(a.sample(logits) == b.sample(logits));
  CHECK(code_of([&] { a.accept(-1); }) == KTX_STATUS_INVALID_ARGUMENT);
  ktx::Sampler defaults;
  CHECK(defaults.sample(logits) >= 0);
  // No tokenizer, no end-of-generation tokens: generation is refused, the session untouched.
  CHECK(code_of([&] { session.generate(greedy, {1, 2}, 4); }) == KTX_STATUS_UNSUPPORTED);
  CHECK(session.position() == 7);
}

TEST_CASE("the C++ layer tokenizes and generates with the default model", "[cpp_layer]") {
  const std::string path = default_model();
  if (path.empty()) {
    WARN("skipped: no default model (scripts/default_model.py)");
    return;
  }
  ktx::ModelOptions options;
  options.threads(2);
  const ktx::Model model = ktx::Model::load(path, options);
  REQUIRE(model.has_tokenizer());

  // Longer than the first guess of the buffer protocol, so the size query path runs too.
  std::string text;
  for (int i = 0; i < 50; ++i)
    text += "caf\xc3\xa9 \xe2\x9c\x93 " + std::to_string(i * 7919) + ", ";
  for (const std::string& s : {std::string(), std::string("a"), text}) {
    const std::vector<int32_t> ids = model.tokenize(s, 0);
    CHECK(model.detokenize(ids) == s);
    std::string pieces;
    for (int32_t id : ids) pieces += model.token_to_piece(id, 0);
    CHECK(pieces == s);
  }
  CHECK(model.tokenize("<|im_end|>", KTX_TOKENIZE_PARSE_SPECIAL).size() == 1);
  CHECK(model.is_eog(model.eos()));

  const std::string chat = model.apply_chat_template(
      {{"system", "You are terse."}, {"user", "What is the capital of France?"}});
  CHECK(chat.rfind("<|im_start|>assistant\n") == chat.size() - 22);
  const std::vector<int32_t> prompt = model.tokenize(chat, KTX_TOKENIZE_PARSE_SPECIAL);

  ktx::Sampler greedy(ktx::SamplingOptions().temperature(0.0f));
  ktx::Session session(model, 128);
  std::string streamed;
  std::vector<int32_t> generated;
  const ktx_generate_stats stats =
      session.generate(greedy, prompt, 8, [&](int32_t token, std::string_view piece) {
        if (token >= 0) generated.push_back(token);
        streamed += piece;
        return true;
      });
  CHECK(stats.n_prompt == static_cast<int64_t>(prompt.size()));
  CHECK(stats.n_generated == static_cast<int64_t>(generated.size()));
  CHECK(streamed == model.detokenize(generated));
  CHECK(streamed.find("Paris") != std::string::npos);

  // A callback that throws stops generation; its exception comes back unchanged.
  session.reset();
  greedy.reset();
  int calls = 0;
  CHECK_THROWS_AS(session.generate(greedy, prompt, 8,
                                   [&](int32_t, std::string_view) -> bool {
                                     if (++calls == 2) throw CallbackBoom();
                                     return true;
                                   }),
                  CallbackBoom);
  CHECK(calls == 2);

  session.reset();
  greedy.reset();
  const ktx_generate_stats cancelled =
      session.generate(greedy, prompt, 8, [](int32_t, std::string_view) { return false; });
  CHECK(cancelled.stop_reason == KTX_STOP_CANCELLED);
  CHECK(cancelled.n_generated == 1);
}
