// Splits text into special-token occurrences and the plain text between them, before
// pre-tokenization — so "<|im_start|>" written in a prompt becomes one control token instead of
// "<", "|", "im", …. Matching is leftmost-longest over a byte trie, as Hugging Face's added-token
// matcher does (llama.cpp instead tries longer tokens first everywhere; the two differ only when
// special tokens overlap).
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <string_view>
#include <vector>

namespace ktx::tokenizer {

struct Vocab;

class SpecialTokenMatcher {
 public:
  // Control, unknown and user-defined tokens with non-empty text.
  explicit SpecialTokenMatcher(const Vocab& vocab);

  struct Fragment {
    std::string_view text;  // the plain text, or the special token's text
    int32_t token;          // the special token, or -1 for plain text
  };

  // `parse_special`: match control and unknown tokens too; user-defined tokens always match.
  void partition(std::string_view text, bool parse_special, std::vector<Fragment>& out) const;

 private:
  struct Node {
    int32_t token = -1;
    bool always = false;  // a user-defined token, matched even without parse_special
  };
  int32_t child(int32_t node, uint8_t byte) const;

  std::vector<Node> nodes_;                       // nodes_[0] is the root
  absl::flat_hash_map<uint64_t, int32_t> edges_;  // (node << 8 | byte) -> child node
};

}  // namespace ktx::tokenizer
