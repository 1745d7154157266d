// GPT-2's byte-level alphabet: each byte is written as one printable code point, so a vocabulary
// of strings covers every byte sequence. Printable Latin-1 bytes stand for themselves; the
// others (controls, space, DEL, NBSP, soft hyphen) take U+0100 onwards, in byte order.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace ktx::tokenizer {

class ByteLevelAlphabet {
 public:
  ByteLevelAlphabet();

  // The UTF-8 of the code point that stands for `b`.
  const std::string& symbol(uint8_t b) const { return symbol_[b]; }

  // A vocabulary string back to the bytes it stands for. A code point outside the alphabet
  // (a badly converted vocabulary) is kept as its own UTF-8 rather than dropped.
  std::string decode(std::string_view text) const;

  // `bytes` written in the alphabet (the form vocabularies and merges use).
  std::string encode(std::string_view bytes) const;

 private:
  static constexpr uint32_t kCodePoints = 256 + 68;  // U+0000 … U+0143 are all that is used
  std::array<std::string, 256> symbol_;
  std::array<int16_t, kCodePoints> byte_of_;  // -1: not a symbol of the alphabet
};

}  // namespace ktx::tokenizer
