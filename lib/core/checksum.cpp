// Each lane multiplies in 8 bytes at a time and rotates, so every input bit reaches every output
// bit through the final mixing; four lanes keep four multiplications in flight.
#include "core/checksum.h"

#include <algorithm>
#include <bit>
#include <cstring>

namespace ktx::core {
namespace {

constexpr uint64_t kPrime1 = 0x9e3779b185ebca87u;
constexpr uint64_t kPrime2 = 0xc2b2ae3d27d4eb4fu;

uint64_t rotl(uint64_t v, int r) { return (v << r) | (v >> (64 - r)); }

uint64_t load_le(const uint8_t* p) {
  uint64_t v = 0;
  if constexpr (std::endian::native == std::endian::little) {
    std::memcpy(&v, p, sizeof(v));
  } else {
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  }
  return v;
}

uint64_t step(uint64_t lane, uint64_t word) { return rotl(lane + word * kPrime2, 31) * kPrime1; }

uint64_t avalanche(uint64_t h) {
  h ^= h >> 33;
  h *= kPrime2;
  h ^= h >> 29;
  h *= kPrime1;
  h ^= h >> 32;
  return h;
}

}  // namespace

void Checksum::block(const uint8_t* p) {
  for (int i = 0; i < 4; ++i) lanes_[i] = step(lanes_[i], load_le(p + 8 * i));
}

void Checksum::update(const void* data, size_t n) {
  if (n == 0) return;  // data may be null then
  const auto* p = static_cast<const uint8_t*>(data);
  total_ += n;
  if (n_pending_ > 0) {
    const size_t take = std::min(n, sizeof(pending_) - n_pending_);
    std::memcpy(pending_ + n_pending_, p, take);
    n_pending_ += take;
    p += take;
    n -= take;
    if (n_pending_ < sizeof(pending_)) return;
    block(pending_);
    n_pending_ = 0;
  }
  for (; n >= sizeof(pending_); p += sizeof(pending_), n -= sizeof(pending_)) block(p);
  std::memcpy(pending_, p, n);
  n_pending_ = n;
}

void Checksum::update_u64(uint64_t v) {
  uint8_t bytes[8];
  for (int i = 0; i < 8; ++i) bytes[i] = static_cast<uint8_t>(v >> (8 * i));
  update(bytes, sizeof(bytes));
}

uint64_t Checksum::digest() const {
  uint64_t h = total_;
  for (int i = 0; i < 4; ++i) h = step(h ^ lanes_[i], lanes_[i]);
  uint8_t tail[32] = {};
  std::memcpy(tail, pending_, n_pending_);
  for (int i = 0; i < 4; ++i) h = step(h, load_le(tail + 8 * i));
  return avalanche(h);
}

uint64_t checksum(const void* data, size_t n) {
  Checksum c;
  c.update(data, n);
  return c.digest();
}

}  // namespace ktx::core
