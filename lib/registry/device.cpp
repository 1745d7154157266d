// Device names as rule files and plans spell them.
#include "registry/device.h"

#include <charconv>

namespace ktx::registry {

std::string Device::name() const {
  return kind == DeviceKind::kCpu ? std::string("cpu") : backend + ":" + std::to_string(index);
}

std::optional<Device> parse_device(std::string_view text) {
  if (text == "cpu") return Device::cpu();
  const size_t colon = text.find(':');
  const std::string_view backend = text.substr(0, colon);
  if (backend.empty() || backend == "cpu" || !(backend[0] >= 'a' && backend[0] <= 'z')) {
    return std::nullopt;
  }
  for (char c : backend) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_')) return std::nullopt;
  }
  int index = 0;
  if (colon == std::string_view::npos) {
    // A bare name is KTransformers' "cuda" (= cuda:0) only: "gpu" or "npu" is more likely a
    // mistake than a backend, and the rule file's error should say so at once.
    if (backend != "cuda") return std::nullopt;
  } else {
    const std::string_view digits = text.substr(colon + 1);
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), index);
    if (ec != std::errc() || end != digits.data() + digits.size() || digits.empty() || index < 0) {
      return std::nullopt;
    }
  }
  return Device::accelerator(std::string(backend), index);
}

}  // namespace ktx::registry
