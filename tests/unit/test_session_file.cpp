// Saving, restoring and forking sessions: a restored or forked session continues exactly as the
// original does, across processes' worth of state (a file), across placements (a cache saved
// from ref:0 restored on the CPU), and every damaged, foreign or ill-fitting file is refused
// by name with the session left as it was.
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "gguf_test_helpers.h"
#include "golden_sessions.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "runtime/model.h"
#include "runtime/session.h"

using ktx::Error;
using ktx::ErrorCode;
using ktx::gguf::test::TempDir;
using ktx::runtime::Model;
using ktx::runtime::ModelOptions;
using ktx::runtime::Session;
using ktx::test::copy;
using ktx::test::golden;
using ktx::test::load_golden;
using ktx::test::max_diff;
namespace gguf = ktx::gguf;

namespace {

const std::vector<int32_t> kPrompt = {1, 17, 42, 60, 5};
const std::vector<int32_t> kMore = {17, 33, 8};

// What a session holds and goes on to compute: its tokens, its logits, and the logits of each
// of kMore evaluated one at a time after it (decode over the restored cache).
struct Continuation {
  std::vector<int32_t> tokens;
  std::vector<float> logits;
  std::vector<std::vector<float>> next;
};

Continuation continue_from(Session& s) {
  Continuation c{s.tokens(), copy(s.logits()), {}};
  for (int32_t t : kMore) c.next.push_back(copy(s.eval({&t, 1})));
  return c;
}

// Checks that a load fails with `code` and a message holding `text`, leaving the session as it
// was (its tokens and logits, and what it computes next).
void check_refused(Session& s, const std::string& path, ErrorCode code, const std::string& text) {
  const std::vector<int32_t> tokens = s.tokens();
  const std::vector<float> logits = copy(s.logits());
  try {
    s.load(path);
    FAIL("loaded " << path);
  } catch (const Error& e) {
    INFO(e.what());
    CHECK(e.code() == code);
    CHECK(std::string(e.what()).find(text) != std::string::npos);
    CHECK(std::string(e.what()).find(path) != std::string::npos);
  }
  CHECK(s.tokens() == tokens);
  CHECK(copy(s.logits()) == logits);
}

// Rewrites a saved session file: `edit` may change or drop tensors (return false to drop) and
// add metadata; the checksums are recomputed unless `keep_checksums`.
using TensorEdit = std::function<bool(const gguf::TensorInfo&, std::vector<uint8_t>& data,
                                      std::vector<int64_t>& shape, ktx::TensorType& type)>;
void rewrite(const std::string& in, const std::string& out, const TensorEdit& edit,
             bool keep_checksums = false,
             const std::function<void(gguf::Writer&)>& extra = nullptr) {
  const gguf::File f = gguf::File::open(in);
  gguf::Writer w;
  for (const gguf::KeyValue& kv : f.metadata()) w.set_metadata(kv.key, kv.value);
  std::vector<uint8_t> sums;
  for (const gguf::TensorInfo& t : f.tensors()) {
    std::vector<uint8_t> data(t.data, t.data + t.n_bytes);
    std::vector<int64_t> shape = t.shape;
    ktx::TensorType type = t.type;
    if (edit && !edit(t, data, shape, type)) continue;
    const uint64_t sum = ktx::core::checksum(data.data(), data.size());
    for (int k = 0; k < 8; ++k) sums.push_back(static_cast<uint8_t>(sum >> (8 * k)));
    w.add_tensor(t.name, type, shape, data.data(), data.size());
  }
  if (!keep_checksums) {
    const uint64_t n = sums.size() / 8;
    w.set_metadata("ktx.session.checksums",
                   gguf::Value::array(gguf::ValueType::UINT64, std::move(sums), n));
  }
  if (extra) extra(w);
  w.write(out);
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("a restored session continues exactly as the saved one", "[session]") {
  TempDir tmp;
  for (const char* name : {"ds2_lite", "ds2_v3", "llama_gqa", "ds2_lite_q4_k"}) {
    INFO(name);
    auto model = load_golden(name);
    Session original(model, 16);
    original.eval(kPrompt);
    const std::string path = tmp.file(std::string(name) + ".session");
    original.save(path);

    Session restored(model, 12);                // another context size: only the tokens must fit
    restored.eval(std::vector<int32_t>{3, 4});  // whatever it held is replaced
    restored.load(path);
    CHECK(restored.position() == static_cast<int64_t>(kPrompt.size()));
    CHECK(restored.n_ctx() == 12);
    const Continuation want = continue_from(original);
    const Continuation got = continue_from(restored);
    CHECK(got.tokens == want.tokens);
    CHECK(got.logits == want.logits);  // bit for bit: the same computation on the same cache
    CHECK(got.next == want.next);
  }
}

TEST_CASE("a forked session continues exactly as its origin, independently", "[session]") {
  auto model = load_golden("ds2_v3");
  Session origin(model, 16);
  origin.eval(kPrompt);
  Session same = origin.fork();
  Session bigger = origin.fork(32);
  CHECK(same.n_ctx() == 16);
  CHECK(bigger.n_ctx() == 32);
  const Continuation want = continue_from(origin);
  CHECK(continue_from(same).next == want.next);
  const Continuation b = continue_from(bigger);
  CHECK(b.logits == want.logits);
  CHECK(b.next == want.next);
  // The fork has a cache of its own: evaluating the origin further did not touch it.
  Session fork = origin.fork();
  origin.rewind(2);
  origin.eval(std::vector<int32_t>{9, 9, 9});
  Session check(model, 16);
  check.eval(kPrompt);
  for (int32_t t : kMore) check.eval({&t, 1});
  int32_t next = 7;
  CHECK(copy(fork.eval({&next, 1})) == copy(check.eval({&next, 1})));

  CHECK_THROWS_WITH(origin.fork(2), Catch::Contains("cannot fork into a context of 2"));
  Session empty(model, 8);
  Session empty_fork = empty.fork();
  CHECK(empty_fork.position() == 0);
  CHECK(empty_fork.logits().empty());
}

TEST_CASE("sessions whose cache is on an accelerator save, restore and fork through it",
          "[session][backends]") {
  TempDir tmp;
  const std::string rules = tmp.file("attention_on_ref.yaml");
  std::ofstream(rules) << "- match: {kind: [moe_gate, experts]}\n"
                          "  replace: {device: cpu}\n"
                          "- match: {name: '.*'}\n"
                          "  replace: {device: 'ref:0'}\n";
  for (const char* name : {"ds2_lite", "llama_gqa"}) {
    INFO(name);
    auto on_ref = load_golden(name, rules);
    auto on_cpu = load_golden(name);
    REQUIRE_FALSE(on_ref->cache_on_host(0));
    Session original(on_ref, 16);
    original.eval(kPrompt);
    const std::string path = tmp.file(std::string(name) + ".session");
    original.save(path);

    Session forked = original.fork();
    Session restored_ref(on_ref, 16);
    restored_ref.load(path);
    Session restored_cpu(on_cpu, 16);  // the same model placed otherwise: the same file fits
    restored_cpu.load(path);

    const Continuation want = continue_from(original);
    CHECK(continue_from(forked).next == want.next);
    const Continuation ref = continue_from(restored_ref);
    CHECK(ref.logits == want.logits);
    CHECK(ref.next == want.next);
    const Continuation cpu = continue_from(restored_cpu);
    CHECK(cpu.logits == want.logits);  // saved, not recomputed
    for (size_t i = 0; i < kMore.size(); ++i) {
      CHECK(max_diff(cpu.next[i], want.next[i]) < 2e-3f);  // other kernels, same cache
    }
  }
}

TEST_CASE("an empty session saves and restores as empty", "[session]") {
  TempDir tmp;
  auto model = load_golden("ds2_lite");
  Session empty(model, 8);
  const std::string path = tmp.file("empty.session");
  empty.save(path);
  Session s(model, 8);
  s.eval(kPrompt);
  s.load(path);
  CHECK(s.position() == 0);
  CHECK(s.logits().empty());
  // A rewound session holds tokens but no logits.
  Session rewound(model, 8);
  rewound.eval(kPrompt);
  rewound.rewind(3);
  rewound.save(path);
  s.load(path);
  CHECK(s.position() == 3);
  CHECK(s.logits().empty());
}

TEST_CASE("session files are checked before the session changes", "[session]") {
  TempDir tmp;
  auto model = load_golden("ds2_lite");
  Session saved(model, 16);
  saved.eval(kPrompt);
  const std::string path = tmp.file("good.session");
  saved.save(path);
  Session s(model, 16);
  s.eval(std::vector<int32_t>{2, 3});  // what every refused load must leave

  SECTION("a file saved from another model") {
    Session other(load_golden("ds2_v3"), 16);
    other.eval(kPrompt);
    const std::string foreign = tmp.file("v3.session");
    other.save(foreign);
    check_refused(s, foreign, ErrorCode::kInvalidArgument, "saved from another model");
  }
  SECTION("more tokens than the context") {
    Session small(model, 4);
    small.eval(std::vector<int32_t>{2});
    check_refused(small, path, ErrorCode::kInvalidArgument,
                  "holds 5 tokens, more than this session's context of 4");
  }
  SECTION("a model instead of a session file") {
    check_refused(s, golden("ds2_lite"), ErrorCode::kInvalidFile, "looks like a model");
  }
  SECTION("a session file instead of a model") {
    CHECK_THROWS_WITH(Model::load(path),
                      Catch::Contains("a ktx session file") && Catch::Contains(path));
  }
  SECTION("a damaged byte in a cache tensor") {
    const gguf::File f = gguf::File::open(path);
    const gguf::TensorInfo& t = f.tensor("blk.1.cache_k_pe");
    const uint64_t at = f.data_offset() + t.offset + 13;
    std::string bytes = read_all(path);
    bytes[at] = static_cast<char>(bytes[at] ^ 0x10);
    const std::string damaged = tmp.file("damaged.session");
    std::ofstream(damaged, std::ios::binary) << bytes;
    check_refused(s, damaged, ErrorCode::kInvalidFile,
                  "tensor \"blk.1.cache_k_pe\" does not match its checksum");
  }
  SECTION("a truncated file") {
    const std::string bytes = read_all(path);
    const std::string cut = tmp.file("cut.session");
    std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 100);
    check_refused(s, cut, ErrorCode::kInvalidFile, "");
  }
  SECTION("a cache tensor of the wrong shape") {
    const std::string bad = tmp.file("shape.session");
    rewrite(path, bad,
            [](const gguf::TensorInfo& t, std::vector<uint8_t>& data, std::vector<int64_t>& shape,
               ktx::TensorType&) {
              if (t.name == "blk.0.cache_kv_latent") {
                shape = {shape[0] / 2, shape[1] * 2};
                (void)data;
              }
              return true;
            });
    check_refused(s, bad, ErrorCode::kInvalidFile, "tensor \"blk.0.cache_kv_latent\" must be F32");
  }
  SECTION("a missing layer") {
    const std::string bad = tmp.file("missing.session");
    rewrite(path, bad, [](const gguf::TensorInfo& t, auto&, auto&, auto&) {
      return t.name != "blk.1.cache_k_pe";
    });
    check_refused(s, bad, ErrorCode::kInvalidFile, "no tensor \"blk.1.cache_k_pe\" (layer 1");
  }
  SECTION("an unexpected tensor") {
    // The saved tensors and one more, with checksums covering every one.
    const gguf::File f = gguf::File::open(path);
    gguf::Writer w;
    for (const gguf::KeyValue& kv : f.metadata()) w.set_metadata(kv.key, kv.value);
    std::vector<uint8_t> sums;
    auto add = [&](const std::string& name, ktx::TensorType type, std::vector<int64_t> shape,
                   const uint8_t* data, uint64_t n) {
      const uint64_t sum = ktx::core::checksum(data, n);
      for (int k = 0; k < 8; ++k) sums.push_back(static_cast<uint8_t>(sum >> (8 * k)));
      w.add_tensor(name, type, std::move(shape), data, n);
    };
    for (const gguf::TensorInfo& t : f.tensors()) add(t.name, t.type, t.shape, t.data, t.n_bytes);
    const float junk[4] = {1, 2, 3, 4};
    add("blk.9.cache_k_pe", ktx::TensorType::F32, {4}, reinterpret_cast<const uint8_t*>(junk),
        sizeof(junk));
    w.set_metadata("ktx.session.checksums",
                   gguf::Value::array(gguf::ValueType::UINT64, sums, sums.size() / 8));
    const std::string extra = tmp.file("extra2.session");
    w.write(extra);
    check_refused(s, extra, ErrorCode::kInvalidFile, "unexpected tensor \"blk.9.cache_k_pe\"");
  }
  SECTION("a token outside the vocabulary") {
    const std::string bad = tmp.file("token.session");
    rewrite(path, bad, [](const gguf::TensorInfo& t, std::vector<uint8_t>& data, auto&, auto&) {
      if (t.name == "tokens") {
        const int32_t huge = 1 << 30;
        std::memcpy(data.data() + 8, &huge, sizeof(huge));
      }
      return true;
    });
    check_refused(s, bad, ErrorCode::kInvalidFile, "token #2 is 1073741824, outside");
  }
  SECTION("non-finite logits") {
    const std::string bad = tmp.file("nan.session");
    rewrite(path, bad, [](const gguf::TensorInfo& t, std::vector<uint8_t>& data, auto&, auto&) {
      if (t.name == "logits") {
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(data.data() + 4 * 7, &nan, sizeof(nan));
      }
      return true;
    });
    check_refused(s, bad, ErrorCode::kInvalidFile, "logit of token 7 is nan");
  }
  SECTION("a cache value that is not finite") {
    const std::string bad = tmp.file("cache_nan.session");
    rewrite(path, bad, [](const gguf::TensorInfo& t, std::vector<uint8_t>& data, auto&, auto&) {
      if (t.name == "blk.1.cache_kv_latent") {
        const float inf = std::numeric_limits<float>::infinity();
        std::memcpy(data.data() + sizeof(float) * (2 * t.shape[0] + 5), &inf, sizeof(inf));
      }
      return true;
    });
    check_refused(s, bad, ErrorCode::kInvalidFile,
                  "tensor \"blk.1.cache_kv_latent\" holds inf at position 2, element 5");
  }
  SECTION("data that may sit at odd addresses") {
    const std::string bad = tmp.file("align1.session");
    rewrite(path, bad, nullptr, false, [](gguf::Writer& w) { w.set_alignment(1); });
    check_refused(s, bad, ErrorCode::kInvalidFile, "general.alignment is 1");
  }
  SECTION("checksums missing") {
    const std::string bad = tmp.file("nosums.session");
    rewrite(path, bad, nullptr, false, [](gguf::Writer& w) {
      w.set_metadata("ktx.session.checksums", gguf::Value::uint32(0));
    });
    check_refused(s, bad, ErrorCode::kInvalidFile, "ktx.session.checksums must be an array");
  }
  SECTION("a newer version") {
    const std::string bad = tmp.file("v2.session");
    rewrite(path, bad, nullptr, false,
            [](gguf::Writer& w) { w.set_metadata("ktx.session.version", gguf::Value::uint32(2)); });
    check_refused(s, bad, ErrorCode::kUnsupported, "session file version 2");
  }
}

TEST_CASE("saving a session never writes over the model", "[session]") {
  TempDir tmp;
  const std::string model_path = tmp.file("model.gguf");
  std::filesystem::copy_file(golden("ds2_lite"), model_path);
  const std::string before = read_all(model_path);
  ModelOptions o;
  o.n_threads = 2;
  auto model = Model::load(model_path, o);
  Session s(model, 8);
  s.eval(kPrompt);
  const std::string link = tmp.file("link.gguf");
  std::filesystem::create_symlink(model_path, link);
  for (const std::string& target : {model_path, link}) {
    CHECK_THROWS_WITH(s.save(target), Catch::Contains("the session file"));
  }
  CHECK(read_all(model_path) == before);
}

TEST_CASE("the checksum is the same fed whole or in pieces, and stays what files recorded",
          "[session]") {
  std::vector<uint8_t> bytes(1000);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 37 + 11);
  const uint64_t whole = ktx::core::checksum(bytes.data(), bytes.size());
  for (size_t step : {1, 3, 7, 31, 32, 33, 100, 999}) {
    ktx::core::Checksum c;
    for (size_t at = 0; at < bytes.size(); at += step) {
      c.update(bytes.data() + at, std::min(step, bytes.size() - at));
    }
    CHECK(c.digest() == whole);
  }
  // Every byte matters, and so does the length (a zero appended).
  for (size_t at : {0, 31, 32, 500, 999}) {
    std::vector<uint8_t> changed = bytes;
    changed[at] ^= 1;
    CHECK(ktx::core::checksum(changed.data(), changed.size()) != whole);
  }
  std::vector<uint8_t> longer = bytes;
  longer.push_back(0);
  CHECK(ktx::core::checksum(longer.data(), longer.size()) != whole);
  // Saved files hold these values: changing the function would make every file "damaged".
  CHECK(ktx::core::checksum(nullptr, 0) == 0xe7b4cdac2b85b3d3u);
  CHECK(whole == 0xe0d409dc425d3db3u);
}

TEST_CASE("models that differ inside a tensor have different fingerprints", "[session]") {
  TempDir tmp;
  const std::string changed = tmp.file("changed.gguf");
  std::filesystem::copy_file(golden("ds2_lite"), changed);
  {
    const gguf::File f = gguf::File::open(changed);
    const gguf::TensorInfo& t = f.tensor("blk.1.ffn_down_exps.weight");
    const uint64_t at = f.data_offset() + t.offset + t.n_bytes / 2 + 2;  // the middle window
    std::string bytes = read_all(changed);
    bytes[at] = static_cast<char>(bytes[at] ^ 0x40);
    std::ofstream(changed, std::ios::binary | std::ios::trunc) << bytes;
  }
  auto original = load_golden("ds2_lite");
  ModelOptions o;
  o.n_threads = 2;
  auto other = Model::load(changed, o);
  CHECK(original->fingerprint() != other->fingerprint());
  CHECK(original->fingerprint() == load_golden("ds2_lite")->fingerprint());  // stable
  Session s(original, 8);
  s.eval(kPrompt);
  const std::string path = tmp.file("s.session");
  s.save(path);
  Session t(other, 8);
  check_refused(t, path, ErrorCode::kInvalidArgument, "saved from another model");
}
