// Staging memory for quantized tensors: anonymous pages, or a mapped scratch file (POSIX).
#include "quantize/staging.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "ktx/error.h"

namespace ktx::quantize::detail {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

}  // namespace

Staging::Staging(uint64_t size, uint64_t memory_limit, const std::string& scratch_dir)
    : size_(size) {
  if (size == 0) return;
  if (size <= memory_limit) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      throw Error(ErrorCode::kOutOfMemory,
                  fmt::format("cannot reserve {:.2f} GiB to stage the quantized tensors: {}",
                              size / kGiB, std::strerror(errno)));
    }
    data_ = static_cast<uint8_t*>(p);
    return;
  }

  std::string pattern =
      (scratch_dir.empty() ? std::string(".") : scratch_dir) + "/.ktx-quantize-scratch-XXXXXX";
  std::vector<char> name(pattern.begin(), pattern.end());
  name.push_back('\0');
  fd_ = mkstemp(name.data());
  if (fd_ < 0) {
    throw Error(ErrorCode::kIo, fmt::format("cannot create a scratch file in '{}': {}", scratch_dir,
                                            std::strerror(errno)));
  }
  // Unlinked at once: the space lives as long as the descriptor, and nothing is left behind.
  unlink(name.data());
  const int err = posix_fallocate(fd_, 0, static_cast<off_t>(size));
  if (err != 0) {
    close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::kIo,
                fmt::format("cannot reserve {:.2f} GiB of scratch space in '{}' for the quantized "
                            "tensors: {} (the output needs about this much again)",
                            size / kGiB, scratch_dir, std::strerror(err)));
  }
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd_, 0);
  if (p == MAP_FAILED) {
    const int map_err = errno;
    close(fd_);
    fd_ = -1;
    throw Error(ErrorCode::kIo, fmt::format("cannot map the {:.2f} GiB scratch file in '{}': {}",
                                            size / kGiB, scratch_dir, std::strerror(map_err)));
  }
  data_ = static_cast<uint8_t*>(p);
}

Staging::~Staging() {
  if (data_ != nullptr) munmap(data_, size_);
  if (fd_ >= 0) close(fd_);
}

}  // namespace ktx::quantize::detail
