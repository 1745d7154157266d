// File: the opened model — parts merged into one metadata list and one tensor directory, with
// name lookups and typed getters whose errors say which key and what type was wanted.
#include <fmt/format.h>

#include "gguf/file_impl.h"
#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::gguf {
namespace {

// Debian's Abseil keeps its own string_view type; heterogeneous lookups need that one.
absl::string_view as_absl(std::string_view s) { return {s.data(), s.size()}; }

std::string describe(const Value& v) {
  if (v.is_array()) {
    return fmt::format("an array of {} × {}", value_type_name(v.array_type()), v.array_size());
  }
  return fmt::format("{} {}", value_type_name(v.type()), v.to_display_string());
}

}  // namespace

int64_t TensorInfo::rows() const {
  int64_t r = 1;
  for (size_t i = 1; i < shape.size(); ++i) r *= shape[i];
  return r;
}

File::File(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
File::File(File&&) noexcept = default;
File& File::operator=(File&&) noexcept = default;
File::~File() = default;

File File::open(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->parts = detail::open_parts(path);
  auto& first = impl->parts.front();
  impl->metadata = std::move(first.metadata);
  impl->key_index.reserve(impl->metadata.size());
  for (size_t i = 0; i < impl->metadata.size(); ++i) {
    impl->key_index.emplace(impl->metadata[i].key, i);
  }
  size_t n_tensors = 0;
  for (const auto& part : impl->parts) n_tensors += part.tensors.size();
  impl->tensors.reserve(n_tensors);
  impl->tensor_index.reserve(n_tensors);
  for (size_t p = 0; p < impl->parts.size(); ++p) {
    auto& part = impl->parts[p];
    impl->paths.push_back(part.path());
    for (auto& t : part.tensors) {
      t.split = static_cast<uint32_t>(p);
      impl->tensor_index.emplace(t.name, impl->tensors.size());
      impl->tensors.push_back(std::move(t));
    }
    part.tensors.clear();
    part.tensors.shrink_to_fit();
    part.name_offsets = {};
  }
  return File(std::move(impl));
}

uint32_t File::version() const { return impl_->parts.front().version; }
uint32_t File::alignment() const { return impl_->parts.front().alignment; }
const std::vector<std::string>& File::paths() const { return impl_->paths; }

uint64_t File::data_offset(uint32_t split) const {
  if (split >= impl_->parts.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: split index {} out of range (the model has {} parts)",
                            impl_->paths.front(), split, impl_->parts.size()));
  }
  return impl_->parts[split].data_offset;
}

uint64_t File::file_size(uint32_t split) const {
  if (split >= impl_->parts.size()) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: split index {} out of range (the model has {} parts)",
                            impl_->paths.front(), split, impl_->parts.size()));
  }
  return impl_->parts[split].map.size();
}

const std::vector<KeyValue>& File::metadata() const { return impl_->metadata; }

const Value* File::find(std::string_view key) const {
  const auto it = impl_->key_index.find(as_absl(key));
  return it == impl_->key_index.end() ? nullptr : &impl_->metadata[it->second].value;
}

namespace {

const Value& require(const File& file, std::string_view key, std::string_view expected) {
  const Value* v = file.find(key);
  if (v == nullptr) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}: metadata key '{}' is missing (expected {})", file.paths().front(),
                            key, expected));
  }
  return *v;
}

[[noreturn]] void wrong_type(const File& file, std::string_view key, const Value& v,
                             std::string_view expected) {
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}: metadata key '{}' holds {}, expected {}", file.paths().front(), key,
                          describe(v), expected));
}

}  // namespace

int64_t File::get_int(std::string_view key) const {
  constexpr std::string_view kExpected = "an integer that fits int64";
  const Value& v = require(*this, key, kExpected);
  if (auto i = v.as_int()) return *i;
  wrong_type(*this, key, v, kExpected);
}

double File::get_float(std::string_view key) const {
  constexpr std::string_view kExpected = "a FLOAT32 or FLOAT64";
  const Value& v = require(*this, key, kExpected);
  if (auto f = v.as_float()) return *f;
  wrong_type(*this, key, v, kExpected);
}

bool File::get_bool(std::string_view key) const {
  constexpr std::string_view kExpected = "a BOOL";
  const Value& v = require(*this, key, kExpected);
  if (auto b = v.as_bool()) return *b;
  wrong_type(*this, key, v, kExpected);
}

const std::string& File::get_string(std::string_view key) const {
  constexpr std::string_view kExpected = "a STRING";
  const Value& v = require(*this, key, kExpected);
  if (const std::string* s = v.as_string()) return *s;
  wrong_type(*this, key, v, kExpected);
}

const std::vector<TensorInfo>& File::tensors() const { return impl_->tensors; }

const TensorInfo* File::find_tensor(std::string_view name) const {
  const auto it = impl_->tensor_index.find(as_absl(name));
  return it == impl_->tensor_index.end() ? nullptr : &impl_->tensors[it->second];
}

const TensorInfo& File::tensor(std::string_view name) const {
  if (const TensorInfo* t = find_tensor(name)) return *t;
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}: no tensor named '{}' ({} tensors in the model)",
                          impl_->paths.front(), name, impl_->tensors.size()));
}

}  // namespace ktx::gguf
