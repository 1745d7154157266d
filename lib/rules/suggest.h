// "Did you mean" for rule-file errors: the known names closest to a misspelt one.
#pragma once

#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::rules::detail {

inline size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      const size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

// Up to `limit` names within a third of the word's length in edits (at least 2), or that contain
// it or are contained in it, closest first.
inline std::vector<std::string> close_names(std::string_view word,
                                            const std::vector<std::string>& names,
                                            size_t limit = 3) {
  const size_t max_distance = std::max<size_t>(2, word.size() / 3);
  std::vector<std::pair<size_t, std::string>> scored;
  for (const std::string& n : names) {
    size_t d = edit_distance(word, n);
    const bool contains = !word.empty() && (n.find(word) != std::string::npos ||
                                            word.find(n) != std::string_view::npos);
    if (d <= max_distance || contains)
      scored.emplace_back(contains ? std::min<size_t>(d, 1) : d, n);
  }
  std::stable_sort(scored.begin(), scored.end(),
                   [](const auto& x, const auto& y) { return x.first < y.first; });
  std::vector<std::string> out;
  for (size_t i = 0; i < scored.size() && i < limit; ++i) out.push_back(scored[i].second);
  return out;
}

inline std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string out;
  for (size_t i = 0; i < items.size(); ++i) {
    if (i) out += sep;
    out += items[i];
  }
  return out;
}

// " (did you mean a or b?)" or "".
inline std::string did_you_mean(std::string_view word, const std::vector<std::string>& names) {
  const std::vector<std::string> close = close_names(word, names);
  return close.empty() ? std::string() : " (did you mean " + join(close, " or ") + "?)";
}

}  // namespace ktx::rules::detail
