// Writer: header, key-value pairs and tensor infos, padding to the alignment, then each tensor's
// data padded to the alignment — the layout llama.cpp and gguf-py produce, so a canonical file
// read and written back is byte-identical. Everything the reader would refuse is refused here
// first, through the same rules (rules.h).
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>

#include "core/output_path.h"
#include "gguf/rules.h"
#include "gguf/sink.h"
#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::gguf {
namespace detail {
namespace {

// Buffers small writes (keys, infos) and passes large tensor data straight through.
class FdSink final : public Sink {
 public:
  FdSink(int fd, const std::string& path) : fd_(fd), path_(path) { buf_.reserve(kBuffer); }
  void flush() {
    raw_write(buf_.data(), buf_.size());
    buf_.clear();
  }

 protected:
  void write(const uint8_t* data, size_t n) override {
    if (buf_.size() + n <= kBuffer) {
      buf_.insert(buf_.end(), data, data + n);
      return;
    }
    flush();
    if (n >= kBuffer) {
      raw_write(data, n);
    } else {
      buf_.insert(buf_.end(), data, data + n);
    }
  }

 private:
  static constexpr size_t kBuffer = size_t{1} << 20;

  void raw_write(const uint8_t* data, size_t n) {
    while (n > 0) {
      const ssize_t k = ::write(fd_, data, n < (size_t{1} << 30) ? n : (size_t{1} << 30));
      if (k < 0) {
        if (errno == EINTR) continue;
        throw Error(ErrorCode::kIo,
                    fmt::format("{}: cannot write: {}", path_, std::strerror(errno)));
      }
      data += k;
      n -= static_cast<size_t>(k);
    }
  }

  int fd_;
  const std::string& path_;
  std::vector<uint8_t> buf_;
};

void put_u32(Sink& s, uint32_t v) {
  uint8_t b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  s.put(b, 4);
}

void put_u64(Sink& s, uint64_t v) {
  uint8_t b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * i));
  s.put(b, 8);
}

void put_string(Sink& s, std::string_view v) {
  put_u64(s, v.size());
  s.put(v.data(), v.size());
}

void put_value(Sink& s, const Value& v) {
  put_u32(s, static_cast<uint32_t>(v.type()));
  if (v.type() == ValueType::STRING) {
    put_string(s, *v.as_string());
    return;
  }
  if (v.is_array()) {
    put_u32(s, static_cast<uint32_t>(v.array_type()));
    put_u64(s, v.array_size());
    if (const auto* items = v.strings()) {
      for (const std::string& item : *items) put_string(s, item);
      return;
    }
  }
  s.put(v.raw_bytes().data(), v.raw_bytes().size());
}

[[noreturn]] void refuse(std::string message) {
  throw Error(ErrorCode::kInvalidArgument, std::move(message));
}

std::atomic<uint64_t> g_temp_counter{0};

}  // namespace
}  // namespace detail

using detail::align_up;

Writer::Writer(uint32_t version) : version_(version) {
  if (version != 2 && version != 3) {
    detail::refuse(
        fmt::format("gguf::Writer: version {} cannot be written, expected 2 or 3", version));
  }
}

void Writer::set_alignment(uint32_t alignment) {
  if (!detail::is_power_of_two(alignment)) {
    detail::refuse(fmt::format("gguf::Writer::set_alignment: {} is not a power of two", alignment));
  }
  const bool has_key = metadata_index_.contains(std::string(detail::kAlignmentKey));
  if (has_key || alignment != detail::kDefaultAlignment) {
    set_metadata(std::string(detail::kAlignmentKey), Value::uint32(alignment));
  }
  alignment_ = alignment;
}

void Writer::set_metadata(std::string key, Value value) {
  if (auto problem = detail::key_problem(key)) {
    detail::refuse(fmt::format("gguf::Writer::set_metadata: {}", *problem));
  }
  if (auto problem = detail::reserved_key_problem(key, value)) {
    detail::refuse(fmt::format("gguf::Writer::set_metadata '{}': {}", key, *problem));
  }
  if (key == detail::kAlignmentKey) alignment_ = static_cast<uint32_t>(*value.as_uint());
  if (auto it = metadata_index_.find(key); it != metadata_index_.end()) {
    metadata_[it->second].value = std::move(value);
    return;
  }
  metadata_index_.emplace(key, metadata_.size());
  metadata_.push_back(KeyValue{std::move(key), std::move(value)});
}

void Writer::add_tensor(std::string name, TensorType type, std::vector<int64_t> shape,
                        const void* data, uint64_t n_bytes, bool borrow) {
  if (auto problem = detail::tensor_name_problem(name)) {
    detail::refuse(fmt::format("gguf::Writer::add_tensor: {}", *problem));
  }
  const auto field = [&] { return fmt::format("gguf::Writer::add_tensor '{}'", name); };
  if (tensor_index_.contains(name)) {
    detail::refuse(fmt::format("{}: a tensor of that name was already added", field()));
  }
  if (!type_traits(static_cast<uint32_t>(type))) {
    detail::refuse(
        fmt::format("{}: unknown tensor type id {}", field(), static_cast<uint32_t>(type)));
  }
  detail::TensorSize size;
  if (auto problem = detail::shape_problem(type, shape, size)) {
    detail::refuse(fmt::format("{}: {}", field(), *problem));
  }
  if (n_bytes != size.n_bytes) {
    detail::refuse(fmt::format("{}: {} bytes given, but {} of shape {} takes {}", field(), n_bytes,
                               type_name(type), detail::shape_string(shape), size.n_bytes));
  }
  if (n_bytes > 0 && data == nullptr) {
    detail::refuse(fmt::format("{}: data is null", field()));
  }
  PendingTensor t;
  t.name = name;
  t.type = type;
  t.shape = std::move(shape);
  t.n_bytes = n_bytes;
  if (borrow || n_bytes == 0) {
    t.data = static_cast<const uint8_t*>(data);
  } else {
    const auto* p = static_cast<const uint8_t*>(data);
    t.owned.assign(p, p + n_bytes);
  }
  tensor_index_.emplace(std::move(name), tensors_.size());
  tensors_.push_back(std::move(t));
}

void Writer::emit(detail::Sink& sink) const {
  static_assert(detail::kMagic == 0x46554747);
  detail::put_u32(sink, detail::kMagic);
  detail::put_u32(sink, version_);
  detail::put_u64(sink, tensors_.size());
  detail::put_u64(sink, metadata_.size());
  for (const KeyValue& kv : metadata_) {
    detail::put_string(sink, kv.key);
    detail::put_value(sink, kv.value);
  }
  uint64_t offset = 0;
  for (const PendingTensor& t : tensors_) {
    detail::put_string(sink, t.name);
    detail::put_u32(sink, static_cast<uint32_t>(t.shape.size()));
    for (int64_t d : t.shape) detail::put_u64(sink, static_cast<uint64_t>(d));
    detail::put_u32(sink, static_cast<uint32_t>(t.type));
    detail::put_u64(sink, offset);
    offset += align_up(t.n_bytes, alignment_);
  }
  sink.put_zeros(align_up(sink.written(), alignment_) - sink.written());
  for (const PendingTensor& t : tensors_) {
    // Owned bytes are read from the vector itself: a copied Writer's `data` would still point
    // into the original's buffer.
    sink.put(t.owned.empty() ? t.data : t.owned.data(), t.n_bytes);
    sink.put_zeros(align_up(t.n_bytes, alignment_) - t.n_bytes);
  }
}

std::vector<uint8_t> Writer::to_bytes() const {
  std::vector<uint8_t> out;
  detail::VectorSink sink(out);
  emit(sink);
  return out;
}

void Writer::write(const std::string& path) const {
  // The reader refuses a file that claims to be one of several parts unless its name says so.
  if (auto it = metadata_index_.find(std::string(detail::kSplitCountKey));
      it != metadata_index_.end() && *metadata_[it->second].value.as_int() > 1) {
    const int64_t count = *metadata_[it->second].value.as_int();
    int64_t no = -1;
    if (auto jt = metadata_index_.find(std::string(detail::kSplitNoKey));
        jt != metadata_index_.end()) {
      no = *metadata_[jt->second].value.as_int();
    }
    const std::string suffix =
        no >= 0 && count < 100000 ? fmt::format("-{:05d}-of-{:05d}.gguf", no + 1, count) : "";
    if (suffix.empty() || path.size() < suffix.size() ||
        path.compare(path.size() - suffix.size(), suffix.size(), suffix) != 0) {
      detail::refuse(fmt::format(
          "gguf::Writer::write '{}': split.count is {} and split.no is {}, so the name must end "
          "in {} for the reader to find the parts",
          path, count, no, suffix.empty() ? "-NNNNN-of-NNNNN.gguf" : suffix));
    }
  }

  // A unique temporary name in the same folder, so rename() is atomic and the old file survives
  // any failure. Renamed onto the file a symbolic link points to (the link stays), and never
  // onto a device or a FIFO (rename_target refuses those).
  const std::string target = core::rename_target(path);
  std::string tmp;
  int fd = -1;
  // Registered before it exists, so that no moment leaves it behind if a signal stops the
  // program (core::remove_temporaries).
  std::optional<core::RegisteredTemporary> registered;
  for (int attempt = 0; attempt < 100 && fd < 0; ++attempt) {
    tmp = fmt::format("{}.tmp.{}.{}", target, ::getpid(), detail::g_temp_counter.fetch_add(1));
    registered.reset();
    registered.emplace(tmp);
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0 && errno != EEXIST) break;
  }
  if (fd < 0) {
    const int err = errno;
    registered.reset();  // not ours: an EEXIST file belongs to someone else
    throw Error(ErrorCode::kIo, fmt::format("{}: cannot create the temporary file '{}': {}", path,
                                            tmp, std::strerror(err)));
  }
  auto fail = [&](const char* what, int err) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw Error(ErrorCode::kIo,
                fmt::format("{}: {} '{}': {}", path, what, tmp, std::strerror(err)));
  };
  try {
    detail::FdSink sink(fd, tmp);
    emit(sink);
    sink.flush();
  } catch (...) {
    ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  if (::fsync(fd) != 0) fail("cannot sync", errno);
  const int closed = ::close(fd);
  fd = -1;
  if (closed != 0) fail("cannot close", errno);
  if (::rename(tmp.c_str(), target.c_str()) != 0) fail("cannot rename into place", errno);
}

Writer Writer::from_file(const File& file) {
  Writer w(file.version());
  const bool merged = file.paths().size() > 1;
  for (const KeyValue& kv : file.metadata()) {
    if (merged && (kv.key == detail::kSplitNoKey || kv.key == detail::kSplitCountKey ||
                   kv.key == detail::kSplitTensorsCountKey)) {
      continue;
    }
    w.set_metadata(kv.key, kv.value);
  }
  for (const TensorInfo& t : file.tensors()) {
    w.add_tensor(t.name, t.type, t.shape, t.data, t.n_bytes, /*borrow=*/true);
  }
  return w;
}

}  // namespace ktx::gguf
