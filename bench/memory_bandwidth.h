// Main-memory read bandwidth: N threads each stream-sum their slice of a buffer much larger than
// the last-level cache. Header-only so that bench_memory_bandwidth (the full probe) and `ktx bench`
// (a quick one for its roofline) measure the same way; no build flags needed (see sum_words).
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <new>
#include <string>
#include <thread>
#include <vector>

namespace ktx::bench {

struct BandwidthResult {
  uint64_t bytes = 0;  // buffer size
  int threads = 0;
  int repeats = 0;
  double best_gbs = 0;    // 1e9 bytes per second, the fastest repeat
  double median_gbs = 0;  // the median repeat (spread = noise from the rest of the machine)
};

// Size in bytes of the highest cache level, from sysfs (what lscpu shows). The C library's
// sysconf answer is a fallback only: in KVM guests it can be 10x off (320 MiB for a 32 MiB L3).
// 0 when unknown.
inline uint64_t llc_bytes() {
  int best_level = 0;
  uint64_t best = 0;
  for (int i = 0; i < 8; ++i) {
    const std::string dir = "/sys/devices/system/cpu/cpu0/cache/index" + std::to_string(i);
    std::ifstream level_in(dir + "/level"), size_in(dir + "/size");
    int level = 0;
    std::string size;
    if (!(level_in >> level) || !(size_in >> size) || size.empty()) continue;
    uint64_t bytes = std::strtoull(size.c_str(), nullptr, 10);
    const char unit = size.back();
    if (unit == 'K') bytes <<= 10;
    if (unit == 'M') bytes <<= 20;
    if (unit == 'G') bytes <<= 30;
    if (level > best_level || (level == best_level && bytes > best))
      best_level = level, best = bytes;
  }
  if (best > 0) return best;
  long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
  if (l3 <= 0) l3 = sysconf(_SC_LEVEL2_CACHE_SIZE);
  return l3 > 0 ? static_cast<uint64_t>(l3) : 0;
}

inline uint64_t physical_memory_bytes() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

namespace detail {

// One core's bandwidth depends on how many cache lines it keeps in flight, which the reorder
// buffer bounds: the fewer instructions per line, the more lines. Hence explicit vectors (GCC/Clang
// vector extensions; -O2 builds would otherwise keep a scalar loop and lose a third), 32-byte adds
// where the CPU has AVX2 (checked at run time, like every ISA choice in ktx; ~15% more for one
// thread than 16-byte SSE2 on Zen 4), and independent sums so no add waits on another.
#if defined(__x86_64__)
__attribute__((target("avx2"))) inline uint64_t sum_words_avx2(const uint64_t* p, size_t n) {
  typedef uint64_t v4 __attribute__((vector_size(32), aligned(32)));
  const v4* v = reinterpret_cast<const v4*>(p);  // p is 64-byte aligned, n a multiple of 16
  v4 s0 = {}, s1 = {}, s2 = {}, s3 = {};
  for (size_t j = 0; j + 4 <= n / 4; j += 4) {
    s0 += v[j];
    s1 += v[j + 1];
    s2 += v[j + 2];
    s3 += v[j + 3];
  }
  const v4 t = (s0 + s1) + (s2 + s3);
  return t[0] + t[1] + t[2] + t[3];
}
#endif

// Baseline: SSE2 on x86-64, NEON on arm64.
inline uint64_t sum_words_16(const uint64_t* p, size_t n) {
  typedef uint64_t v2 __attribute__((vector_size(16), aligned(16)));
  const v2* v = reinterpret_cast<const v2*>(p);
  v2 s0 = {}, s1 = {}, s2 = {}, s3 = {}, s4 = {}, s5 = {}, s6 = {}, s7 = {};
  for (size_t j = 0; j + 8 <= n / 2; j += 8) {
    s0 += v[j];
    s1 += v[j + 1];
    s2 += v[j + 2];
    s3 += v[j + 3];
    s4 += v[j + 4];
    s5 += v[j + 5];
    s6 += v[j + 6];
    s7 += v[j + 7];
  }
  const v2 t = ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7));
  return t[0] + t[1];
}

inline uint64_t sum_words(const uint64_t* p, size_t n) {
#if defined(__x86_64__)
  static const bool avx2 = __builtin_cpu_supports("avx2");
  if (avx2) return sum_words_avx2(p, n);
#endif
  return sum_words_16(p, n);
}

}  // namespace detail

// Reads `bytes` with `threads` threads, `repeats` times, after one untimed pass. Each thread
// first-touches the slice it later reads (so on a NUMA machine the pages sit on its node) and the
// buffer asks for transparent huge pages (so TLB misses do not count against memory). A repeat is
// timed from a barrier before the first load to a barrier after the slowest thread's last.
// Throws std::bad_alloc when the buffer cannot be allocated.
inline BandwidthResult measure_read_bandwidth(uint64_t bytes, int threads, int repeats) {
  threads = std::max(threads, 1);
  repeats = std::max(repeats, 1);
  constexpr size_t kAlign = size_t{2} << 20;  // a huge page
  const size_t words_per_thread = (bytes / sizeof(uint64_t) + threads - 1) / threads;
  const size_t slice = (words_per_thread + 15) / 16 * 16;  // whole 128-byte steps
  const size_t total = (slice * threads * sizeof(uint64_t) + kAlign - 1) / kAlign * kAlign;
  auto* buf = static_cast<uint64_t*>(std::aligned_alloc(kAlign, total));
  if (buf == nullptr) throw std::bad_alloc();
  madvise(buf, total, MADV_HUGEPAGE);

  using clock = std::chrono::steady_clock;
  std::vector<double> seconds(static_cast<size_t>(repeats));
  std::atomic<uint64_t> sink{0};
  clock::time_point start;
  int round = -1;  // -1: the untimed warm-up pass
  std::barrier go(threads, [&]() noexcept { start = clock::now(); });
  std::barrier done(threads, [&]() noexcept {
    if (round >= 0)
      seconds[static_cast<size_t>(round)] =
          std::chrono::duration<double>(clock::now() - start).count();
    ++round;
  });
  auto worker = [&](int t) {
    uint64_t* p = buf + static_cast<size_t>(t) * slice;
    for (size_t i = 0; i < slice; ++i) p[i] = i * 0x9E3779B97F4A7C15ull + static_cast<size_t>(t);
    for (int r = -1; r < repeats; ++r) {
      go.arrive_and_wait();
      sink.fetch_add(detail::sum_words(p, slice), std::memory_order_relaxed);
      done.arrive_and_wait();
    }
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (std::thread& th : pool) th.join();
  std::free(buf);

  const double read = static_cast<double>(slice) * threads * sizeof(uint64_t);
  std::sort(seconds.begin(), seconds.end());
  BandwidthResult r;
  r.bytes = static_cast<uint64_t>(read);
  r.threads = threads;
  r.repeats = repeats;
  r.best_gbs = read / seconds.front() / 1e9;
  r.median_gbs = read / seconds[seconds.size() / 2] / 1e9;
  return r;
}

// A buffer size well past the last-level cache: 4x the LLC, at least 256 MiB, but at most a
// sixteenth of physical memory (the machine is shared; a probe must not push anyone into swap).
inline uint64_t default_probe_bytes() {
  uint64_t bytes = std::max<uint64_t>(4 * llc_bytes(), uint64_t{256} << 20);
  if (const uint64_t phys = physical_memory_bytes(); phys > 0) bytes = std::min(bytes, phys / 16);
  return bytes;
}

}  // namespace ktx::bench
