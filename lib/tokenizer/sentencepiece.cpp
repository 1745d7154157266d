// SentencePiece-style BPE: the score-driven merge loop, resegmentation of unused pieces, byte
// fallback and unknown runs.
#include "tokenizer/sentencepiece.h"

#include <absl/container/flat_hash_map.h>
#include <fmt/format.h>

#include <queue>

#include "tokenizer/utf8.h"
#include "tokenizer/vocab.h"

namespace ktx::tokenizer {
namespace {

struct Symbol {
  size_t begin;  // byte range in the escaped text
  size_t size;
  int32_t prev;
  int32_t next;
};

struct Candidate {
  float score;
  int32_t left;
  int32_t right;
  size_t size;  // bytes of left + right when queued: a mismatch means the entry is stale
};

struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.score != b.score) return a.score < b.score;
    return a.left > b.left;
  }
};

// Pieces a merge may produce. SentencePiece's piece table holds normal, user-defined and unused
// pieces; user-defined ones are matched before encoding (special tokens), so they never form
// here. Control, unknown and byte pieces are never the result of a merge.
bool mergeable(TokenType t) {
  return t == TokenType::kNormal || t == TokenType::kUnused || t == TokenType::kUndefined;
}

}  // namespace

SentencePieceEncoder::SentencePieceEncoder(const Vocab& vocab, int32_t unknown) {
  for (int b = 0; b < 256; ++b) {
    int32_t id = vocab.find(fmt::format("<0x{:02X}>", b));
    byte_token_[b] = id >= 0 && vocab.type[id] == TokenType::kByte ? id : -1;
  }
  unknown_ = unknown;
  if (unknown_ < 0) {
    for (int32_t i = 0; i < vocab.size(); ++i) {
      if (vocab.type[i] == TokenType::kUnknown) {
        unknown_ = i;
        break;
      }
    }
  }
}

void SentencePieceEncoder::encode(const Vocab& vocab, std::string_view raw, bool add_space_prefix,
                                  std::vector<int32_t>& out) const {
  std::string text;
  text.reserve(raw.size() * 2 + 3);
  if (add_space_prefix) text += kSpace;
  for (char c : raw) {
    if (c == ' ') {
      text += kSpace;
    } else {
      text += c;
    }
  }
  if (text.empty()) return;

  std::vector<Symbol> symbols;
  symbols.reserve(text.size());
  for (size_t pos = 0; pos < text.size();) {
    size_t next = utf8_next(text, pos);
    int32_t index = static_cast<int32_t>(symbols.size());
    symbols.push_back({pos, next - pos, index - 1, next < text.size() ? index + 1 : -1});
    pos = next;
  }

  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue;
  // Where an unused piece came from, so it can be split back (SentencePiece never outputs one).
  absl::flat_hash_map<std::string, std::pair<std::string, std::string>> unmerge;
  auto view = [&](const Symbol& s) { return std::string_view(text).substr(s.begin, s.size); };
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    std::string_view joined = std::string_view(text).substr(
        symbols[left].begin, symbols[left].size + symbols[right].size);
    int32_t id = vocab.find(joined);
    if (id < 0 || !mergeable(vocab.type[id])) return;
    queue.push({vocab.score[id], left, right, joined.size()});
    if (vocab.type[id] == TokenType::kUnused) {
      unmerge[std::string(joined)] = {std::string(view(symbols[left])),
                                      std::string(view(symbols[right]))};
    }
  };
  for (int32_t i = 0; i + 1 < static_cast<int32_t>(symbols.size()); ++i) consider(i, i + 1);

  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    if (left.size == 0 || right.size == 0 || left.next != c.right ||
        left.size + right.size != c.size) {
      continue;
    }
    left.size += right.size;
    right.size = 0;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }

  bool previous_unknown = false;
  auto emit_unknown_or_bytes = [&](std::string_view piece) {
    bool all_bytes = true;
    for (char b : piece) all_bytes = all_bytes && byte_token_[static_cast<uint8_t>(b)] >= 0;
    if (all_bytes) {
      for (char b : piece) out.push_back(byte_token_[static_cast<uint8_t>(b)]);
      previous_unknown = false;
    } else if (unknown_ >= 0 && !previous_unknown) {
      // SentencePiece folds a run of unknown characters into one unknown token.
      out.push_back(unknown_);
      previous_unknown = true;
    }
  };
  // Emits `piece`: a normal token as is, an unused one split back into what formed it, anything
  // else character by character through the fallback.
  auto emit = [&](auto& self, std::string_view piece) -> void {
    int32_t id = vocab.find(piece);
    if (id >= 0 && vocab.type[id] != TokenType::kUnused && mergeable(vocab.type[id])) {
      out.push_back(id);
      previous_unknown = false;
      return;
    }
    auto it = unmerge.find(std::string(piece));
    if (it != unmerge.end()) {
      std::pair<std::string, std::string> parts = it->second;
      self(self, parts.first);
      self(self, parts.second);
      return;
    }
    emit_unknown_or_bytes(piece);
  };
  for (int32_t i = 0; i >= 0; i = symbols[i].next) emit(emit, view(symbols[i]));
}

}  // namespace ktx::tokenizer
