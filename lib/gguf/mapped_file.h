// A read-only, private memory mapping of a whole file: the reader's only view of a GGUF file, so
// tensors can point into it without a copy.
#pragma once

#include <cstdint>
#include <string>

namespace ktx::gguf::detail {

class MappedFile {
 public:
  // Maps `path`. Throws ktx::Error(kIo) naming the path and the system's reason when the file is
  // missing, unreadable, not a regular file or cannot be mapped. An empty file maps to size 0.
  static MappedFile open(const std::string& path);

  MappedFile() = default;
  MappedFile(MappedFile&& other) noexcept;
  MappedFile& operator=(MappedFile&& other) noexcept;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  ~MappedFile();

  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  void release() noexcept;

  std::string path_;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace ktx::gguf::detail
