// bench_memory_bandwidth: the machine's main-memory read bandwidth, the ceiling of batch-1 decode
// (every decoded token streams its active weights once). Streaming sums over buffers much larger
// than the last-level cache, with 1, 2, 4 … N threads; best and median of the repeats.
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include "bench_util.h"
#include "memory_bandwidth.h"

namespace {

constexpr const char* kUsage =
    "usage: bench_memory_bandwidth [-t N] [--sizes MiB,MiB,...] [--repeats N] [--json]\n"
    "  read bandwidth with 1, 2, 4 ... N threads (default: all hardware threads) over buffers of\n"
    "  the given sizes (default: 4x, 8x and 16x the last-level cache, at least 256 MiB,\n"
    "  at most 1/16, 1/8 and 1/4 of physical memory)\n";

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  BenchArgs args(argc, argv, kUsage, "--sizes");
  const uint64_t llc = llc_bytes();
  std::vector<uint64_t> sizes;
  if (!args.list.empty()) {
    std::stringstream in(args.list);
    std::string item;
    while (std::getline(in, item, ',')) {
      char* end = nullptr;
      const long mib = std::strtol(item.c_str(), &end, 10);
      if (item.empty() || *end != '\0' || mib < 1) {
        BenchArgs::fail(kUsage,
                        "--sizes takes sizes in MiB separated by commas, not '" + args.list + "'");
      }
      sizes.push_back(static_cast<uint64_t>(mib) << 20);
    }
  } else {
    const uint64_t base = default_probe_bytes();
    sizes = {base, 2 * base, 4 * base};
  }

  std::vector<BandwidthResult> results;
  double one_thread = 0, all_threads = 0;
  for (int t : thread_sweep(args.threads)) {
    for (uint64_t bytes : sizes) {
      const BandwidthResult r = measure_read_bandwidth(bytes, t, args.repeats);
      results.push_back(r);
      if (t == 1) one_thread = std::max(one_thread, r.best_gbs);
      if (t == args.threads) all_threads = std::max(all_threads, r.best_gbs);
      if (!args.json) {
        std::printf("read %7.1f MiB  %3d thread%s  best %7.2f GB/s  median %7.2f GB/s%s\n",
                    static_cast<double>(r.bytes) / (1 << 20), t, t == 1 ? " " : "s", r.best_gbs,
                    r.median_gbs, llc && r.bytes < 4 * llc ? "  (< 4x LLC: cache helps)" : "");
      }
    }
  }

  if (args.json) {
    std::printf(
        "{\"bench\":\"memory_bandwidth\",\"cpu\":%s,\"llc_bytes\":%llu,\"threads\":%d,"
        "\"repeats\":%d,\"read_gbs_1_thread\":%.3f,\"read_gbs_all_threads\":%.3f,"
        "\"results\":[",
        json_string(cpu_model_name()).c_str(), static_cast<unsigned long long>(llc), args.threads,
        args.repeats, one_thread, all_threads);
    for (size_t i = 0; i < results.size(); ++i) {
      const BandwidthResult& r = results[i];
      std::printf("%s{\"bytes\":%llu,\"threads\":%d,\"best_gbs\":%.3f,\"median_gbs\":%.3f}",
                  i ? "," : "", static_cast<unsigned long long>(r.bytes), r.threads, r.best_gbs,
                  r.median_gbs);
    }
    std::printf("]}\n");
  } else {
    std::printf("memory read bandwidth (%s, LLC %.0f MiB): 1 thread %.2f GB/s",
                cpu_model_name().c_str(), static_cast<double>(llc) / (1 << 20), one_thread);
    if (args.threads > 1) std::printf(", %d threads %.2f GB/s", args.threads, all_threads);
    std::printf(" (best of %d)\n", args.repeats);
  }
  return 0;
}
