// What an opened File holds: one Part per file of the model (one, or each part of a split model),
// and the merged metadata and tensor directory with name indexes.
#pragma once

#include <absl/container/flat_hash_map.h>

#include <cstdint>
#include <string>
#include <vector>

#include "gguf/mapped_file.h"
#include "gguf/rules.h"
#include "ktx/gguf.h"

namespace ktx::gguf::detail {

// One parsed and validated GGUF file. Byte positions of fields are kept so that checks made
// after parsing (split keys, names across parts) can still say where in the file the problem is.
struct Part {
  MappedFile map;
  uint32_t version = 0;
  uint32_t alignment = kDefaultAlignment;
  uint64_t data_offset = 0;  // absolute start of the data section
  std::vector<KeyValue> metadata;
  std::vector<uint64_t> value_offsets;  // per key: byte where its value type starts
  std::vector<TensorInfo> tensors;      // split index not yet set; data points into `map`
  std::vector<uint64_t> name_offsets;   // per tensor: byte where its name starts

  const std::string& path() const { return map.path(); }
  // Index of `key` in metadata, or -1.
  int64_t find(std::string_view key) const;
};

// Parses `map` as one GGUF file and checks everything that can be checked within it. Throws
// ktx::Error(kInvalidFile) on the first defect.
Part read_part(MappedFile map);

// Opens the parts of a split model whose name matches the split pattern, or the single file.
std::vector<Part> open_parts(const std::string& path);

}  // namespace ktx::gguf::detail

namespace ktx::gguf {

struct File::Impl {
  std::vector<detail::Part> parts;
  std::vector<std::string> paths;
  std::vector<KeyValue> metadata;   // the first part's
  std::vector<TensorInfo> tensors;  // all parts', in part then directory order
  absl::flat_hash_map<std::string, size_t> key_index;
  absl::flat_hash_map<std::string, size_t> tensor_index;
};

}  // namespace ktx::gguf
