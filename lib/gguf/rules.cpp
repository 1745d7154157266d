// The checks of rules.h.
#include "gguf/rules.h"

#include <fmt/format.h>
#include <fmt/ranges.h>  // fmt::join (it lives here from fmt 11 on)

#include <limits>

namespace ktx::gguf::detail {

bool is_valid_utf8(std::string_view s) {
  size_t i = 0;
  const size_t n = s.size();
  while (i < n) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      ++i;
      continue;
    }
    size_t len;
    uint32_t cp;
    if ((c & 0xE0) == 0xC0) {
      len = 2;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      len = 3;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      len = 4;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3F);
    }
    // Overlong forms, UTF-16 surrogates and code points past U+10FFFF are not UTF-8.
    static constexpr uint32_t kMinForLength[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kMinForLength[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

bool is_power_of_two(uint64_t x) { return x != 0 && (x & (x - 1)) == 0; }

bool is_known_value_type(uint32_t id) { return id <= static_cast<uint32_t>(ValueType::FLOAT64); }

uint64_t value_type_size(ValueType type) {
  switch (type) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::BOOL:
      return 1;
    case ValueType::UINT16:
    case ValueType::INT16:
      return 2;
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::FLOAT32:
      return 4;
    case ValueType::UINT64:
    case ValueType::INT64:
    case ValueType::FLOAT64:
      return 8;
    case ValueType::STRING:
    case ValueType::ARRAY:
      return 0;
  }
  return 0;
}

namespace {

std::optional<std::string> name_problem(std::string_view what, std::string_view s) {
  if (s.empty()) return fmt::format("{} is empty", what);
  if (s.find('\0') != std::string_view::npos) {
    return fmt::format("{} contains a NUL byte", what);
  }
  if (!is_valid_utf8(s)) return fmt::format("{} is not valid UTF-8", what);
  return std::nullopt;
}

}  // namespace

std::optional<std::string> key_problem(std::string_view key) { return name_problem("key", key); }

std::optional<std::string> tensor_name_problem(std::string_view name) {
  return name_problem("tensor name", name);
}

std::optional<std::string> reserved_key_problem(std::string_view key, const Value& value) {
  if (key == kAlignmentKey) {
    if (value.type() != ValueType::UINT32) {
      return fmt::format("general.alignment must be a UINT32, not {}",
                         value.is_array() ? "an ARRAY" : value_type_name(value.type()));
    }
    const uint64_t a = *value.as_uint();
    if (!is_power_of_two(a)) {
      return fmt::format("general.alignment is {}, expected a power of two", a);
    }
    return std::nullopt;
  }
  if (key == kSplitNoKey || key == kSplitCountKey || key == kSplitTensorsCountKey) {
    if (value.is_array() || !value.as_int() || *value.as_int() < 0) {
      return fmt::format("{} must be a non-negative integer, not {}", key,
                         value.to_display_string());
    }
  }
  return std::nullopt;
}

std::optional<std::string> shape_problem(TensorType type, std::span<const int64_t> shape,
                                         TensorSize& size) {
  if (shape.empty() || shape.size() > kMaxDims) {
    return fmt::format("{} dimensions, expected 1 to {}", shape.size(), kMaxDims);
  }
  bool empty = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] < 0) {
      return fmt::format("dimension {} is {}, expected >= 0 (shape {})", i, shape[i],
                         shape_string(shape));
    }
    if (shape[i] == 0) empty = true;
  }
  uint64_t n = 1;
  if (empty) {
    n = 0;  // no product can overflow once a factor is 0
  } else {
    int64_t prod = 1;
    for (int64_t d : shape) {
      if (__builtin_mul_overflow(prod, d, &prod) || prod == std::numeric_limits<int64_t>::max()) {
        return fmt::format("shape {} has more than INT64_MAX elements", shape_string(shape));
      }
    }
    n = static_cast<uint64_t>(prod);
  }
  const TypeTraits& t = traits(type);
  if (shape[0] % t.block_size != 0) {
    return fmt::format("row length {} (shape[0]) is not a multiple of {}'s block size {}", shape[0],
                       t.name, t.block_size);
  }
  // n / block_size blocks of type_size bytes; cannot overflow past n * type_size, but check.
  uint64_t bytes = 0;
  if (__builtin_mul_overflow(n / static_cast<uint64_t>(t.block_size),
                             static_cast<uint64_t>(t.type_size), &bytes) ||
      bytes > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
    return fmt::format("shape {} of {} needs more than INT64_MAX bytes", shape_string(shape),
                       t.name);
  }
  size.n_elements = n;
  size.n_bytes = bytes;
  return std::nullopt;
}

std::string shape_string(std::span<const int64_t> shape) {
  return fmt::format("[{}]", fmt::join(shape, ", "));
}

}  // namespace ktx::gguf::detail
