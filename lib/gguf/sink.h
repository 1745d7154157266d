// Where the Writer's bytes go: a growing vector (to_bytes) or a file descriptor (write), with a
// running count so the writer can pad to the alignment without asking the sink where it is.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace ktx::gguf::detail {

class Sink {
 public:
  virtual ~Sink() = default;

  void put(const void* data, size_t n) {
    if (n == 0) return;
    write(static_cast<const uint8_t*>(data), n);
    written_ += n;
  }
  void put_zeros(size_t n) {
    static constexpr uint8_t kZeros[256] = {};
    while (n > 0) {
      const size_t k = n < sizeof(kZeros) ? n : sizeof(kZeros);
      put(kZeros, k);
      n -= k;
    }
  }
  uint64_t written() const { return written_; }

 protected:
  virtual void write(const uint8_t* data, size_t n) = 0;

 private:
  uint64_t written_ = 0;
};

class VectorSink final : public Sink {
 public:
  explicit VectorSink(std::vector<uint8_t>& out) : out_(out) {}

 protected:
  void write(const uint8_t* data, size_t n) override { out_.insert(out_.end(), data, data + n); }

 private:
  std::vector<uint8_t>& out_;
};

}  // namespace ktx::gguf::detail
