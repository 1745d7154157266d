// RepackedTensor: anonymous memory (2 MiB pages asked for), filled tile by tile by a few threads.
#include "ops/cpu/repacked.h"

#include <fmt/format.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "ktx/error.h"
#include "ktx/quant.h"
#include "quant/row_tiles.h"
#include "runtime/thread_pool.h"

namespace ktx::ops::cpu {
namespace {

// The end of the read-only mapping of a file that p lies in (/proc/self/maps: no 'w' in its
// permissions, a non-zero inode), as the GGUF loader maps model files; 0 when p lies in none.
// Such pages were never written, so dropping them from this process's page tables loses
// nothing: a later read maps the file's bytes again. Read afresh each time (a few hundred lines
// at load): an address can change hands when a mapping goes and another comes.
uintptr_t read_only_file_mapping_end(const void* p) {
#if defined(__linux__)
  std::ifstream maps("/proc/self/maps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  for (std::string line; std::getline(maps, line);) {
    unsigned long begin = 0, end = 0, inode = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s %*s %*s %lu", &begin, &end, perms, &inode) == 4 &&
        addr >= begin && addr < end) {
      return perms[1] != 'w' && inode != 0 ? end : 0;
    }
  }
  return 0;
#else
  (void)p;
  return 0;
#endif
}

// Drops the whole pages inside [data, data + bytes) from this process's memory, where they are
// a read-only file mapping; leaves any other memory alone (it belongs to whoever made it).
// MADV_COLD first puts them at the back of the kernel's reclaim order, then MADV_DONTNEED unmaps
// them: they stop counting in the process's resident memory at once, and stay in the page cache,
// to go first under memory pressure. (MADV_PAGEOUT would also evict them from the page cache, so
// that every start with the option read the file from disk again.)
void release_pages(const uint8_t* data, uint64_t bytes) {
  const auto page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const auto end = std::min((reinterpret_cast<uintptr_t>(data) + bytes) / page * page,
                            read_only_file_mapping_end(data));
  if (end <= begin) return;
  void* first = reinterpret_cast<void*>(begin);
#ifdef MADV_COLD
  ::madvise(first, end - begin, MADV_COLD);  // best effort: before Linux 5.4, EINVAL
#endif
  ::madvise(first, end - begin, MADV_DONTNEED);
}

}  // namespace

bool RepackedTensor::accepts(const gguf::TensorInfo& t) {
  if (kernels::cpu::vec_dot_tiles_fn(t.type) == nullptr) return false;
  if (t.shape.size() < 2 || t.shape.size() > 3) return false;
  const int64_t rows = t.shape[1], slabs = t.shape.size() == 3 ? t.shape[2] : 1;
  return rows > 0 && slabs > 0 && rows % quant::kTileRows == 0;
}

bool RepackedTensor::replaces_file_pages(const gguf::TensorInfo& t) {
  return accepts(t) && kernels::cpu::gemm_tiles_fn(t.type) != nullptr;
}

std::unique_ptr<RepackedTensor> RepackedTensor::make(const gguf::TensorInfo& t, int threads) {
  if (t.data == nullptr || !accepts(t)) return nullptr;
  const kernels::cpu::VecDotTilesFn fn = kernels::cpu::vec_dot_tiles_fn(t.type);
  const int64_t cols = t.shape[0], rows = t.shape[1];
  const int64_t slabs = t.shape.size() == 3 ? t.shape[2] : 1;
  const size_t row_bytes = row_size(t.type, cols);
  const size_t slab_bytes = row_bytes * static_cast<size_t>(rows);
  const size_t bytes = slab_bytes * static_cast<size_t>(slabs);

  void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) {
    throw Error(ErrorCode::kIo, fmt::format("{}: cannot allocate {} bytes to repack it: {}", t.name,
                                            bytes, std::strerror(errno)));
  }
  // Owned (and unmapped on every path out) from here on.
  std::unique_ptr<RepackedTensor> out;
  try {
    out.reset(new RepackedTensor(static_cast<uint8_t*>(p), bytes, slab_bytes, fn));
  } catch (...) {
    ::munmap(p, bytes);
    throw;
  }
#ifdef MADV_HUGEPAGE
  ::madvise(p, bytes, MADV_HUGEPAGE);  // a hint: 4 KiB pages work too, with more TLB misses
#endif
  uint8_t* data = out->data_;
  // Tiles spread over the threads in contiguous runs, each thread writing its own pages.
  const int64_t tiles = slabs * (rows / quant::kTileRows);
  const int64_t workers = std::clamp<int64_t>(threads, 1, std::max<int64_t>(1, tiles / 16));
  auto pack = [&](int64_t k) {
    const int64_t first = tiles * k / workers, last = tiles * (k + 1) / workers;
    const size_t off = static_cast<size_t>(first) * quant::kTileRows * row_bytes;
    quant::pack_row_tiles(t.type, cols, (last - first) * quant::kTileRows, t.data + off,
                          data + off);
  };
  std::vector<std::thread> pool;
  try {
    for (int64_t k = 1; k < workers; ++k) pool.emplace_back(pack, k);
  } catch (...) {
    // No thread to be had (EAGAIN): this thread packs the shares that found none.
    for (auto k = static_cast<int64_t>(pool.size()) + 1; k < workers; ++k) pack(k);
  }
  pack(0);
  for (std::thread& th : pool) th.join();
  // Where batches read the copy too (a tile GEMM for the type), nothing reads the file's pages of
  // this tensor again: drop them from this process now, so that the copy replaces them in memory
  // instead of adding to them, and memory pressure evicts the right pages (on the 27-layer V2-Lite
  // file the copy and the file together filled the machine, and the first prefills re-read
  // evicted pages of the tensors still read from the file). Contents never change: a later read
  // of these rows, by any path, maps them again.
  if (replaces_file_pages(t)) release_pages(t.data, t.n_bytes);
  return out;
}

RepackedTensor::~RepackedTensor() { ::munmap(data_, bytes_); }

std::optional<bool> parse_repack(const registry::OpOptions& options) {
  auto it = options.find("repack");
  if (it == options.end() || it->second == "false") return false;
  if (it->second == "true") return true;
  return std::nullopt;
}

std::optional<std::string> repack_option_error(const registry::OpOptions& options) {
  if (parse_repack(options)) return std::nullopt;
  return fmt::format("option repack = \"{}\"; expected true or false", options.at("repack"));
}

std::span<const std::string_view> repack_roles(model::ModuleKind kind) {
  using model::ModuleKind;
  static constexpr std::string_view kExperts[] = {"gate_exps", "up_exps", "down_exps"};
  static constexpr std::string_view kMlp[] = {"gate", "up", "down"};
  static constexpr std::string_view kMla[] = {"q", "q_a", "q_b", "kv_a_mqa", "output"};
  static constexpr std::string_view kHead[] = {"weight"};
  switch (kind) {
    case ModuleKind::kExperts:
      return kExperts;
    case ModuleKind::kMlp:
      return kMlp;
    case ModuleKind::kMlaAttention:
      return kMla;
    case ModuleKind::kLmHead:
      return kHead;
    default:
      return {};
  }
}

namespace {

// Whether `t` is the weight of one of m's repack roles.
bool repacked_role(const model::ModuleDesc& m, const gguf::TensorInfo* t) {
  for (std::string_view role : repack_roles(m.kind)) {
    if (t != nullptr && m.find_weight(role) == t) return true;
  }
  return false;
}

}  // namespace

std::vector<std::unique_ptr<RepackedTensor>> repack_module(
    const model::ModuleDesc& m, std::initializer_list<std::span<WeightMatrix>> matrices) {
  std::vector<std::unique_ptr<RepackedTensor>> out;
  if (kernels::cpu::vec_dot_tiles_fn(TensorType::Q4_K) == nullptr) {
    // The option asked for a copy the chosen kernels (this CPU, or KTX_CPU_ISA) cannot use: say
    // so, once a process.
    static std::once_flag said;
    std::call_once(said, [] {
      fmt::print(stderr,
                 "ktx: option repack: the {} kernels have no row-tile kernels (they need AVX-512 "
                 "VNNI); decode reads the file's rows and nothing is copied\n",
                 kernels::cpu::active_isa());
    });
    return out;
  }
  for (std::span<WeightMatrix> slabs : matrices) {
    if (slabs.empty() || !repacked_role(m, slabs.front().tensor)) continue;
    std::unique_ptr<RepackedTensor> r =
        RepackedTensor::make(*slabs.front().tensor, runtime::default_thread_count());
    if (!r) continue;  // no tile kernel for the type here: the file's rows
    for (size_t i = 0; i < slabs.size(); ++i) r->attach(slabs[i], static_cast<int64_t>(i));
    out.push_back(std::move(r));
  }
  return out;
}

namespace {

// The bytes of m's repack roles that `counts`.
template <typename Pred>
uint64_t role_bytes(const model::ModuleDesc& m, Pred counts) {
  uint64_t bytes = 0;
  for (std::string_view role : repack_roles(m.kind)) {
    const gguf::TensorInfo* t = m.find_weight(role);
    if (t != nullptr && counts(*t)) bytes += t->n_bytes;
  }
  return bytes;
}

}  // namespace

uint64_t repacked_bytes(const model::ModuleDesc& m) {
  return role_bytes(m, [](const gguf::TensorInfo& t) { return RepackedTensor::accepts(t); });
}

uint64_t repack_added_bytes(const model::ModuleDesc& m) {
  return role_bytes(m, [](const gguf::TensorInfo& t) {
    return RepackedTensor::accepts(t) && !RepackedTensor::replaces_file_pages(t);
  });
}

void RepackedTensor::attach(WeightMatrix& w, int64_t slab) const {
  w.tiles = data_ + static_cast<size_t>(slab) * slab_bytes_;
  w.tiles_fn = fn_;
}

}  // namespace ktx::ops::cpu
