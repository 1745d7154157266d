// Device names as rule files and plans spell them.
#include "registry/device.h"

#include <charconv>

namespace ktx::registry {

std::string Device::name() const {
  return kind == DeviceKind::kCpu ? std::string("cpu") : "cuda:" + std::to_string(index);
}

std::optional<Device> parse_device(std::string_view text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  constexpr std::string_view kCuda = "cuda:";
  if (text.substr(0, kCuda.size()) != kCuda) return std::nullopt;
  const std::string_view digits = text.substr(kCuda.size());
  int index = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
  if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || index < 0) {
    return std::nullopt;
  }
  return Device::cuda(index);
}

}  // namespace ktx::registry
