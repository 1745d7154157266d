// GGUF files: a strict, memory-mapped reader (versions 2 and 3, split models opened as one) and a
// writer that produces what the reader reads, byte for byte. Files are untrusted input: every
// length, count, offset and type is checked before it is used, and a refusal names the file, the
// byte offset, the field and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ktx/tensor_type.h"

namespace ktx::gguf {

namespace detail {
class Sink;  // where Writer puts its bytes (lib/gguf/sink.h)
}  // namespace detail

// Metadata value types, with the ids GGUF stores.
enum class ValueType : uint32_t {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
};

std::string_view value_type_name(ValueType type);  // "UINT32", "STRING" …
bool is_integer_type(ValueType type);              // UINT8 … INT64

// One metadata value. It keeps the exact stored type (a UINT16 stays a UINT16) so that a file
// written back is identical. Arrays are flat: GGUF allows arrays of arrays, ktx refuses them.
class Value {
 public:
  static Value uint8(uint8_t v);
  static Value int8(int8_t v);
  static Value uint16(uint16_t v);
  static Value int16(int16_t v);
  static Value uint32(uint32_t v);
  static Value int32(int32_t v);
  static Value float32(float v);
  static Value boolean(bool v);
  static Value string(std::string v);
  static Value uint64(uint64_t v);
  static Value int64(int64_t v);
  static Value float64(double v);
  // An array of `count` scalars of `element_type` (any type but STRING and ARRAY), given as their
  // little-endian bytes (count × element size); BOOL elements must be 0 or 1. Throws
  // ktx::Error(kInvalidArgument) otherwise.
  static Value array(ValueType element_type, std::vector<uint8_t> bytes, uint64_t count);
  static Value string_array(std::vector<std::string> items);
  static Value int32_array(const std::vector<int32_t>& items);
  static Value uint64_array(const std::vector<uint64_t>& items);
  static Value float32_array(const std::vector<float>& items);

  ValueType type() const { return type_; }
  bool is_array() const { return type_ == ValueType::ARRAY; }
  ValueType array_type() const { return array_type_; }  // meaningful when is_array()
  uint64_t array_size() const { return count_; }        // 1 for scalars

  // Scalar access. Integers of any width convert when the value fits; floats from either float
  // type; nullopt when the stored type does not convert.
  std::optional<int64_t> as_int() const;
  std::optional<uint64_t> as_uint() const;
  std::optional<double> as_float() const;
  std::optional<bool> as_bool() const;
  const std::string* as_string() const;  // nullptr unless STRING

  // Array access, element by element, with the same conversions as the scalar getters.
  std::optional<int64_t> int_at(uint64_t i) const;
  std::optional<uint64_t> uint_at(uint64_t i) const;  // as as_uint: UINT64 past INT64_MAX too
  std::optional<double> float_at(uint64_t i) const;
  std::optional<bool> bool_at(uint64_t i) const;    // arrays of BOOL only
  const std::vector<std::string>* strings() const;  // nullptr unless an array of STRING
  const std::vector<uint8_t>& raw_bytes() const { return bytes_; }  // numeric arrays / scalars

  // A short human-readable rendering ("4096", "\"deepseek2\"", "[STRING × 102400]").
  std::string to_display_string(size_t max_items = 8) const;

  bool operator==(const Value& other) const;

 private:
  // A default-constructed Value is UINT8 0, so that every Value can be written.
  ValueType type_ = ValueType::UINT8;
  ValueType array_type_ = ValueType::UINT8;
  uint64_t count_ = 1;
  std::vector<uint8_t> bytes_ = std::vector<uint8_t>(1, 0);  // scalars and numeric arrays, LE
  std::vector<std::string> strings_;  // a STRING scalar (one item) or an array of STRING
};

struct KeyValue {
  std::string key;
  Value value;
};

// One tensor of the directory, with its bytes inside the memory mapping.
struct TensorInfo {
  std::string name;
  TensorType type;
  std::vector<int64_t> shape;  // GGUF order: shape[0] is the contiguous (row) dimension
  uint64_t offset = 0;         // as stored: relative to its file's data section
  uint64_t n_elements = 0;
  uint64_t n_bytes = 0;
  uint32_t split = 0;  // index of the file (of a split model) that holds it
  const uint8_t* data = nullptr;

  int64_t rows() const;  // product of shape[1..]
};

// An opened GGUF file or split model. Immutable and safe to share between threads once opened.
class File {
 public:
  // Opens `path`. A name like `model-00001-of-00003.gguf` (any of the parts) opens all three
  // parts as one model (metadata from the first part, tensors from all). Throws ktx::Error:
  // kIo when a file cannot be opened or mapped, kInvalidFile for any defect, the message naming
  // the file, the byte offset, the field and what was expected.
  //
  // What ktx accepts where the format leaves room (see lib/gguf/rules.h):
  //  - dimensions may be 0 (an empty tensor), as llama.cpp's gguf.cpp allows; negative ones are
  //    refused; a tensor has 1 to 4 dimensions;
  //  - keys and tensor names must be non-empty, valid UTF-8 and free of NUL bytes; string
  //    values are kept as stored bytes, unchecked;
  //  - a BOOL byte must be 0 or 1, as the GGUF spec says;
  //  - tensor data may be in any order but must be aligned, inside the file, and must not
  //    overlap; padding bytes and bytes after the last tensor are not checked.
  static File open(const std::string& path);

  File(File&&) noexcept;
  File& operator=(File&&) noexcept;
  ~File();

  uint32_t version() const;
  uint32_t alignment() const;                      // general.alignment, default 32
  const std::vector<std::string>& paths() const;   // one per split part, in order
  uint64_t data_offset(uint32_t split = 0) const;  // absolute start of that part's data section
  uint64_t file_size(uint32_t split = 0) const;

  const std::vector<KeyValue>& metadata() const;  // first part's, in file order
  const Value* find(std::string_view key) const;  // nullptr when absent

  // Typed getters for required keys: throw ktx::Error(kInvalidFile) naming the file, the key and
  // the type expected when the key is missing or of another type (get_int: any integer type
  // whose value fits int64; get_float: FLOAT32 or FLOAT64).
  int64_t get_int(std::string_view key) const;
  double get_float(std::string_view key) const;
  bool get_bool(std::string_view key) const;
  const std::string& get_string(std::string_view key) const;

  const std::vector<TensorInfo>& tensors() const;
  const TensorInfo* find_tensor(std::string_view name) const;  // nullptr when absent
  const TensorInfo& tensor(std::string_view name) const;       // throws, naming file and tensor

 private:
  struct Impl;
  explicit File(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Builds a GGUF file in memory order and writes it. Tensor data is laid out in the order the
// tensors were added, each aligned; padding bytes are zero — the layout llama.cpp and the gguf
// package write, so a file read and written back comes out identical.
class Writer {
 public:
  explicit Writer(uint32_t version = 3);

  // Sets the data alignment (a power of two, else kInvalidArgument). The layout and the
  // general.alignment key never disagree, so the reader always finds what was written: when the
  // key is present its value is replaced; when it is absent it is added unless `alignment` is the
  // default 32 (which, like gguf-py and llama.cpp, writes no key).
  void set_alignment(uint32_t alignment);

  // Adds or replaces a key (replacing keeps the first position). Refused with kInvalidArgument
  // when the reader would refuse it: an empty key, one that is not valid UTF-8 or holds a NUL,
  // general.alignment that is not a UINT32 power of two (a valid one also sets the alignment),
  // split.no / split.count / split.tensors.count that are not integers.
  void set_metadata(std::string key, Value value);

  // Adds a tensor. `data` must hold row_size(type, shape[0]) × rows bytes; it is copied unless
  // `borrow` is true, in which case it must stay valid until write() returns. Refused with
  // kInvalidArgument when the reader would refuse the tensor: a name already added, empty, not
  // valid UTF-8 or holding a NUL; a type id not in ktx's table; 0 or more than 4 dimensions, a
  // negative dimension, an element count past int64, a row not a multiple of the block size; or
  // `n_bytes` other than the size the shape needs.
  void add_tensor(std::string name, TensorType type, std::vector<int64_t> shape, const void* data,
                  uint64_t n_bytes, bool borrow = false);

  // Writes to `path` through a temporary file in the same folder that is renamed at the end, so
  // an existing file is never left half-written. Throws ktx::Error: kIo when the system refuses,
  // kInvalidArgument when split.count > 1 and `path` is not named as that part of a split model.
  void write(const std::string& path) const;

  // The exact bytes write() would produce (for tests and small files).
  std::vector<uint8_t> to_bytes() const;

  // A writer holding everything `file` holds (metadata in order, tensors in directory order,
  // data borrowed from its mapping, so `file` must outlive it): writing it reproduces a
  // canonically laid-out file exactly. A split model comes back merged into one file: its
  // split.* keys are left out.
  static Writer from_file(const File& file);

 private:
  void emit(detail::Sink& sink) const;

  struct PendingTensor {
    std::string name;
    TensorType type;
    std::vector<int64_t> shape;
    std::vector<uint8_t> owned;
    const uint8_t* data = nullptr;
    uint64_t n_bytes = 0;
  };
  uint32_t version_;
  uint32_t alignment_ = 32;
  std::vector<KeyValue> metadata_;
  std::vector<PendingTensor> tensors_;
  std::unordered_map<std::string, size_t> metadata_index_;  // key -> position in metadata_
  std::unordered_map<std::string, size_t> tensor_index_;    // name -> position in tensors_
};

// Name of split part `index` (0-based) of `count` for a model whose parts start with `prefix`:
// "prefix-00001-of-00003.gguf", as llama.cpp's gguf-split names them.
std::string split_path(std::string_view prefix, uint32_t index, uint32_t count);

}  // namespace ktx::gguf
