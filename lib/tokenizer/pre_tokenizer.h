// Pre-tokenizers of byte-level BPE models: the regex sequence each model family was trained with,
// selected by tokenizer.ggml.pre. Each regex of the sequence splits every piece left by the ones
// before it into matches and the text between them (Hugging Face's Split with "Isolated"
// behaviour); BPE then runs on each final piece separately. Regexes run on PCRE2 in UTF mode with
// Unicode properties (JIT-compiled where available).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::tokenizer {

class Regex;

class PreTokenizer {
 public:
  // The pre-tokenizer for a tokenizer.ggml.pre name, or nullptr when ktx does not know it.
  static std::unique_ptr<PreTokenizer> create(std::string_view name);
  // "default, gpt-2, llama-bpe …" for error messages.
  static std::string supported_names();

  ~PreTokenizer();
  PreTokenizer(const PreTokenizer&) = delete;
  PreTokenizer& operator=(const PreTokenizer&) = delete;

  // Splits `text` into pieces (views into `text`, in order, none empty, together covering it).
  void split(std::string_view text, std::vector<std::string_view>& pieces) const;

  // Whether BPE takes a piece that is itself a vocabulary token as is, without merging (Llama
  // 3's tokenizer.json sets ignore_merges; with its merges the result can differ).
  bool ignore_merges() const { return ignore_merges_; }
  // Whether files of this family add BOS when tokenizer.ggml.add_bos_token is absent.
  bool adds_bos_by_default() const { return adds_bos_by_default_; }

 private:
  PreTokenizer() = default;
  std::vector<std::unique_ptr<Regex>> regexes_;
  bool ignore_merges_ = false;
  bool adds_bos_by_default_ = false;
};

// One compiled pattern. Compiled code is read-only and shared by all threads; match state lives
// on the caller's stack.
class Regex {
 public:
  // `pattern` uses Hugging Face's (Oniguruma's) meaning of \s and \S — Unicode White_Space —
  // which is translated for PCRE2, whose \s also takes U+180E. Throws ktx::Error(kInternal) if
  // PCRE2 refuses the pattern: the patterns are ktx's own.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Appends the [begin, end) byte ranges of successive non-overlapping matches in `subject`
  // (leftmost first; an empty match is skipped).
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& matches) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
  std::string pattern_;
};

}  // namespace ktx::tokenizer
