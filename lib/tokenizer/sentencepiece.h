// SentencePiece-style BPE (tokenizer.ggml.model = "llama"): spaces become ▁ (U+2581), the text
// starts as one symbol per character, and the adjacent pair whose concatenation is the
// highest-scoring vocabulary piece is merged (leftmost among equals) until none is left — the
// encoding of SentencePiece's BPE model. Characters the vocabulary lacks fall back to <0xNN>
// byte tokens, or to the unknown token when the vocabulary has no byte tokens.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::tokenizer {

struct Vocab;

class SentencePieceEncoder {
 public:
  // `unknown`: tokenizer.ggml.unknown_token_id, or -1 (then the first token of type unknown).
  SentencePieceEncoder(const Vocab& vocab, int32_t unknown);

  // Appends the ids of `text` (raw UTF-8). `add_space_prefix`: a ▁ goes in front, as
  // SentencePiece's add_dummy_prefix does.
  void encode(const Vocab& vocab, std::string_view text, bool add_space_prefix,
              std::vector<int32_t>& out) const;

  int32_t byte_token(uint8_t b) const { return byte_token_[b]; }
  int32_t unknown() const { return unknown_; }

  static constexpr std::string_view kSpace = "\xE2\x96\x81";  // ▁

 private:
  std::array<int32_t, 256> byte_token_;  // <0xNN> tokens, -1 when absent
  int32_t unknown_;
};

}  // namespace ktx::tokenizer
