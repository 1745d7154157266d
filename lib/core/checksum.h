// A 64-bit checksum of bytes fed in pieces, the same on every run and machine: what a saved file
// records of its own data so that a flipped or missing byte is found when it is read back, and
// what identifies a model by its header. Fast (four independent lanes over 32-byte blocks), not
// cryptographic: it detects accidents, not forgeries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace ktx::core {

class Checksum {
 public:
  void update(const void* data, size_t n);
  void update(std::string_view s) {
    update_u64(s.size());  // so that "ab"+"c" and "a"+"bc" differ
    update(s.data(), s.size());
  }
  void update_u64(uint64_t v);
  // The checksum of everything fed so far (feeding may go on afterwards).
  uint64_t digest() const;

 private:
  void block(const uint8_t* p);

  uint64_t lanes_[4] = {0x243f6a8885a308d3u, 0x13198a2e03707344u, 0xa4093822299f31d0u,
                        0x082efa98ec4e6c89u};  // digits of pi: any distinct odd-ish start works
  uint8_t pending_[32] = {};
  size_t n_pending_ = 0;
  uint64_t total_ = 0;
};

// The checksum of one buffer.
uint64_t checksum(const void* data, size_t n);

}  // namespace ktx::core
