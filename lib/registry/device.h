// Where an operator runs: "cpu" or "cuda:N". The spelling is the one rule files and plans use.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ktx::registry {

enum class DeviceKind { kCpu, kCuda };

struct Device {
  DeviceKind kind = DeviceKind::kCpu;
  int index = 0;  // which GPU; 0 for the CPU

  std::string name() const;  // "cpu", "cuda:0"
  bool operator==(const Device&) const = default;
  static Device cpu() { return {}; }
  static Device cuda(int i) { return {DeviceKind::kCuda, i}; }
};

// "cpu", "cuda" (= cuda:0), "cuda:1"; nullopt for anything else.
std::optional<Device> parse_device(std::string_view text);

}  // namespace ktx::registry
