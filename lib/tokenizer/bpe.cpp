// Byte-level BPE: merge table construction and the merge loop.
#include "tokenizer/bpe.h"

#include <fmt/format.h>

#include <queue>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "tokenizer/vocab.h"

namespace ktx::tokenizer {
namespace {

constexpr std::string_view kMerges = "tokenizer.ggml.merges";

// A candidate merge of the symbols at `left` and `right`, as they were when it was queued.
struct Candidate {
  int32_t rank;
  int32_t left;
  int32_t right;
  int32_t left_id;
  int32_t right_id;
  int32_t result;
};

// std::priority_queue keeps the largest on top: "larger" means lower priority here.
struct LowerPriority {
  bool operator()(const Candidate& a, const Candidate& b) const {
    if (a.rank != b.rank) return a.rank > b.rank;
    return a.left > b.left;
  }
};

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  bool alive;
};

}  // namespace

BytePairEncoder::BytePairEncoder(const gguf::File& file, const Vocab& vocab) {
  for (int b = 0; b < 256; ++b) {
    byte_token_[b] = vocab.find(alphabet_.symbol(static_cast<uint8_t>(b)));
  }
  const gguf::Value* merges = file.find(kMerges);
  if (merges == nullptr) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}no {} key: a BPE (gpt2) tokenizer needs its ranked merges",
                            file_prefix(file), kMerges));
  }
  const std::vector<std::string>* entries = merges->strings();
  if (entries == nullptr) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}{} is {}, expected an array of STRING", file_prefix(file), kMerges,
                            describe_value(*merges)));
  }
  merges_.reserve(entries->size());
  std::string joined;
  for (size_t rank = 0; rank < entries->size(); ++rank) {
    const std::string& entry = (*entries)[rank];
    // The separator is the first space after the first character, as llama.cpp reads it.
    size_t space = entry.size() > 1 ? entry.find(' ', 1) : std::string::npos;
    if (space == std::string::npos || space + 1 >= entry.size()) {
      throw Error(ErrorCode::kInvalidFile,
                  fmt::format("{}{}[{}] = '{}': expected two tokens separated by a space",
                              file_prefix(file), kMerges, rank, entry));
    }
    std::string_view left(entry.data(), space);
    std::string_view right(entry.data() + space + 1, entry.size() - space - 1);
    joined.assign(left);
    joined.append(right);
    int32_t left_id = vocab.find(left);
    int32_t right_id = vocab.find(right);
    int32_t result = vocab.find(joined);
    std::string_view missing = left_id < 0 ? left : right_id < 0 ? right : std::string_view();
    if (left_id < 0 || right_id < 0 || result < 0) {
      throw Error(ErrorCode::kInvalidFile,
                  fmt::format("{}{}[{}] = '{}' merges into '{}', but '{}' is not in "
                              "tokenizer.ggml.tokens",
                              file_prefix(file), kMerges, rank, entry, joined,
                              result < 0 && missing.empty() ? std::string_view(joined) : missing));
    }
    // A repeated pair keeps its first (best) rank.
    merges_.try_emplace(pair_key(left_id, right_id), Merge{static_cast<int32_t>(rank), result});
  }
}

void BytePairEncoder::encode(const Vocab& vocab, std::string_view piece, bool ignore_merges,
                             std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  if (ignore_merges) {
    int32_t whole = vocab.find(alphabet_.encode(piece));
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  const int32_t n = static_cast<int32_t>(piece.size());
  std::vector<Symbol> symbols(n);
  for (int32_t i = 0; i < n; ++i) {
    symbols[i] = {byte_token_[static_cast<uint8_t>(piece[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  }
  std::priority_queue<Candidate, std::vector<Candidate>, LowerPriority> queue;
  auto consider = [&](int32_t left, int32_t right) {
    if (left < 0 || right < 0) return;
    int32_t a = symbols[left].id;
    int32_t b = symbols[right].id;
    if (a < 0 || b < 0) return;
    auto it = merges_.find(pair_key(a, b));
    if (it == merges_.end()) return;
    queue.push({it->second.rank, left, right, a, b, it->second.result});
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i, i + 1);

  while (!queue.empty()) {
    Candidate c = queue.top();
    queue.pop();
    Symbol& left = symbols[c.left];
    Symbol& right = symbols[c.right];
    // Stale: one side was merged away or into something else since this was queued.
    if (!left.alive || !right.alive || left.next != c.right || left.id != c.left_id ||
        right.id != c.right_id) {
      continue;
    }
    left.id = c.result;
    left.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = c.left;
    right.alive = false;
    consider(left.prev, c.left);
    consider(c.left, left.next);
  }
  for (int32_t i = 0; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) out.push_back(symbols[i].id);
  }
}

}  // namespace ktx::tokenizer
