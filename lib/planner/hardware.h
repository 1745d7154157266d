// Device speeds and sizes for the planner: GPU presets from datasheets, a quick measurement of
// the CPU's memory bandwidth, and "24G"-style sizes.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::planner {

// What the planner's time model uses: sustained rates, not peaks.
struct DeviceSpeed {
  double bandwidth = 0;  // bytes/s a streaming kernel reaches
  double flops = 0;      // FLOP/s a GEMM reaches
};

struct GpuPreset {
  std::string_view name;  // "rtx4090"
  double bandwidth_gbs;   // datasheet memory bandwidth, GB/s
  double tflops;          // datasheet dense FP16 tensor-core TFLOP/s (FP32 accumulate)
  double memory_gib;      // board memory
};

// Datasheet numbers discounted to what kernels sustain: these factors are assumptions, stated
// in docs/RULES.md, not measurements.
inline constexpr double kGpuBandwidthEfficiency = 0.8;
inline constexpr double kGpuFlopsEfficiency = 0.5;

std::vector<GpuPreset> gpu_presets();
std::optional<GpuPreset> find_gpu_preset(std::string_view name);
DeviceSpeed gpu_speed(const GpuPreset& preset);

// Reads a large buffer with `threads` threads (0 = all) for about `seconds` and returns the
// bytes per second — what the routed experts' GEMVs can hope for.
double measure_cpu_bandwidth(int threads = 0, double seconds = 0.3);
// A rough CPU FLOP/s for prefill when none is given: threads × what ktx's prefill reached per
// thread with this CPU's kernel tier (AVX-512 VNNI 120 GFLOP/s, AVX2 30, scalar 1.2; measured).
double default_cpu_flops(int threads = 0);

// "24G", "24GiB", "512M", "1.5T", "136GB", "1000000": G/GiB = 2^30 bytes, GB = 10^9 (likewise
// K, M, T). nullopt when malformed.
std::optional<uint64_t> parse_size(std::string_view text);
// Total physical memory (MemTotal of /proc/meminfo), or 0 when unknown.
uint64_t physical_memory_bytes();

std::string format_bytes(double bytes);  // "21.3 GiB", "512.0 MiB"

}  // namespace ktx::planner
