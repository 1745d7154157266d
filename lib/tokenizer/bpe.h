// Byte-level BPE (tokenizer.ggml.model = "gpt2"): a piece's bytes start as one symbol each (in
// GPT-2's byte alphabet) and the adjacent pair whose merge ranks first in tokenizer.ggml.merges
// is merged, leftmost first among equals, until no ranked pair is left. A priority queue with
// lazy invalidation over a linked list of symbols keeps a piece O(n log n).
#pragma once

#include <absl/container/flat_hash_map.h>

#include <array>
#include <cstdint>
#include <string_view>
#include <vector>

#include "tokenizer/byte_level.h"

namespace ktx::gguf {
class File;
}  // namespace ktx::gguf

namespace ktx::tokenizer {

struct Vocab;

class BytePairEncoder {
 public:
  // Reads tokenizer.ggml.merges ("left right" per entry, rank = position). Throws
  // ktx::Error(kInvalidFile) naming the file and entry when the key is missing or an entry
  // names a token (left, right or their concatenation) the vocabulary lacks.
  BytePairEncoder(const gguf::File& file, const Vocab& vocab);

  // Appends the ids of one pre-tokenized piece (raw bytes). With `ignore_merges` a piece that
  // is itself a token is taken whole. A byte whose symbol is not in the vocabulary is dropped,
  // as Hugging Face's BPE (without unk_token) and llama.cpp do.
  void encode(const Vocab& vocab, std::string_view piece, bool ignore_merges,
              std::vector<int32_t>& out) const;

  const ByteLevelAlphabet& alphabet() const { return alphabet_; }

 private:
  struct Merge {
    int32_t rank;
    int32_t result;
  };
  static uint64_t pair_key(int32_t left, int32_t right) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
           static_cast<uint32_t>(right);
  }

  ByteLevelAlphabet alphabet_;
  std::array<int32_t, 256> byte_token_;  // the token of each byte's symbol, -1 when absent
  absl::flat_hash_map<uint64_t, Merge> merges_;
};

}  // namespace ktx::tokenizer
