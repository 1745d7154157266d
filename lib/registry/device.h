// Where an operator runs: "cpu" (host memory, the CPU backend's thread pool) or a device of a
// loaded backend module, named "<backend>:<index>" — "cuda:0", "cuda:1", or "ref:0" (the
// reference module's device, whose memory is its own). The spelling is the one rule files and
// plans use.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ktx::registry {

// kCpu: the host. kAccelerator: a device whose memory belongs to one backend module; activations
// reach it only through that backend's buffers and copies.
enum class DeviceKind { kCpu, kAccelerator };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  std::string backend;  // the backend that owns an accelerator ("cuda", "ref"); empty for the CPU
  int index = 0;        // which of that backend's devices; 0 for the CPU

  std::string name() const;  // "cpu", "cuda:0", "ref:0"
  bool is_cpu() const { return kind == DeviceKind::kCpu; }
  bool operator==(const Device&) const = default;
  static Device cpu() { return {}; }
  static Device accelerator(std::string backend, int i) {
    return {DeviceKind::kAccelerator, std::move(backend), i};
  }
  static Device cuda(int i) { return accelerator("cuda", i); }
};

// "cpu", "cuda" (= cuda:0, KTransformers' spelling) or "<backend>:<N>", where backend is a
// lowercase name ([a-z][a-z0-9_]*, not "cpu"): "cuda:1", "ref:0". nullopt for anything else.
// Whether the device exists is the caller's question.
std::optional<Device> parse_device(std::string_view text);

}  // namespace ktx::registry
