// The reference device's memory. It is ordinary host memory underneath, but ktx must treat it as
// the memory of another device: reach it only through this backend's buffers and copies. To make
// that checkable, every buffer handed out is recorded, and every ref.* operator refuses (with
// kInternal) an activation or cache pointer that is not inside one — so a host pointer that the
// executor forgot to move fails a test instead of quietly working as it would on the host.
#include <fmt/format.h>

#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>

#include "ktx/error.h"
#include "ref.h"

namespace ktx::backends::ref {
namespace {

std::mutex& buffers_mutex() {
  static std::mutex m;
  return m;
}
std::map<uintptr_t, size_t>& buffers() {  // start -> size
  static std::map<uintptr_t, size_t> b;
  return b;
}

}  // namespace

void* device_alloc(size_t size) {
  if (size > SIZE_MAX - 64) return nullptr;
  const size_t rounded = size == 0 ? 64 : (size + 63) / 64 * 64;
  void* p = std::aligned_alloc(64, rounded);
  if (p != nullptr) {
    std::lock_guard<std::mutex> lock(buffers_mutex());
    buffers()[reinterpret_cast<uintptr_t>(p)] = rounded;
  }
  return p;
}

void device_free(void* p) {
  if (p == nullptr) return;
  {
    std::lock_guard<std::mutex> lock(buffers_mutex());
    buffers().erase(reinterpret_cast<uintptr_t>(p));
  }
  std::free(p);
}

bool is_device_memory(const void* p, size_t bytes) {
  const auto a = reinterpret_cast<uintptr_t>(p);
  std::lock_guard<std::mutex> lock(buffers_mutex());
  auto it = buffers().upper_bound(a);
  if (it == buffers().begin()) return false;
  --it;
  return a >= it->first && a - it->first <= it->second && bytes <= it->second - (a - it->first);
}

void require_device_memory(const void* p, size_t bytes, std::string_view what,
                           std::string_view impl) {
  if (bytes == 0 || is_device_memory(p, bytes)) return;
  throw Error(ErrorCode::kInternal,
              fmt::format("{}: {} ({} bytes at {}) is not in the memory of device ref:0; the "
                          "caller must copy activations there first",
                          impl, what, bytes, p));
}

}  // namespace ktx::backends::ref
