// Where quantized tensors wait until the GGUF writer lays them out: the writer takes every
// tensor's bytes before it writes, and a DeepSeek-V3 Q4_K_M file is ~400 GB, so large outputs are
// staged in a scratch file mapped into memory (the kernel pages it out) instead of in RAM.
#pragma once

#include <cstdint>
#include <string>

namespace ktx::quantize::detail {

class Staging {
 public:
  // `size` writable bytes. Up to `memory_limit` they are anonymous memory; above it, an unlinked
  // temporary file in `scratch_dir` (gone when the process ends, even on a crash) whose space is
  // reserved up front, so a full disk is reported here (kIo, naming the folder and the size)
  // rather than as a fault while writing.
  Staging(uint64_t size, uint64_t memory_limit, const std::string& scratch_dir);
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  ~Staging();

  uint8_t* data() { return data_; }
  uint64_t size() const { return size_; }
  bool file_backed() const { return fd_ >= 0; }

 private:
  uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
  int fd_ = -1;
};

}  // namespace ktx::quantize::detail
