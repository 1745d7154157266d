// The vocabulary as GGUF stores it: tokenizer.ggml.tokens, token_type and scores, validated and
// indexed by text. Shared by both tokenizer models.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/tokenizer.h"

namespace ktx::gguf {
class File;
class Value;
}  // namespace ktx::gguf

namespace ktx::tokenizer {

struct Vocab {
  std::vector<std::string> text;
  std::vector<TokenType> type;
  std::vector<float> score;  // 0 for every token when the file has no tokenizer.ggml.scores

  // Reads and checks the three arrays. `require_scores`: SentencePiece merges by score, so
  // its files must carry them. Throws ktx::Error(kInvalidFile) naming the file and key.
  static Vocab load(const gguf::File& file, bool require_scores);

  int32_t size() const { return static_cast<int32_t>(text.size()); }
  int32_t find(std::string_view token_text) const;  // -1 when absent

 private:
  // Debian's Abseil has its own string_view, so lookups convert (see find()).
  absl::flat_hash_map<std::string, int32_t> id_of_;
};

// "model.gguf: " — the prefix of every tokenizer error about a file.
std::string file_prefix(const gguf::File& file);

// "a STRING 'gpt2'" / "an array of INT32 × 12" — how an unexpected value is described.
std::string describe_value(const gguf::Value& value);

// An optional token id key (bos_token_id …): -1 when absent; throws kInvalidFile when it is not
// an integer or names no token.
int32_t read_token_id(const gguf::File& file, std::string_view key, int32_t n_vocab);

// An optional boolean key: `fallback` when absent; throws kInvalidFile when it is not a BOOL.
bool read_bool(const gguf::File& file, std::string_view key, bool fallback);

}  // namespace ktx::tokenizer
