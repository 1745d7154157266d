// Tokenizer: the behaviour that does not need a reference implementation — BPE merge order,
// special tokens, BOS/EOS rules, decoding, SentencePiece fallbacks, errors naming file and key,
// thread safety — on small vocabularies built here, and chat templates against the Jinja
// renderings in tests/data/chat_template_goldens.txt. tests/python/test_tokenizer.py compares
// whole models with Hugging Face tokenizers, sentencepiece and llama.cpp.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <thread>

#include "gguf_test_helpers.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/tokenizer.h"

using namespace ktx;
using gguf::Value;

namespace {

constexpr int32_t kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6;

// GPT-2's byte alphabet, spelled out independently of lib/tokenizer/byte_level.cpp.
std::string byte_symbol(int b) {
  bool own = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int cp = b;
  if (!own) {
    int n = 0;
    for (int i = 0; i < b; ++i) {
      bool o = (i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF);
      if (!o) ++n;
    }
    cp = 256 + n;
  }
  std::string s;
  if (cp < 0x80) {
    s += static_cast<char>(cp);
  } else {
    s += static_cast<char>(0xC0 | (cp >> 6));
    s += static_cast<char>(0x80 | (cp & 0x3F));
  }
  return s;
}

// A vocabulary under construction, written to a GGUF file when done.
struct VocabBuilder {
  std::vector<std::string> tokens;
  std::vector<int32_t> types;
  std::vector<float> scores;
  std::vector<std::string> merges;
  std::map<std::string, Value> keys;
  bool write_scores = false;  // SentencePiece files carry them, BPE files need not
  bool write_merges = false;  // BPE files carry them (possibly none)

  int32_t add(const std::string& text, int32_t type = kNormal, float score = 0.0f) {
    tokens.push_back(text);
    types.push_back(type);
    scores.push_back(score);
    return static_cast<int32_t>(tokens.size() - 1);
  }
  int32_t id(const std::string& text) const {
    for (size_t i = 0; i < tokens.size(); ++i) {
      if (tokens[i] == text) return static_cast<int32_t>(i);
    }
    FAIL("no token " << text);
    return -1;
  }
  // Adds the merge and its result token; returns the result's id.
  int32_t merge(const std::string& left, const std::string& right) {
    merges.push_back(left + " " + right);
    return add(left + right);
  }

  std::string write(const gguf::test::TempDir& dir, const std::string& name) const {
    gguf::Writer w;
    for (const auto& [key, value] : keys) w.set_metadata(key, value);
    if (!tokens.empty()) w.set_metadata("tokenizer.ggml.tokens", Value::string_array(tokens));
    if (!types.empty()) w.set_metadata("tokenizer.ggml.token_type", Value::int32_array(types));
    if (write_merges) w.set_metadata("tokenizer.ggml.merges", Value::string_array(merges));
    if (write_scores) w.set_metadata("tokenizer.ggml.scores", Value::float32_array(scores));
    std::string path = dir.file(name);
    w.write(path);
    return path;
  }
};

// Byte-level BPE: specials first, then all 256 byte symbols.
VocabBuilder bpe_vocab(const std::string& pre = "gpt-2") {
  VocabBuilder v;
  v.keys["tokenizer.ggml.model"] = Value::string("gpt2");
  v.keys["tokenizer.ggml.pre"] = Value::string(pre);
  v.write_merges = true;
  v.add("<|endoftext|>", kControl);  // 0
  v.add("<|im_start|>", kControl);   // 1
  v.add("<|im_end|>", kControl);     // 2
  v.add("<tool>", kUserDefined);     // 3
  for (int b = 0; b < 256; ++b) v.add(byte_symbol(b));
  v.keys["tokenizer.ggml.bos_token_id"] = Value::uint32(0);
  v.keys["tokenizer.ggml.eos_token_id"] = Value::uint32(2);
  return v;
}

int32_t byte_id(int b) { return 4 + b; }

Tokenizer load(const VocabBuilder& v, const gguf::test::TempDir& dir,
               const std::string& name = "t.gguf") {
  return Tokenizer::from_gguf(gguf::File::open(v.write(dir, name)));
}

// The message of the ktx::Error `f` throws, checking its code.
template <typename F>
std::string error_of(F&& f, ErrorCode code) {
  try {
    f();
  } catch (const Error& e) {
    CHECK(static_cast<int>(e.code()) == static_cast<int>(code));
    return e.what();
  }
  FAIL("no ktx::Error thrown");
  return {};
}

using Ids = std::vector<int32_t>;

}  // namespace

TEST_CASE("tokenizer: BPE merges by rank, leftmost first among equals", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab();
  int32_t he = v.merge("h", "e");
  int32_t ll = v.merge("l", "l");
  int32_t hell = v.merge("he", "ll");
  int32_t hello = v.merge("hell", "o");
  v.merge(byte_symbol(' '), "w");
  v.merge("o", "r");
  int32_t wor = v.merge(byte_symbol(' ') + "w", "or");
  int32_t bc = v.merge("b", "c");
  v.merge("a", "b");
  int32_t aa = v.merge("a", "a");
  Tokenizer t = load(v, dir);
  (void)he;
  (void)ll;
  (void)hell;

  CHECK(t.encode("hello world", false, false) == Ids{hello, wor, byte_id('l'), byte_id('d')});
  // "b c" ranks before "a b": abc -> a|bc, and (a, bc) is no merge.
  CHECK(t.encode("abc", false, false) == Ids{byte_id('a'), bc});
  // Equal ranks: the leftmost pair first.
  CHECK(t.encode("aaa", false, false) == Ids{aa, byte_id('a')});
  CHECK(t.encode("", true, true).empty());
  CHECK(t.n_vocab() == static_cast<int32_t>(v.tokens.size()));
  CHECK(t.model() == Tokenizer::Model::kBytePairEncoding);
  CHECK(t.pre_tokenizer() == "gpt-2");
}

TEST_CASE("tokenizer: merge order follows tokenizer.ggml.merges, not token ids", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab();
  int32_t ab = v.merge("a", "b");
  v.merge("b", "c");
  CHECK(load(v, dir).encode("abc", false, false) == Ids{ab, byte_id('c')});
}

TEST_CASE("tokenizer: llama-bpe takes a piece that is a token whole (ignore_merges)",
          "[tokenizer]") {
  gguf::test::TempDir dir;
  for (std::string pre : {"gpt-2", "llama-bpe"}) {
    auto v = bpe_vocab(pre);
    int32_t bc = v.merge("b", "c");
    int32_t abc = v.add("abc");
    Tokenizer t = load(v, dir, pre + ".gguf");
    Ids expected = pre == "llama-bpe" ? Ids{abc} : Ids{byte_id('a'), bc};
    CHECK(t.encode("abc", false, false) == expected);
  }
}

TEST_CASE("tokenizer: special tokens are split out leftmost-longest", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab();
  int32_t im = v.add("<|im", kControl);
  int32_t ab = v.add("ab", kUserDefined);
  int32_t bcd = v.add("bcd", kUserDefined);
  Tokenizer t = load(v, dir);

  CHECK(t.encode("x<|im_start|>y", false, true) == Ids{byte_id('x'), 1, byte_id('y')});
  CHECK(t.encode("<|im_end", false, true) ==
        Ids{im, byte_id('_'), byte_id('e'), byte_id('n'), byte_id('d')});
  // leftmost wins over longest: "ab" starts first
  CHECK(t.encode("abcd", false, false) == Ids{ab, byte_id('c'), byte_id('d')});
  CHECK(t.encode("xbcd", false, false) == Ids{byte_id('x'), bcd});

  // Without parse_special control tokens are plain text; user-defined ones still match.
  Ids plain = t.encode("<|im_start|><tool>", false, false);
  CHECK(std::find(plain.begin(), plain.end(), 1) == plain.end());
  CHECK(plain.back() == 3);
  CHECK(t.decode(plain) == "<|im_start|><tool>");
  CHECK(t.encode("<|im_start|><|im_start|>", false, true) == Ids{1, 1});
}

TEST_CASE("tokenizer: BOS and EOS follow the file's flags and llama.cpp's defaults",
          "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab();
  CHECK(load(v, dir, "a.gguf").encode("a", true, false) == Ids{byte_id('a')});
  CHECK_FALSE(load(v, dir, "a.gguf").add_bos());

  v.keys["tokenizer.ggml.add_bos_token"] = Value::boolean(true);
  v.keys["tokenizer.ggml.add_eos_token"] = Value::boolean(true);
  Tokenizer both = load(v, dir, "b.gguf");
  CHECK(both.encode("a", true, false) == Ids{0, byte_id('a'), 2});
  CHECK(both.encode("a", false, false) == Ids{byte_id('a')});
  CHECK(both.bos() == 0);
  CHECK(both.eos() == 2);

  auto llama3 = bpe_vocab("llama-bpe");  // llama.cpp adds BOS for Llama 3 files by default
  CHECK(load(llama3, dir, "c.gguf").encode("a", true, false) == Ids{0, byte_id('a')});

  llama3.keys.erase("tokenizer.ggml.bos_token_id");
  std::string message = error_of([&] { load(llama3, dir, "d.gguf"); }, ErrorCode::kInvalidFile);
  CHECK_THAT(message, Catch::Contains("d.gguf") && Catch::Contains("tokenizer.ggml.bos_token_id"));
}

TEST_CASE("tokenizer: end of generation", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab();
  int32_t eot = v.add("<|eot_id|>", kControl);
  int32_t other = v.add("<|other|>", kControl);
  v.keys["tokenizer.ggml.eom_token_id"] = Value::uint32(static_cast<uint32_t>(other));
  Tokenizer t = load(v, dir);
  CHECK(t.is_eog(2));      // EOS
  CHECK(t.is_eog(0));      // <|endoftext|>, by its text
  CHECK(t.is_eog(eot));    // <|eot_id|>, by its text
  CHECK(t.is_eog(other));  // tokenizer.ggml.eom_token_id
  CHECK_FALSE(t.is_eog(1));
  CHECK_FALSE(t.is_eog(byte_id('a')));
}

TEST_CASE("tokenizer: decode renders control tokens only on request", "[tokenizer]") {
  gguf::test::TempDir dir;
  Tokenizer t = load(bpe_vocab(), dir);
  Ids ids = {1, byte_id('h'), byte_id('i'), 3, 2};
  CHECK(t.decode(ids) == "hi<tool>");
  CHECK(t.decode(ids, true) == "<|im_start|>hi<tool><|im_end|>");
  // One byte of a two-byte character per token: pieces are raw bytes.
  Ids e_acute = t.encode("é", false, false);
  REQUIRE(e_acute.size() == 2);
  CHECK(t.token_piece(e_acute[0]) == "\xC3");
  CHECK(t.token_piece(e_acute[1]) == "\xA9");
  CHECK(t.token_piece(1) == "<|im_start|>");
  CHECK(t.token_piece(1, false).empty());
  CHECK(t.token_text(byte_id(' ')) == "Ġ");
  CHECK(t.token_type(3) == TokenType::kUserDefined);
  CHECK(t.find_token("<tool>") == 3);
  CHECK(t.find_token("nope") == -1);
  std::string bad = error_of([&] { t.decode(Ids{t.n_vocab()}); }, ErrorCode::kInvalidArgument);
  CHECK_THAT(bad, Catch::Contains(std::to_string(t.n_vocab())));
  error_of([&] { t.token_text(-1); }, ErrorCode::kInvalidArgument);
}

TEST_CASE("tokenizer: every byte string round trips through every pre-tokenizer", "[tokenizer]") {
  gguf::test::TempDir dir;
  std::mt19937 rng(Catch::rngSeed());
  const std::vector<std::string> fragments = {
      "a",      "Z",      "é",      "中",     "の",  "한",   "🤗", " ",        "  ",
      "\t",     "\n",     "\r\n",   "1",      "123", "'s",   "'LL",  ".",        "!?",
      "\u00a0", "\u3000", "\u180e", "\u2028", "ſ",   "\xff", "\xc3", "\xe4\xb8", "\x80"};
  for (std::string pre : {"default", "gpt-2", "smollm", "llama-bpe", "qwen2", "deepseek-llm",
                          "deepseek-coder", "deepseek-v3"}) {
    auto v = bpe_vocab(pre);
    v.merge(byte_symbol(' '), byte_symbol(' '));
    v.merge("e", "r");
    Tokenizer t = load(v, dir, pre + ".gguf");
    for (int round = 0; round < 200; ++round) {
      std::string s;
      int n = static_cast<int>(rng() % 30);
      for (int i = 0; i < n; ++i) s += fragments[rng() % fragments.size()];
      if (round % 3 == 0) {  // raw random bytes, mostly invalid UTF-8
        for (int i = 0; i < 8; ++i) s += static_cast<char>(rng() & 0xFF);
      }
      INFO(pre << ": " << s);
      CHECK(t.decode(t.encode(s, false, false)) == s);
    }
  }
}

TEST_CASE("tokenizer: pre-tokenizer aliases behave as their family", "[tokenizer]") {
  gguf::test::TempDir dir;
  const std::string text = "Hello World's 1234567 中文 (x)\n\n  \tend ";
  const std::map<std::string, std::vector<std::string>> aliases = {
      {"gpt-2", {"phi-2", "roberta-bpe", "mpt", "olmo", "jais"}},
      {"llama-bpe", {"llama3", "llama-v3", "falcon3"}},
      {"qwen2", {"deepseek-r1-qwen", "stablelm2", "megrez"}},
      {"smollm", {"starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"}}};
  for (const auto& [family, names] : aliases) {
    Ids expected = load(bpe_vocab(family), dir, family + ".gguf").encode(text, true, false);
    for (const auto& name : names) {
      Tokenizer t = load(bpe_vocab(name), dir, name + ".gguf");
      CHECK(t.pre_tokenizer() == name);
      CHECK(t.encode(text, true, false) == expected);
    }
  }
}

TEST_CASE("tokenizer: long inputs (JIT stack, deep merges)", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab("deepseek-v3");
  int32_t aa = v.merge("a", "a");
  Tokenizer t = load(v, dir);
  std::string spaces(1 << 20, ' ');
  spaces += "x";
  CHECK(t.decode(t.encode(spaces, false, false)) == spaces);
  std::string letters(1 << 18, 'a');
  Ids ids = t.encode(letters, false, false);
  CHECK(ids.size() == letters.size() / 2);
  CHECK(std::all_of(ids.begin(), ids.end(), [&](int32_t id) { return id == aa; }));
}

TEST_CASE("tokenizer: one Tokenizer serves many threads", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = bpe_vocab("deepseek-v3");
  v.merge("t", "h");
  v.merge("th", "e");
  Tokenizer t = load(v, dir);
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) {
    texts.push_back("the " + std::to_string(i * 7919) + " threads<|im_start|>中文 " +
                    std::string(static_cast<size_t>(i), 'e'));
  }
  std::vector<Ids> expected;
  for (const auto& s : texts) expected.push_back(t.encode(s, true, true));
  std::vector<int> failures(4, 0);
  std::vector<std::thread> threads;
  for (int k = 0; k < 4; ++k) {
    threads.emplace_back([&, k, copy = t] {
      for (int rep = 0; rep < 20; ++rep) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (copy.encode(texts[i], true, true) != expected[i]) ++failures[k];
          if (copy.decode(expected[i], true) != texts[i]) ++failures[k];
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures == std::vector<int>(4, 0));
}

// ---- SentencePiece ------------------------------------------------------------------------------

namespace {

const std::string kSpace = "\xE2\x96\x81";  // ▁

VocabBuilder spm_vocab(bool byte_fallback) {
  VocabBuilder v;
  v.keys["tokenizer.ggml.model"] = Value::string("llama");
  v.add("<unk>", kUnknown);
  v.add("<s>", kControl);
  v.add("</s>", kControl);
  if (byte_fallback) {
    for (int b = 0; b < 256; ++b) {
      char name[8];
      std::snprintf(name, sizeof name, "<0x%02X>", b);
      v.add(name, kByte);
    }
  }
  for (const char* c : {"a", "b", "c", "x"}) v.add(c, kNormal, -10.0f);
  v.add(kSpace, kNormal, -10.0f);
  v.add("ab", kNormal, -2.0f);
  v.add("bc", kNormal, -1.0f);
  v.add(kSpace + "a", kNormal, -3.0f);
  v.add("abc", kNormal, -0.5f);
  v.add(kSpace + kSpace, kNormal, -4.0f);
  v.keys["tokenizer.ggml.bos_token_id"] = Value::uint32(1);
  v.keys["tokenizer.ggml.eos_token_id"] = Value::uint32(2);
  v.keys["tokenizer.ggml.unknown_token_id"] = Value::uint32(0);
  v.write_scores = true;
  return v;
}

}  // namespace

TEST_CASE("tokenizer: SentencePiece merges by score and falls back to bytes", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = spm_vocab(true);
  Tokenizer t = load(v, dir, "spm.gguf");
  CHECK(t.model() == Tokenizer::Model::kSentencePiece);
  CHECK(t.add_bos());  // llama.cpp's default for SentencePiece files
  // ▁ a b c: bc (-1) first, then a+bc = abc (-0.5); ▁+abc is no piece.
  CHECK(t.encode("abc", false, false) == Ids{v.id(kSpace), v.id("abc")});
  CHECK(t.encode("abc", true, false) == Ids{1, v.id(kSpace), v.id("abc")});
  // z is not a piece: its byte; é: its two bytes
  CHECK(t.encode("az", false, false) == Ids{v.id(kSpace + "a"), v.id("<0x7A>")});
  CHECK(t.encode("é", false, false) == Ids{v.id(kSpace), v.id("<0xC3>"), v.id("<0xA9>")});
  for (std::string s : {"abc", " abc", "  a  b ", "é z ", "x<s>x", ""}) {
    CHECK(t.decode(t.encode(s, true, false)) == s);
  }
  CHECK(t.decode(Ids{1, v.id(kSpace + "a")}, true) == "<s>a");  // the prefix space goes
  CHECK(t.token_piece(v.id(kSpace + "a")) == " a");
  CHECK(t.token_piece(v.id("<0x7A>")) == "z");

  v.keys["tokenizer.ggml.add_space_prefix"] = Value::boolean(false);
  Tokenizer no_prefix = load(v, dir, "np.gguf");
  CHECK(no_prefix.encode("abc", false, false) == Ids{v.id("abc")});
  CHECK(no_prefix.decode(no_prefix.encode(" abc", false, false)) == " abc");
}

TEST_CASE("tokenizer: SentencePiece without byte tokens folds unknown runs", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = spm_vocab(false);
  Tokenizer t = load(v, dir, "unk.gguf");
  CHECK(t.encode("zzé", false, false) == Ids{v.id(kSpace), 0});
  CHECK(t.encode("z a z", false, false) ==
        Ids{v.id(kSpace), 0, v.id(kSpace + "a"), v.id(kSpace), 0});
  CHECK(t.decode(Ids{0}).empty());
  CHECK(t.decode(Ids{0}, true) == "<unk>");
}

TEST_CASE("tokenizer: SentencePiece splits unused pieces back", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto v = spm_vocab(true);
  v.types[static_cast<size_t>(v.id("ab"))] = kUnused;
  v.keys["tokenizer.ggml.add_space_prefix"] = Value::boolean(false);
  Tokenizer t = load(v, dir, "unused.gguf");
  CHECK(t.encode("ab", false, false) == Ids{v.id("a"), v.id("b")});
}

// ---- errors -------------------------------------------------------------------------------------

TEST_CASE("tokenizer: missing or inconsistent metadata names the file and key", "[tokenizer]") {
  gguf::test::TempDir dir;
  auto expect = [&](VocabBuilder v, ErrorCode code, std::vector<std::string> parts) {
    std::string message = error_of([&] { load(v, dir, "bad.gguf"); }, code);
    CHECK_THAT(message, Catch::Contains("bad.gguf"));
    for (const auto& p : parts) CHECK_THAT(message, Catch::Contains(p));
  };
  {
    auto v = bpe_vocab();
    v.keys.erase("tokenizer.ggml.model");
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.model"});
  }
  {
    auto v = bpe_vocab();
    v.keys["tokenizer.ggml.model"] = Value::string("bert");
    expect(v, ErrorCode::kUnsupported, {"\"bert\"", "gpt2", "llama"});
  }
  {
    auto v = bpe_vocab();
    v.keys["tokenizer.ggml.model"] = Value::string("none");
    expect(v, ErrorCode::kUnsupported, {"\"none\"", "has no vocabulary", "token ids"});
  }
  {
    auto v = bpe_vocab("tekken");
    expect(v, ErrorCode::kUnsupported,
           {"tokenizer.ggml.pre", "tekken", "deepseek-v3", "smollm", "qwen2", "llama-bpe",
            "deepseek-llm"});
  }
  {
    auto v = bpe_vocab();
    v.keys["tokenizer.ggml.pre"] = Value::uint32(3);
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.pre", "STRING"});
  }
  {
    auto v = bpe_vocab();
    v.merges.push_back("x qq");
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.merges[0]", "'qq'"});
  }
  {
    auto v = bpe_vocab();
    v.merges.push_back("x y");  // both exist, "xy" does not
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.merges[0]", "'xy'"});
  }
  {
    auto v = bpe_vocab();
    v.merges.push_back("xy");
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.merges[0]", "two tokens"});
  }
  {
    auto v = bpe_vocab();
    v.write_merges = false;
    expect(v, ErrorCode::kInvalidFile, {"no tokenizer.ggml.merges"});
  }
  {
    auto v = bpe_vocab();
    v.types.pop_back();
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.token_type", "259", "260"});
  }
  {
    auto v = bpe_vocab();
    v.types[7] = 9;
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.token_type[7] = 9"});
  }
  {
    auto v = bpe_vocab();
    v.add("a");
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.tokens[260]", "repeats"});
  }
  {
    auto v = bpe_vocab();
    v.keys["tokenizer.ggml.eos_token_id"] = Value::uint32(100000);
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.eos_token_id = 100000"});
  }
  {
    auto v = bpe_vocab();
    v.keys["tokenizer.ggml.add_bos_token"] = Value::string("yes");
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.add_bos_token", "BOOL"});
  }
  {
    auto v = bpe_vocab();
    v.tokens.clear();
    v.types.clear();
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.tokens"});
  }
  {  // SentencePiece: scores are required and must match
    auto v = spm_vocab(true);
    v.write_scores = false;
    expect(v, ErrorCode::kInvalidFile, {"no tokenizer.ggml.scores"});
    v.write_scores = true;
    v.scores.pop_back();
    expect(v, ErrorCode::kInvalidFile, {"tokenizer.ggml.scores has 268 entries"});
  }
  {  // a byte-typed token must be written <0xNN>
    auto v = spm_vocab(true);
    v.types[static_cast<size_t>(v.id("x"))] = kByte;
    expect(v, ErrorCode::kInvalidFile, {"'x'", "<0xNN>"});
  }
}

// ---- chat templates -----------------------------------------------------------------------------

namespace {

struct GoldenTemplate {
  std::string text, bos, eos;
};
struct GoldenCase {
  std::string template_name;
  bool add_generation_prompt = false;
  std::vector<ChatMessage> messages;
  std::string expected;
};

std::filesystem::path goldens_path() {
  if (const char* src = std::getenv("KTX_SOURCE_DIR")) {
    return std::filesystem::path(src) / "tests/data/chat_template_goldens.txt";
  }
  return std::filesystem::path(__FILE__).parent_path().parent_path() / "data" /
         "chat_template_goldens.txt";
}

// Reads the length-prefixed records make_tokenizer_goldens.py writes.
void read_goldens(std::map<std::string, GoldenTemplate>& templates,
                  std::vector<GoldenCase>& cases) {
  std::ifstream in(goldens_path(), std::ios::binary);
  REQUIRE(in.good());
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t pos = 0;
  auto line = [&] {
    size_t end = bytes.find('\n', pos);
    REQUIRE(end != std::string::npos);
    std::string l = bytes.substr(pos, end - pos);
    pos = end + 1;
    return l;
  };
  auto take = [&](size_t n) {
    REQUIRE(pos + n < bytes.size());
    std::string s = bytes.substr(pos, n);
    pos += n;
    REQUIRE(bytes[pos] == '\n');
    ++pos;
    return s;
  };
  std::string current;
  while (pos < bytes.size()) {
    std::istringstream header(line());
    std::string tag;
    header >> tag;
    if (tag.empty() || tag[0] == '#') continue;
    if (tag == "T") {
      size_t n = 0;
      header >> current >> n;
      templates[current].text = take(n);
    } else if (tag == "B" || tag == "E") {
      size_t n = 0;
      header >> n;
      (tag == "B" ? templates[current].bos : templates[current].eos) = take(n);
    } else if (tag == "C") {
      GoldenCase c;
      int gen = 0;
      size_t count = 0;
      header >> c.template_name >> gen >> count;
      c.add_generation_prompt = gen != 0;
      for (size_t i = 0; i < count; ++i) {
        std::istringstream m(line());
        std::string tag_m;
        size_t role_n = 0, content_n = 0;
        m >> tag_m >> role_n >> content_n;
        REQUIRE(tag_m == "M");
        std::string both = take(role_n + content_n);
        c.messages.push_back({both.substr(0, role_n), both.substr(role_n)});
      }
      std::istringstream x(line());
      std::string tag_x;
      size_t n = 0;
      x >> tag_x >> n;
      REQUIRE(tag_x == "X");
      c.expected = take(n);
      cases.push_back(std::move(c));
    } else {
      FAIL("unexpected record " << tag);
    }
  }
}

}  // namespace

TEST_CASE("chat templates: rendering matches the templates' Jinja", "[tokenizer][chat]") {
  std::map<std::string, GoldenTemplate> templates;
  std::vector<GoldenCase> cases;
  read_goldens(templates, cases);
  REQUIRE(templates.size() == 6);
  REQUIRE(cases.size() >= 100);
  const std::map<std::string, std::string> family = {
      {"smollm2", "chatml"},        {"chatml", "chatml"},
      {"deepseek-v2", "deepseek2"}, {"deepseek-v3", "deepseek3"},
      {"deepseek-r1", "deepseek3"}, {"deepseek-v3-0324", "deepseek3"}};
  for (const auto& c : cases) {
    const GoldenTemplate& g = templates.at(c.template_name);
    ChatTemplate t = ChatTemplate::detect(g.text);
    CHECK(t.family() == family.at(c.template_name));
    INFO(c.template_name << ", " << c.messages.size() << " messages, generation prompt "
                         << c.add_generation_prompt);
    CHECK(t.render(c.messages, c.add_generation_prompt, g.bos, g.eos) == c.expected);
  }
}

TEST_CASE("chat templates: the file's template through the Tokenizer", "[tokenizer][chat]") {
  gguf::test::TempDir dir;
  std::map<std::string, GoldenTemplate> templates;
  std::vector<GoldenCase> cases;
  read_goldens(templates, cases);
  auto v = bpe_vocab();
  v.add("<｜begin▁of▁sentence｜>", kControl);
  v.add("<｜end▁of▁sentence｜>", kControl);
  v.keys["tokenizer.ggml.bos_token_id"] = Value::uint32(static_cast<uint32_t>(v.tokens.size() - 2));
  v.keys["tokenizer.ggml.eos_token_id"] = Value::uint32(static_cast<uint32_t>(v.tokens.size() - 1));
  v.keys["tokenizer.chat_template"] = Value::string(templates.at("deepseek-v2").text);
  Tokenizer t = load(v, dir);
  std::vector<ChatMessage> chat = {{"user", "Hi"}, {"assistant", "Hello"}};
  CHECK(t.apply_chat_template(chat, true) ==
        "<｜begin▁of▁sentence｜>User: Hi\n\nAssistant: Hello<｜end▁of▁sentence｜>Assistant:");
  CHECK(t.chat_template() == templates.at("deepseek-v2").text);

  v.keys.erase("tokenizer.chat_template");
  std::string none = error_of([&] { load(v, dir, "none.gguf").apply_chat_template(chat, true); },
                              ErrorCode::kUnsupported);
  CHECK_THAT(none, Catch::Contains("none.gguf") && Catch::Contains("tokenizer.chat_template"));

  v.keys["tokenizer.chat_template"] = Value::string("{{ messages | tojson }}");
  Tokenizer odd = load(v, dir, "odd.gguf");  // an unknown template does not stop loading
  std::string message =
      error_of([&] { odd.apply_chat_template(chat, false); }, ErrorCode::kUnsupported);
  CHECK_THAT(message, Catch::Contains("odd.gguf") && Catch::Contains("{{ messages | tojson }}"));
}

TEST_CASE("chat templates: unknown families are refused by name", "[tokenizer][chat]") {
  const std::vector<std::pair<std::string, std::string>> refused = {
      {"{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
       "'<|end_header_id|>\\n\\n' + message['content'] + '<|eot_id|>' }}{% endfor %}",
       "none of the known families"},
      {"{% for m in messages %}{{'<|im_start|>' + m['role'] + '<|im_sep|>' + m['content'] + "
       "'<|im_end|>'}}{% endfor %}",
       "Phi-4"},
      {"{%- if tools %}{{- '<|im_start|>system\\n' }}{%- endif %}{{'<|im_start|>'}}", "tool-call"},
      {"{% if not thinking is defined %}{% set thinking = false %}{% endif %}{{'<｜User｜>'}}"
       "{{'<｜Assistant｜>'}}{{'<｜end▁of▁sentence｜>'}}{{ns.system_prompt}}",
       "thinking"},
      {"{% if messages[0]['role'] != 'system' %}{{ '<|im_start|>system\\nHi<|im_end|>\\n' }}"
       "{% endif %}{{'<|im_start|>'}}",
       "fixed system turn"},
  };
  for (const auto& [jinja, why] : refused) {
    std::string message = error_of([&] { ChatTemplate::detect(jinja); }, ErrorCode::kUnsupported);
    CHECK_THAT(message, Catch::Contains(why) && Catch::Contains("chatml") &&
                            Catch::Contains("deepseek3") && Catch::Contains(jinja.substr(0, 20)));
  }
}
