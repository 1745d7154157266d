// UTF-8 helpers for the tokenizer: character lengths from lead bytes (lenient: a stray byte is a
// character of its own, so invalid input still splits into whole bytes) and code point encoding.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ktx::tokenizer {

// Length of the character that starts with `lead`: 1 for ASCII and for bytes that cannot start
// a sequence (continuation bytes, 0xF8…), so every byte belongs to exactly one "character".
inline size_t utf8_length(uint8_t lead) {
  if (lead < 0xC0) return 1;
  if (lead < 0xE0) return 2;
  if (lead < 0xF0) return 3;
  if (lead < 0xF8) return 4;
  return 1;
}

// Start of the character after the one at `pos`, never past the end of `s`.
inline size_t utf8_next(std::string_view s, size_t pos) {
  size_t n = utf8_length(static_cast<uint8_t>(s[pos]));
  return pos + n < s.size() ? pos + n : s.size();
}

inline void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// Decodes the character at `pos` (advancing `pos`); returns UINT32_MAX for a malformed one,
// which then covers one byte.
inline uint32_t utf8_decode(std::string_view s, size_t& pos) {
  auto byte = [&](size_t i) { return static_cast<uint8_t>(s[i]); };
  uint8_t lead = byte(pos);
  size_t n = utf8_length(lead);
  if (n == 1) {
    ++pos;
    return lead < 0x80 ? lead : UINT32_MAX;
  }
  if (pos + n > s.size()) {
    ++pos;
    return UINT32_MAX;
  }
  uint32_t cp = lead & (0x7F >> n);
  for (size_t i = 1; i < n; ++i) {
    if ((byte(pos + i) & 0xC0) != 0x80) {
      ++pos;
      return UINT32_MAX;
    }
    cp = (cp << 6) | (byte(pos + i) & 0x3F);
  }
  pos += n;
  return cp;
}

}  // namespace ktx::tokenizer
