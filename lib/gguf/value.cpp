// Value: one metadata value, kept in its stored type and bytes so it writes back unchanged.
#include <fmt/format.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <limits>

#include "gguf/rules.h"
#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::gguf {
namespace {

template <typename T>
std::vector<uint8_t> le_bytes(T v) {
  static_assert(std::is_trivially_copyable_v<T>);
  // Assemble little-endian explicitly so the stored bytes do not depend on the host.
  uint64_t bits = 0;
  if constexpr (sizeof(T) == 1) {
    bits = std::bit_cast<uint8_t>(v);
  } else if constexpr (sizeof(T) == 2) {
    bits = std::bit_cast<uint16_t>(v);
  } else if constexpr (sizeof(T) == 4) {
    bits = std::bit_cast<uint32_t>(v);
  } else {
    bits = std::bit_cast<uint64_t>(v);
  }
  std::vector<uint8_t> out(sizeof(T));
  for (size_t i = 0; i < sizeof(T); ++i) out[i] = static_cast<uint8_t>(bits >> (8 * i));
  return out;
}

uint64_t load_le(const uint8_t* p, uint64_t n) {
  uint64_t v = 0;
  for (uint64_t i = 0; i < n; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

bool is_signed_type(ValueType t) {
  return t == ValueType::INT8 || t == ValueType::INT16 || t == ValueType::INT32 ||
         t == ValueType::INT64;
}

// The element at `p` of integer type `t` as a signed value, or nullopt for a UINT64 past
// INT64_MAX.
std::optional<int64_t> int_from(ValueType t, const uint8_t* p) {
  const uint64_t size = detail::value_type_size(t);
  const uint64_t raw = load_le(p, size);
  if (is_signed_type(t)) {
    const unsigned shift = static_cast<unsigned>(64 - 8 * size);
    return static_cast<int64_t>(raw << shift) >> shift;  // sign-extend
  }
  if (raw > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
  return static_cast<int64_t>(raw);
}

std::optional<double> float_from(ValueType t, const uint8_t* p) {
  if (t == ValueType::FLOAT32) return std::bit_cast<float>(static_cast<uint32_t>(load_le(p, 4)));
  if (t == ValueType::FLOAT64) return std::bit_cast<double>(load_le(p, 8));
  return std::nullopt;
}

std::string scalar_display(ValueType t, const uint8_t* p) {
  if (t == ValueType::BOOL) return *p != 0 ? "true" : "false";
  if (t == ValueType::FLOAT32)
    return fmt::format("{}", std::bit_cast<float>(static_cast<uint32_t>(load_le(p, 4))));
  if (t == ValueType::FLOAT64) return fmt::format("{}", std::bit_cast<double>(load_le(p, 8)));
  if (t == ValueType::UINT64) return fmt::format("{}", load_le(p, 8));
  return fmt::format("{}", *int_from(t, p));
}

std::string quoted(const std::string& s, size_t max_chars = 64) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max_chars; ++i) {
    const char c = s[i];
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      out += fmt::format("\\x{:02x}", static_cast<unsigned char>(c));
    } else {
      out += c;
    }
  }
  if (s.size() > max_chars) out += "…";
  out += '"';
  return out;
}

}  // namespace

bool is_integer_type(ValueType t) {
  switch (t) {
    case ValueType::UINT8:
    case ValueType::INT8:
    case ValueType::UINT16:
    case ValueType::INT16:
    case ValueType::UINT32:
    case ValueType::INT32:
    case ValueType::UINT64:
    case ValueType::INT64:
      return true;
    default:
      return false;
  }
}

std::string_view value_type_name(ValueType type) {
  switch (type) {
    case ValueType::UINT8:
      return "UINT8";
    case ValueType::INT8:
      return "INT8";
    case ValueType::UINT16:
      return "UINT16";
    case ValueType::INT16:
      return "INT16";
    case ValueType::UINT32:
      return "UINT32";
    case ValueType::INT32:
      return "INT32";
    case ValueType::FLOAT32:
      return "FLOAT32";
    case ValueType::BOOL:
      return "BOOL";
    case ValueType::STRING:
      return "STRING";
    case ValueType::ARRAY:
      return "ARRAY";
    case ValueType::UINT64:
      return "UINT64";
    case ValueType::INT64:
      return "INT64";
    case ValueType::FLOAT64:
      return "FLOAT64";
  }
  return "UNKNOWN";
}

#define KTX_GGUF_SCALAR(fn, ctype, vtype) \
  Value Value::fn(ctype v) {              \
    Value out;                            \
    out.type_ = ValueType::vtype;         \
    out.bytes_ = le_bytes(v);             \
    return out;                           \
  }
KTX_GGUF_SCALAR(uint8, uint8_t, UINT8)
KTX_GGUF_SCALAR(int8, int8_t, INT8)
KTX_GGUF_SCALAR(uint16, uint16_t, UINT16)
KTX_GGUF_SCALAR(int16, int16_t, INT16)
KTX_GGUF_SCALAR(uint32, uint32_t, UINT32)
KTX_GGUF_SCALAR(int32, int32_t, INT32)
KTX_GGUF_SCALAR(float32, float, FLOAT32)
KTX_GGUF_SCALAR(uint64, uint64_t, UINT64)
KTX_GGUF_SCALAR(int64, int64_t, INT64)
KTX_GGUF_SCALAR(float64, double, FLOAT64)
#undef KTX_GGUF_SCALAR

Value Value::boolean(bool v) {
  Value out;
  out.type_ = ValueType::BOOL;
  out.bytes_ = {static_cast<uint8_t>(v ? 1 : 0)};
  return out;
}

Value Value::string(std::string v) {
  Value out;
  out.type_ = ValueType::STRING;
  out.bytes_.clear();
  out.strings_.push_back(std::move(v));
  return out;
}

Value Value::array(ValueType element_type, std::vector<uint8_t> bytes, uint64_t count) {
  const auto id = static_cast<uint32_t>(element_type);
  if (!detail::is_known_value_type(id) || element_type == ValueType::STRING ||
      element_type == ValueType::ARRAY) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("Value::array: element type {} ({}) is not a numeric or BOOL type "
                            "(use string_array for strings; nested arrays are not supported)",
                            id, value_type_name(element_type)));
  }
  const uint64_t size = detail::value_type_size(element_type);
  if (count > std::numeric_limits<uint64_t>::max() / size || bytes.size() != count * size) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("Value::array: {} elements of {} need {} bytes, got {}", count,
                            value_type_name(element_type), count * size, bytes.size()));
  }
  if (element_type == ValueType::BOOL) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (bytes[i] > 1) {
        throw Error(
            ErrorCode::kInvalidArgument,
            fmt::format("Value::array: BOOL element {} is {}, expected 0 or 1", i, bytes[i]));
      }
    }
  }
  Value out;
  out.type_ = ValueType::ARRAY;
  out.array_type_ = element_type;
  out.count_ = count;
  out.bytes_ = std::move(bytes);
  return out;
}

Value Value::string_array(std::vector<std::string> items) {
  Value out;
  out.type_ = ValueType::ARRAY;
  out.array_type_ = ValueType::STRING;
  out.count_ = items.size();
  out.bytes_.clear();
  out.strings_ = std::move(items);
  return out;
}

Value Value::int32_array(const std::vector<int32_t>& items) {
  std::vector<uint8_t> bytes;
  bytes.reserve(items.size() * 4);
  for (int32_t v : items) {
    const auto b = le_bytes(v);
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  return array(ValueType::INT32, std::move(bytes), items.size());
}

Value Value::uint64_array(const std::vector<uint64_t>& items) {
  std::vector<uint8_t> bytes;
  bytes.reserve(items.size() * 8);
  for (uint64_t v : items) {
    const auto b = le_bytes(v);
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  return array(ValueType::UINT64, std::move(bytes), items.size());
}

Value Value::float32_array(const std::vector<float>& items) {
  std::vector<uint8_t> bytes;
  bytes.reserve(items.size() * 4);
  for (float v : items) {
    const auto b = le_bytes(v);
    bytes.insert(bytes.end(), b.begin(), b.end());
  }
  return array(ValueType::FLOAT32, std::move(bytes), items.size());
}

std::optional<int64_t> Value::as_int() const {
  if (!is_integer_type(type_)) return std::nullopt;
  return int_from(type_, bytes_.data());
}

std::optional<uint64_t> Value::as_uint() const {
  if (!is_integer_type(type_)) return std::nullopt;
  if (type_ == ValueType::UINT64) return load_le(bytes_.data(), 8);
  const auto v = int_from(type_, bytes_.data());
  if (!v || *v < 0) return std::nullopt;
  return static_cast<uint64_t>(*v);
}

std::optional<double> Value::as_float() const { return float_from(type_, bytes_.data()); }

std::optional<bool> Value::as_bool() const {
  if (type_ != ValueType::BOOL) return std::nullopt;
  return bytes_[0] != 0;
}

const std::string* Value::as_string() const {
  return type_ == ValueType::STRING ? &strings_[0] : nullptr;
}

std::optional<int64_t> Value::int_at(uint64_t i) const {
  if (!is_array() || i >= count_ || !is_integer_type(array_type_)) return std::nullopt;
  return int_from(array_type_, bytes_.data() + i * detail::value_type_size(array_type_));
}

std::optional<uint64_t> Value::uint_at(uint64_t i) const {
  if (!is_array() || i >= count_ || !is_integer_type(array_type_)) return std::nullopt;
  const uint8_t* p = bytes_.data() + i * detail::value_type_size(array_type_);
  if (array_type_ == ValueType::UINT64) return load_le(p, 8);
  const auto v = int_from(array_type_, p);
  if (!v || *v < 0) return std::nullopt;
  return static_cast<uint64_t>(*v);
}

std::optional<double> Value::float_at(uint64_t i) const {
  if (!is_array() || i >= count_) return std::nullopt;
  return float_from(array_type_, bytes_.data() + i * detail::value_type_size(array_type_));
}

std::optional<bool> Value::bool_at(uint64_t i) const {
  if (!is_array() || i >= count_ || array_type_ != ValueType::BOOL) return std::nullopt;
  return bytes_[i] != 0;
}

const std::vector<std::string>* Value::strings() const {
  return is_array() && array_type_ == ValueType::STRING ? &strings_ : nullptr;
}

std::string Value::to_display_string(size_t max_items) const {
  if (type_ == ValueType::STRING) return quoted(strings_[0]);
  if (!is_array()) return scalar_display(type_, bytes_.data());
  if (count_ > max_items) {
    return fmt::format("[{} × {}]", value_type_name(array_type_), count_);
  }
  std::string out = "[";
  for (uint64_t i = 0; i < count_; ++i) {
    if (i > 0) out += ", ";
    if (array_type_ == ValueType::STRING) {
      out += quoted(strings_[i]);
    } else {
      out += scalar_display(array_type_, bytes_.data() + i * detail::value_type_size(array_type_));
    }
  }
  return out + "]";
}

bool Value::operator==(const Value& other) const {
  // Bytes, not numbers: a NaN equals itself and -0.0 differs from 0.0, which is what a
  // byte-exact round trip needs.
  return type_ == other.type_ && count_ == other.count_ &&
         (!is_array() || array_type_ == other.array_type_) && bytes_ == other.bytes_ &&
         strings_ == other.strings_;
}

}  // namespace ktx::gguf
