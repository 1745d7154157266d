// GPT-2 byte-level alphabet: construction from its definition, and conversions both ways.
#include "tokenizer/byte_level.h"

#include "tokenizer/utf8.h"

namespace ktx::tokenizer {
namespace {

// Bytes whose Latin-1 character is printable and not a space keep their own code point.
bool keeps_own_code_point(uint32_t b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

}  // namespace

ByteLevelAlphabet::ByteLevelAlphabet() {
  byte_of_.fill(-1);
  uint32_t next_extra = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    uint32_t cp = keeps_own_code_point(b) ? b : next_extra++;
    append_utf8(symbol_[b], cp);
    byte_of_[cp] = static_cast<int16_t>(b);
  }
}

std::string ByteLevelAlphabet::decode(std::string_view text) const {
  std::string out;
  out.reserve(text.size());
  size_t pos = 0;
  while (pos < text.size()) {
    size_t start = pos;
    uint32_t cp = utf8_decode(text, pos);
    if (cp < kCodePoints && byte_of_[cp] >= 0) {
      out += static_cast<char>(byte_of_[cp]);
    } else {
      out.append(text.substr(start, pos - start));
    }
  }
  return out;
}

std::string ByteLevelAlphabet::encode(std::string_view bytes) const {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) out += symbol_[static_cast<uint8_t>(c)];
  return out;
}

}  // namespace ktx::tokenizer
