// The pre-tokenizer table (which regex sequence each tokenizer.ggml.pre name means) and the PCRE2
// wrapper that runs them. The sequences are those of each family's Hugging Face tokenizer.json
// (a Split per regex, then ByteLevel without its own regex), so ktx splits exactly where the
// models were trained to; where llama.cpp's hand-tuned lists differ, this file says so.
#include "tokenizer/pre_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <fmt/format.h>
#include <pcre2.h>

#include <array>

#include "ktx/error.h"
#include "tokenizer/utf8.h"

namespace ktx::tokenizer {
namespace {

// GPT-2's own split (also what ByteLevel(use_regex = true) applies).
constexpr std::string_view kGpt2 =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Llama 3's tokenizer.json: case-insensitive contractions, digits in groups of up to three.
constexpr std::string_view kLlama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// Qwen2: as Llama 3 but every digit on its own.
constexpr std::string_view kQwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N})"
    R"(| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// DeepSeek LLM / V2 (tokenizer.json: five Splits, then Digits with individual_digits). The
// letter class is DeepSeek's explicit list of cased letters (Latin, Greek, Cyrillic, Armenian,
// Georgian, Cherokee, Glagolitic, Coptic, fullwidth, Deseret, Osage, Old Hungarian, Warang
// Citi, Adlam), written here as code points so no editor can normalise it.
constexpr std::string_view kDeepSeekNewline = R"([\r\n])";
constexpr std::string_view kDeepSeekLetters =
    R"(\s?[A-Za-z\x{B5}\x{C0}-\x{D6}\x{D8}-\x{F6}\x{F8}-\x{1BA}\x{1BC}-\x{1BF}\x{1C4}-\x{293})"
    R"(\x{295}-\x{2AF}\x{370}-\x{373}\x{376}\x{377}\x{37B}-\x{37D}\x{37F}\x{386}\x{388}-\x{38A})"
    R"(\x{38C}\x{38E}-\x{3A1}\x{3A3}-\x{3F5}\x{3F7}-\x{481}\x{48A}-\x{52F}\x{531}-\x{556})"
    R"(\x{10A0}-\x{10C5}\x{13A0}-\x{13F5}\x{13F8}-\x{13FD}\x{1C90}-\x{1CBA}\x{1CBD}-\x{1CBF})"
    R"(\x{1D00}-\x{1D2B}\x{1D6B}-\x{1D77}\x{1D79}-\x{1D9A}\x{1E00}-\x{1F15}\x{1F18}-\x{1F1D})"
    R"(\x{1F20}-\x{1F45}\x{1F48}-\x{1F4D}\x{1F50}-\x{1F57}\x{1F59}\x{1F5B}\x{1F5D})"
    R"(\x{1F5F}-\x{1F7D}\x{1F80}-\x{1FB4}\x{1FB6}-\x{1FBC}\x{1FBE}\x{1FC2}-\x{1FC4})"
    R"(\x{1FC6}-\x{1FCC}\x{1FD0}-\x{1FD3}\x{1FD6}-\x{1FDB}\x{1FE0}-\x{1FEC}\x{1FF2}-\x{1FF4})"
    R"(\x{1FF6}-\x{1FFC}\x{2102}\x{2107}\x{210A}-\x{2113}\x{2115}\x{2119}-\x{211D}\x{2124})"
    R"(\x{2126}\x{2128}\x{212A}-\x{212D}\x{212F}-\x{2134}\x{2139}\x{213C}-\x{213F})"
    R"(\x{2145}-\x{2149}\x{214E}\x{2183}\x{2184}\x{2C00}-\x{2C7B}\x{2C7E}-\x{2CE4})"
    R"(\x{2CEB}-\x{2CEE}\x{2CF2}\x{2CF3}\x{A640}-\x{A66D}\x{A680}-\x{A69B}\x{A722}-\x{A76F})"
    R"(\x{A771}-\x{A787}\x{A78B}-\x{A78E}\x{AB70}-\x{ABBF}\x{FB00}-\x{FB06}\x{FB13}-\x{FB17})"
    R"(\x{FF21}-\x{FF3A}\x{FF41}-\x{FF5A}\x{10400}-\x{1044F}\x{104B0}-\x{104D3})"
    R"(\x{104D8}-\x{104FB}\x{10C80}-\x{10CB2}\x{10CC0}-\x{10CF2}\x{118A0}-\x{118DF})"
    R"(\x{1E900}-\x{1E943}]+)";
// ASCII punctuation, fullwidth forms, curly quotes, ideographic space and marks.
constexpr std::string_view kDeepSeekPunctuation =
    R"(\s?[!-/:-~\x{FF01}-\x{FF0F}\x{FF1A}-\x{FF5E}\x{2018}-\x{201F}\x{3000}-\x{3002}]+)";
constexpr std::string_view kDeepSeekTrailingSpace = R"(\s+$)";
// CJK ideographs and everything from U+0800 up to them, and Hangul.
constexpr std::string_view kDeepSeekCjk =
    R"([\x{4E00}-\x{9FA5}\x{800}-\x{4E00}\x{AC00}-\x{D7FF}]+)";
// Hugging Face's Digits(individual_digits = true). llama.cpp uses \p{N}+ here instead; the two
// agree for DeepSeek's vocabulary, which has no multi-digit tokens.
constexpr std::string_view kEachDigit = R"(\p{N})";

// DeepSeek-Coder: letters and punctuation by Unicode property.
constexpr std::string_view kDeepSeekCoderLetters = R"(\s?\p{L}+)";
constexpr std::string_view kDeepSeekCoderPunctuation = R"(\s?\p{P}+)";

// DeepSeek V3 / R1: digits in threes, CJK ideographs and kana, then a GPT-4-like split.
constexpr std::string_view kDeepSeek3Digits = R"(\p{N}{1,3})";
constexpr std::string_view kDeepSeek3Cjk =
    R"([\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+)";
constexpr std::string_view kDeepSeek3Main =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+)"
    R"(| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// llama.cpp's "default": what it applies to files that name no pre-tokenizer (old conversions).
constexpr std::string_view kDefaultPunctuation = R"([\p{P}\$\+<=>\^~\|]+)";
constexpr std::string_view kDefaultDigits = R"(\p{N}+)";
constexpr std::string_view kDefaultThreeDigits = R"([0-9][0-9][0-9])";

struct Family {
  // tokenizer.ggml.pre values: the first is the family's own, the others are names llama.cpp
  // maps to the same regex list.
  std::vector<std::string_view> names;
  std::vector<std::string_view> regexes;
  bool ignore_merges = false;
  bool adds_bos_by_default = false;
};

std::vector<Family> families() {
  return {
      {{"default"}, {kDefaultPunctuation, kGpt2, kDefaultDigits, kDefaultThreeDigits}},
      {{"gpt-2", "phi-2", "roberta-bpe", "mpt", "olmo", "jais"}, {kGpt2}},
      {{"llama-bpe", "llama3", "llama-v3", "falcon3"}, {kLlama3}, true, true},
      {{"qwen2", "deepseek-r1-qwen", "stablelm2", "megrez"}, {kQwen2}},
      {{"smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva-7b"},
       {kEachDigit, kGpt2}},
      {{"deepseek-llm"},
       {kDeepSeekNewline, kDeepSeekLetters, kDeepSeekPunctuation, kDeepSeekTrailingSpace,
        kDeepSeekCjk, kEachDigit}},
      {{"deepseek-coder"},
       {kDeepSeekNewline, kDeepSeekCoderLetters, kDeepSeekCoderPunctuation, kDeepSeekCjk,
        kEachDigit}},
      {{"deepseek-v3"}, {kDeepSeek3Digits, kDeepSeek3Cjk, kDeepSeek3Main}},
  };
}

// Oniguruma's \s (what the tokenizer.json regexes were run with) is exactly Unicode
// White_Space; PCRE2's \s also matches U+180E. Rewrite \s and \S, leaving other escapes alone.
std::string translate_whitespace_classes(std::string_view pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == '\\' && i + 1 < pattern.size()) {
      char next = pattern[i + 1];
      if (next == 's') {
        out += R"(\p{White_Space})";
      } else if (next == 'S') {
        out += R"(\P{White_Space})";
      } else {
        out += pattern[i];
        out += next;
      }
      ++i;
    } else {
      out += pattern[i];
    }
  }
  return out;
}

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex(std::string_view pattern) : code_(std::make_unique<Code>()), pattern_(pattern) {
  std::string translated = translate_whitespace_classes(pattern);
  int error = 0;
  PCRE2_SIZE error_offset = 0;
  // UTF + UCP: \p{…} and character classes work on code points with Unicode semantics.
  // MATCH_INVALID_UTF: invalid bytes in the subject never match, instead of failing the call.
  code_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                              PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error,
                              &error_offset, nullptr);
  if (code_->code == nullptr) {
    std::array<PCRE2_UCHAR, 256> message{};
    pcre2_get_error_message(error, message.data(), message.size());
    throw Error(ErrorCode::kInternal,
                fmt::format("tokenizer: PCRE2 refused pre-tokenizer regex /{}/ at offset {}: {}",
                            pattern, error_offset, reinterpret_cast<const char*>(message.data())));
  }
  // Without JIT support (some architectures, or a PCRE2 built without it) the interpreter runs
  // the same patterns, only slower.
  code_->jit = pcre2_jit_compile(code_->code, PCRE2_JIT_COMPLETE) == 0;
}

Regex::~Regex() = default;

void Regex::find_all(std::string_view subject,
                     std::vector<std::pair<size_t, size_t>>& matches) const {
  // One ovector pair is all that is read; match data is per call, so threads never share it.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
  if (!data) throw Error(ErrorCode::kOutOfMemory, "tokenizer: cannot allocate PCRE2 match data");
  const auto* text = reinterpret_cast<PCRE2_SPTR>(subject.data());
  size_t start = 0;
  while (start < subject.size()) {
    int rc = pcre2_match(code_->code, text, subject.size(), start, 0, data.get(), nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT) {
      // The JIT's default 32 KiB stack was not enough for this subject: the interpreter keeps
      // its backtracking state on the heap.
      rc = pcre2_match(code_->code, text, subject.size(), start, PCRE2_NO_JIT, data.get(), nullptr);
    }
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      std::array<PCRE2_UCHAR, 256> message{};
      pcre2_get_error_message(rc, message.data(), message.size());
      throw Error(ErrorCode::kInternal,
                  fmt::format("tokenizer: regex /{}/ failed on a {}-byte piece: {}", pattern_,
                              subject.size(), reinterpret_cast<const char*>(message.data())));
    }
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(data.get());
    size_t begin = ovector[0];
    size_t end = ovector[1];
    if (end > begin) {
      matches.emplace_back(begin, end);
      start = end;
    } else {
      // An empty match splits nothing; look again from the next character.
      start = utf8_next(subject, begin);
    }
  }
}

std::unique_ptr<PreTokenizer> PreTokenizer::create(std::string_view name) {
  for (const Family& family : families()) {
    for (std::string_view alias : family.names) {
      if (alias != name) continue;
      std::unique_ptr<PreTokenizer> pre(new PreTokenizer());
      for (std::string_view pattern : family.regexes) {
        pre->regexes_.push_back(std::make_unique<Regex>(pattern));
      }
      pre->ignore_merges_ = family.ignore_merges;
      pre->adds_bos_by_default_ = family.adds_bos_by_default;
      return pre;
    }
  }
  return nullptr;
}

std::string PreTokenizer::supported_names() {
  std::string out;
  for (const Family& family : families()) {
    for (std::string_view alias : family.names) {
      if (!out.empty()) out += ", ";
      out += alias;
    }
  }
  return out;
}

PreTokenizer::~PreTokenizer() = default;

void PreTokenizer::split(std::string_view text, std::vector<std::string_view>& pieces) const {
  pieces.clear();
  if (text.empty()) return;
  pieces.push_back(text);
  std::vector<std::string_view> next;
  std::vector<std::pair<size_t, size_t>> matches;
  for (const auto& regex : regexes_) {
    next.clear();
    for (std::string_view piece : pieces) {
      // Each piece is matched on its own, as Hugging Face's Split does: lookaheads and $ see
      // the end of the piece, not the text after it.
      matches.clear();
      regex->find_all(piece, matches);
      size_t done = 0;
      for (auto [begin, end] : matches) {
        if (begin > done) next.push_back(piece.substr(done, begin - done));
        next.push_back(piece.substr(begin, end - begin));
        done = end;
      }
      if (done < piece.size()) next.push_back(piece.substr(done));
    }
    pieces.swap(next);
  }
}

}  // namespace ktx::tokenizer
