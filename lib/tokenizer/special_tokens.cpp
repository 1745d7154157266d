// Special-token matching: trie construction and the leftmost-longest scan.
#include "tokenizer/special_tokens.h"

#include "tokenizer/vocab.h"

namespace ktx::tokenizer {

SpecialTokenMatcher::SpecialTokenMatcher(const Vocab& vocab) {
  nodes_.emplace_back();
  for (int32_t id = 0; id < vocab.size(); ++id) {
    TokenType t = vocab.type[id];
    if (t != TokenType::kControl && t != TokenType::kUnknown && t != TokenType::kUserDefined) {
      continue;
    }
    const std::string& text = vocab.text[id];
    if (text.empty()) continue;
    int32_t node = 0;
    for (char c : text) {
      uint64_t key = (static_cast<uint64_t>(node) << 8) | static_cast<uint8_t>(c);
      auto [it, inserted] = edges_.try_emplace(key, static_cast<int32_t>(nodes_.size()));
      if (inserted) nodes_.emplace_back();
      node = it->second;
    }
    nodes_[node].token = id;
    nodes_[node].always = t == TokenType::kUserDefined;
  }
}

int32_t SpecialTokenMatcher::child(int32_t node, uint8_t byte) const {
  auto it = edges_.find((static_cast<uint64_t>(node) << 8) | byte);
  return it == edges_.end() ? -1 : it->second;
}

void SpecialTokenMatcher::partition(std::string_view text, bool parse_special,
                                    std::vector<Fragment>& out) const {
  out.clear();
  size_t plain_start = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    // The longest usable token starting at pos.
    int32_t best_token = -1;
    size_t best_end = 0;
    int32_t node = 0;
    for (size_t i = pos; i < text.size(); ++i) {
      node = child(node, static_cast<uint8_t>(text[i]));
      if (node < 0) break;
      const Node& n = nodes_[node];
      if (n.token >= 0 && (parse_special || n.always)) {
        best_token = n.token;
        best_end = i + 1;
      }
    }
    if (best_token < 0) {
      ++pos;
      continue;
    }
    if (pos > plain_start) out.push_back({text.substr(plain_start, pos - plain_start), -1});
    out.push_back({text.substr(pos, best_end - pos), best_token});
    pos = best_end;
    plain_start = pos;
  }
  if (plain_start < text.size()) out.push_back({text.substr(plain_start), -1});
}

}  // namespace ktx::tokenizer
