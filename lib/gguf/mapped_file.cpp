// MappedFile: open + fstat + mmap(PROT_READ, MAP_PRIVATE), with errors that say which file and why.
// The mapping asks for 2 MiB pages (see map_huge below).
#include "gguf/mapped_file.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "ktx/error.h"

namespace ktx::gguf::detail {
namespace {

[[noreturn]] void fail_io(const std::string& path, const char* what, int err) {
  throw Error(ErrorCode::kIo, fmt::format("{}: {}: {}", path, what, std::strerror(err)));
}

// Closes the descriptor on every path out of open(); the mapping does not need it.
struct FdCloser {
  int fd;
  ~FdCloser() { ::close(fd); }
};

// Decode streams every weight once per token. From 4 KiB pages the hardware prefetchers stop at
// every page boundary and the TLB misses every few rows: one thread streamed the Q6_K output head
// (172 MB) at 22.6 GB/s from 4 KiB pages and 31.1 GB/s from 2 MiB ones, two threads at 62 GB/s
// (Zen 4 VM, Linux 6.18, ext4 with large folios). MADV_HUGEPAGE lets the kernel map the
// page cache in 2 MiB pages where its folios are that large, and read pages that are not cached
// yet into such folios. Pages already cached in small folios stay small; KTX_MMAP_HUGE=2 drops
// the file's clean cached pages that nobody maps (posix_fadvise DONTNEED) before mapping, so they
// are read again as huge folios — a one-time re-read, after which every later load finds them so.
// KTX_MMAP_HUGE=0 leaves the mapping alone. Best effort: kernels or file systems without large
// folios ignore the advice.
int huge_mode() {
  const char* v = std::getenv("KTX_MMAP_HUGE");
  if (v == nullptr || *v == '\0') return 1;
  return v[0] == '0' ? 0 : v[0] == '2' ? 2 : 1;
}

}  // namespace

MappedFile MappedFile::open(const std::string& path) {
  if (path.empty()) throw Error(ErrorCode::kInvalidArgument, "the file path is empty");
  // O_NONBLOCK so that a FIFO given by mistake is refused below instead of blocking open().
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail_io(path, "cannot open", errno);
  FdCloser closer{fd};

  struct stat st {};
  if (::fstat(fd, &st) != 0) fail_io(path, "cannot stat", errno);
  if (S_ISDIR(st.st_mode)) fail_io(path, "cannot map", EISDIR);
  if (!S_ISREG(st.st_mode)) {
    throw Error(ErrorCode::kIo, fmt::format("{}: cannot map: not a regular file", path));
  }

  MappedFile file;
  file.path_ = path;
  file.size_ = static_cast<uint64_t>(st.st_size);
  if (file.size_ == 0) return file;  // mmap refuses length 0; the reader reports the empty file

  const int huge = huge_mode();
  if (huge == 2) ::posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
  void* p = ::mmap(nullptr, static_cast<size_t>(file.size_), PROT_READ, MAP_PRIVATE, fd, 0);
  if (p == MAP_FAILED) fail_io(path, "cannot mmap", errno);
#ifdef MADV_HUGEPAGE
  if (huge != 0) ::madvise(p, static_cast<size_t>(file.size_), MADV_HUGEPAGE);
#endif
  file.data_ = static_cast<const uint8_t*>(p);
  return file;
}

MappedFile::MappedFile(MappedFile&& other) noexcept
    : path_(std::move(other.path_)),
      data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)) {}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
  if (this != &other) {
    release();
    path_ = std::move(other.path_);
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

MappedFile::~MappedFile() { release(); }

void MappedFile::release() noexcept {
  if (data_ != nullptr) ::munmap(const_cast<uint8_t*>(data_), static_cast<size_t>(size_));
  data_ = nullptr;
  size_ = 0;
}

}  // namespace ktx::gguf::detail
