// Module-name patterns of rule files, compiled with PCRE2: Perl/Python syntax (lookahead and
// lookbehind, \d, (?P<name>...)) so KTransformers' patterns read the same, and compile errors
// that say what is wrong and at which character.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace ktx::rules {

class NameRegex {
 public:
  // Compiles `pattern`; on failure returns an empty regex and sets `error` to PCRE2's message and
  // the offset ("missing closing parenthesis at character 7").
  static NameRegex compile(std::string_view pattern, std::string* error);

  bool valid() const { return code_ != nullptr; }
  const std::string& pattern() const { return pattern_; }

  // PCRE2's match limit (backtracking steps) for one name: a pattern that needs more throws.
  static constexpr uint32_t kMatchLimit = 1000000;

  // The whole of `text` matches (ktx's semantics: as if wrapped in \A(?:...)\z). This and the
  // two below throw ktx::Error (kInvalidArgument), naming the pattern, when PCRE2 gives no
  // answer within kMatchLimit steps.
  bool full_match(std::string_view text) const;
  // A prefix of `text` matches (Python's re.match).
  bool prefix_match(std::string_view text) const;
  // Some part of `text` matches (Python's re.search, which KTransformers' rules use).
  bool search(std::string_view text) const;

 private:
  bool match(std::string_view text, uint32_t pcre2_options) const;

  std::string pattern_;
  std::shared_ptr<void> code_;  // pcre2_code_8, freed with pcre2_code_free_8
};

}  // namespace ktx::rules
