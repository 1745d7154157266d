// GPU datasheet presets, the CPU bandwidth probe, and size parsing.
#include "planner/hardware.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <thread>

#include "kernels/cpu/cpu_features.h"
#include "runtime/thread_pool.h"

namespace ktx::planner {
namespace {
volatile uint64_t g_sink = 0;
}  // namespace

std::vector<GpuPreset> gpu_presets() {
  // Datasheet bandwidth (GB/s), dense FP16 tensor TFLOP/s with FP32 accumulate, memory (GiB).
  return {
      {"rtx3090", 936, 71, 24},    {"rtx4090", 1008, 165, 24}, {"rtx5090", 1792, 210, 32},
      {"a6000", 768, 155, 48},     {"l40s", 864, 362, 48},     {"a100-40g", 1555, 312, 40},
      {"a100-80g", 2039, 312, 80}, {"h100", 3350, 989, 80},    {"h200", 4800, 989, 141},
  };
}

std::optional<GpuPreset> find_gpu_preset(std::string_view name) {
  for (const GpuPreset& p : gpu_presets()) {
    if (p.name == name) return p;
  }
  return std::nullopt;
}

DeviceSpeed gpu_speed(const GpuPreset& preset) {
  return {preset.bandwidth_gbs * 1e9 * kGpuBandwidthEfficiency,
          preset.tflops * 1e12 * kGpuFlopsEfficiency};
}

double measure_cpu_bandwidth(int threads, double seconds) {
  if (threads <= 0) threads = runtime::default_thread_count();
  // Far beyond the last-level cache so reads come from DRAM: 256 MiB plus 16 MiB a thread, at
  // most 1 GiB.
  const size_t words =
      std::min<size_t>(size_t{128} << 20, (size_t{32} << 20) + size_t(threads) * (size_t{2} << 20));
  std::unique_ptr<uint64_t[]> buffer(new uint64_t[words]);
  for (size_t i = 0; i < words; ++i) buffer[i] = i;  // touch every page
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> sink{0};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const size_t begin = words * static_cast<size_t>(t) / static_cast<size_t>(threads);
      const size_t end = words * static_cast<size_t>(t + 1) / static_cast<size_t>(threads);
      uint64_t acc = 0, done = 0;
      do {
        // Four independent sums keep several loads in flight.
        uint64_t a = 0, b = 0, c = 0, d = 0;
        size_t i = begin;
        for (; i + 4 <= end; i += 4) {
          a += buffer[i];
          b ^= buffer[i + 1];
          c += buffer[i + 2];
          d ^= buffer[i + 3];
        }
        acc += a + b + c + d;
        done += (end - begin) * sizeof(uint64_t);
      } while (std::chrono::steady_clock::now() < deadline);
      bytes += done;
      sink += acc;
    });
  }
  for (std::thread& th : pool) th.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  g_sink = sink.load();  // keep the sums alive
  return static_cast<double>(bytes.load()) / elapsed;
}

double default_cpu_flops(int threads) {
  if (threads <= 0) threads = runtime::default_thread_count();
  // What ktx's own prefill reaches per thread with the kernel tier this CPU gets, measured on
  // the 2-vCPU Zen 4 development machine (docs/PERF.md, Prefill; end to end, 512-token batches,
  // V2-Lite-shaped Q4_K_M models): 96-170 GFLOP/s a thread with the AVX-512 VNNI GEMM kernels,
  // ~58 with the AVX-512 GEMV path (KTX_GEMM=0); ~88 with the AVX2 GEMM kernels (the tier capped
  // on that Zen 4), taken lower for the CPUs that only have AVX2 (older cores, lower clocks); the
  // scalar references scaled from those. Rough by nature: --cpu-tflops overrides it.
  double per_thread = 1.2e9;
  switch (kernels::cpu::selected_isa()) {
    case kernels::cpu::Isa::kAvx512Vnni:
      per_thread = 120e9;
      break;
    case kernels::cpu::Isa::kAvx2:
      per_thread = 60e9;
      break;
    case kernels::cpu::Isa::kScalar:
      per_thread = 1.2e9;
      break;
  }
  return threads * per_thread;
}

std::optional<uint64_t> parse_size(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::string number;
  size_t i = 0;
  while (i < text.size() && (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
    number += text[i++];
  }
  if (number.empty() || number == ".") return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(value)) return std::nullopt;
  std::string unit(text.substr(i));
  for (char& ch : unit) ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
  double scale = 1;
  if (!unit.empty() && unit != "B") {
    const std::string_view prefixes = "KMGT";
    const size_t p = prefixes.find(unit[0]);
    if (p == std::string_view::npos) return std::nullopt;
    const std::string rest = unit.substr(1);
    if (rest.empty() || rest == "I" || rest == "IB") {
      scale = std::pow(1024.0, static_cast<double>(p + 1));
    } else if (rest == "B") {
      scale = std::pow(1000.0, static_cast<double>(p + 1));
    } else {
      return std::nullopt;
    }
  }
  const double bytes = value * scale;
  if (bytes < 0 || bytes > 1.8e19) return std::nullopt;
  return static_cast<uint64_t>(std::llround(bytes));
}

uint64_t physical_memory_bytes() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit) {
    if (key == "MemTotal:") return kib * 1024;
  }
  return 0;
}

std::string format_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (std::fabs(bytes) >= 1024.0 && u < 4) {
    bytes /= 1024.0;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} B", bytes) : fmt::format("{:.1f} {}", bytes, units[u]);
}

}  // namespace ktx::planner
