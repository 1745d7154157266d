// PCRE2 behind NameRegex. Anchoring is chosen per match (PCRE2_ANCHORED, PCRE2_ENDANCHORED), so
// one compiled pattern serves both full and prefix matching.
#include "rules/name_regex.h"

#include <fmt/format.h>

#include <memory>
#include <new>

#include "ktx/error.h"

// pcre2.h needs the code unit width before it is included.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>  // NOLINT(llvm-include-order)

namespace ktx::rules {
namespace {

// A bound on the backtracking: module names are short, and a sane pattern settles each in a
// few thousand steps, where one like (a+)+$ would run for minutes before answering no. One
// context for every match: pcre2_match only reads it, so threads share it.
pcre2_match_context* limited_context() {
  static const std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> context(
      [] {
        pcre2_match_context* c = pcre2_match_context_create(nullptr);
        if (c == nullptr) throw std::bad_alloc();
        pcre2_set_match_limit(c, NameRegex::kMatchLimit);
        return c;
      }(),
      &pcre2_match_context_free);
  return context.get();
}

}  // namespace

NameRegex NameRegex::compile(std::string_view pattern, std::string* error) {
  NameRegex re;
  re.pattern_ = std::string(pattern);
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* compiled = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                       PCRE2_UTF, &code, &offset, nullptr);
  if (compiled == nullptr) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(code, buffer, sizeof(buffer));
    if (error != nullptr) {
      *error = fmt::format("{} at character {}", reinterpret_cast<const char*>(buffer), offset);
    }
    return re;
  }
  re.code_ = std::shared_ptr<void>(compiled,
                                   [](void* p) { pcre2_code_free(static_cast<pcre2_code*>(p)); });
  return re;
}

bool NameRegex::full_match(std::string_view text) const {
  return match(text, PCRE2_ANCHORED | PCRE2_ENDANCHORED);
}
bool NameRegex::prefix_match(std::string_view text) const { return match(text, PCRE2_ANCHORED); }
bool NameRegex::search(std::string_view text) const { return match(text, 0); }

bool NameRegex::match(std::string_view text, uint32_t options) const {
  if (!code_) return false;
  auto* code = static_cast<const pcre2_code*>(code_.get());
  // Match data per call: a compiled pattern is shared between threads, match data is not.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> data(
      pcre2_match_data_create_from_pattern(code, nullptr), &pcre2_match_data_free);
  if (!data) throw std::bad_alloc();
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), 0,
                             options, data.get(), limited_context());
  if (rc >= 0) return true;
  if (rc == PCRE2_ERROR_NOMATCH) return false;
  // Anything else (the limit above, a resource PCRE2 ran out of) is no answer at all: say so
  // rather than count it as "no match".
  PCRE2_UCHAR buffer[256];
  pcre2_get_error_message(rc, buffer, sizeof(buffer));
  throw Error(ErrorCode::kInvalidArgument,
              fmt::format("pattern '{}' gave no answer for '{}': {} (it backtracks too much; "
                          "simplify it)",
                          pattern_, text, reinterpret_cast<const char*>(buffer)));
}

}  // namespace ktx::rules
