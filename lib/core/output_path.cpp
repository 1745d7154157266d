#include "core/output_path.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "ktx/error.h"

namespace ktx::core {

void refuse_output_path(const std::string& out_path, const std::vector<std::string>& inputs,
                        std::string_view option) {
  namespace fs = std::filesystem;
  if (out_path.empty()) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: the output path is empty", option));
  }
  std::error_code ec;
  if (fs::is_directory(out_path, ec)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{} '{}' is a directory; give a file name", option, out_path));
  }
  for (const std::string& in : inputs) {
    std::error_code ec_equivalent, ec_in, ec_out;
    const bool same_inode = fs::equivalent(in, out_path, ec_equivalent) && !ec_equivalent;
    const fs::path canonical_in = fs::weakly_canonical(in, ec_in);
    const fs::path canonical_out = fs::weakly_canonical(out_path, ec_out);
    const bool same_name = !ec_in && !ec_out && canonical_in == canonical_out;
    if (in == out_path || same_inode || same_name) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{} '{}' is the input file '{}', which writing would destroy; give "
                              "a new file name",
                              option, out_path, in));
    }
  }
}

namespace {
std::atomic<unsigned> g_counter{0};

// The registry of temporaries: fixed slots, so that a signal handler reads them without
// allocating or locking. A slot's state goes free -> writing (its path being copied) -> used.
constexpr size_t kSlots = 16, kPathBytes = 4096;
struct Slot {
  std::atomic<int> state{0};  // 0 free, 1 being filled or emptied, 2 used
  char path[kPathBytes];
};
Slot g_slots[kSlots];
static_assert(std::atomic<int>::is_always_lock_free);
}  // namespace

void register_temporary(const std::string& path) noexcept {
  if (path.size() >= kPathBytes) return;
  for (Slot& slot : g_slots) {
    int expected = 0;
    if (!slot.state.compare_exchange_strong(expected, 1)) continue;
    std::memcpy(slot.path, path.c_str(), path.size() + 1);
    slot.state.store(2);
    return;
  }
}

void unregister_temporary(const std::string& path) noexcept {
  for (Slot& slot : g_slots) {
    int expected = 2;
    if (slot.state.load() != 2 || std::strcmp(slot.path, path.c_str()) != 0) continue;
    if (slot.state.compare_exchange_strong(expected, 1)) slot.state.store(0);
    return;
  }
}

void remove_temporaries() noexcept {
  for (Slot& slot : g_slots) {
    if (slot.state.load() == 2) ::unlink(slot.path);
  }
}

namespace {

// /dev/stdout, /dev/fd/N, /proc/self/fd/N and the like: the file behind an open descriptor, which
// must be written through (a redirection's file may be appended to, or in a folder the user
// cannot create files in), never renamed over. Their targets are procfs "magic" links.
bool is_descriptor_path(const std::string& path) {
  return path.starts_with("/dev/") || path.starts_with("/proc/");
}

}  // namespace

std::string rename_target(const std::string& path) {
  namespace fs = std::filesystem;
  if (is_descriptor_path(path)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("'{}' is a device or a descriptor, not a file this can replace; give "
                            "a file name",
                            path));
  }
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (ec || !fs::exists(link)) return path;  // nothing there yet (or not visible): a new file
  const fs::file_status target = fs::status(path, ec);
  if (!ec && fs::exists(target) && !fs::is_regular_file(target)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("'{}' is not a regular file (a directory, a device or a FIFO); give "
                            "a file name",
                            path));
  }
  // Follow the links one by one (a dangling one too: its target is created), so that the rename
  // lands on the file and every link stays a link.
  fs::path p = path;
  for (int hop = 0; hop < 40 && fs::is_symlink(fs::symlink_status(p, ec)); ++hop) {
    const fs::path to = fs::read_symlink(p, ec);
    if (ec) return path;
    p = to.is_absolute() ? to : p.parent_path() / to;
  }
  return p.string();
}

void write_file_atomically(const std::string& path, std::string_view bytes) {
  auto fail = [&](const char* what, int err) {
    throw Error(ErrorCode::kIo, fmt::format("{}: {}: {}", path, what, std::strerror(err)));
  };
  // The temporary file is synced before the rename, so that a crash leaves the old file or the
  // whole new one.
  auto write_all = [&](int fd, const std::string& unlink_on_failure) {
    size_t done = 0;
    int err = 0;
    while (done < bytes.size() && err == 0) {
      const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0)
        err = n < 0 ? errno : EIO;
      else
        done += static_cast<size_t>(n);
    }
    if (err == 0 && !unlink_on_failure.empty() && ::fsync(fd) != 0) err = errno;
    if (err == 0 && ::close(fd) != 0)
      err = errno;
    else if (err != 0)
      ::close(fd);
    if (err != 0) {
      if (!unlink_on_failure.empty()) ::unlink(unlink_on_failure.c_str());
      fail("cannot write", err);
    }
  };

  namespace fs = std::filesystem;
  if (path == "/dev/stdout" || path == "/dev/stderr") {
    // The descriptor itself, as it was opened: appending stays appending.
    const int fd = ::dup(path == "/dev/stdout" ? STDOUT_FILENO : STDERR_FILENO);
    if (fd < 0) fail("cannot write", errno);
    write_all(fd, "");
    return;
  }
  std::error_code ec;
  const fs::file_status there = fs::status(path, ec);
  if (is_descriptor_path(path) ||
      (!ec && fs::exists(there) && !fs::is_regular_file(there) && !fs::is_directory(there))) {
    // A FIFO, a device, another descriptor: written where it is; a rename would replace it.
    const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) fail("cannot open for writing", errno);
    write_all(fd, "");
    return;
  }
  const std::string target = rename_target(path);
  // In the same folder, so that the rename is atomic and the old file survives a failure.
  const std::string tmp = fmt::format("{}.tmp.{}.{}", target, ::getpid(), g_counter.fetch_add(1));
  const RegisteredTemporary registered(tmp);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
  if (fd < 0) fail("cannot create the file", errno);
  write_all(fd, tmp);
  if (::rename(tmp.c_str(), target.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail("cannot rename the finished file into place", err);
  }
}

}  // namespace ktx::core
