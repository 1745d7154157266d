// ktx.GGUFFile (read) and ktx.write_gguf (write): GGUF files from Python. Tensor bytes come back
// as numpy views that keep the memory mapping alive; tensor() dequantizes to float32.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/ktx.hpp"
#include "ktx/quant.h"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {
namespace {

using gguf::Value;
using gguf::ValueType;

py::object element_to_python(const Value& v, ValueType type, uint64_t i) {
  switch (type) {
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return py::float_(*v.float_at(i));
    case ValueType::BOOL:
      return py::bool_(*v.bool_at(i));
    case ValueType::STRING:
      return py::str((*v.strings())[i]);
    case ValueType::UINT64: {
      // Values above INT64_MAX do not fit int_at(): read the raw little-endian bytes.
      uint64_t u = 0;
      std::memcpy(&u, v.raw_bytes().data() + i * 8, 8);
      return py::int_(u);
    }
    default:
      return py::int_(*v.int_at(i));
  }
}

py::object value_to_python(const Value& v) {
  if (v.is_array()) {
    py::list items;
    for (uint64_t i = 0; i < v.array_size(); ++i) items.append(element_to_python(v, v.array_type(), i));
    return items;
  }
  switch (v.type()) {
    case ValueType::FLOAT32:
    case ValueType::FLOAT64:
      return py::float_(*v.as_float());
    case ValueType::BOOL:
      return py::bool_(*v.as_bool());
    case ValueType::STRING:
      return py::str(*v.as_string());
    case ValueType::UINT64:
      return py::int_(*v.as_uint());
    default:
      return py::int_(*v.as_int());
  }
}

ValueType parse_value_type(const std::string& name) {
  for (uint32_t id = 0; id <= static_cast<uint32_t>(ValueType::FLOAT64); ++id) {
    if (gguf::value_type_name(static_cast<ValueType>(id)) == name) return static_cast<ValueType>(id);
  }
  throw Error(ErrorCode::kInvalidArgument, fmt::format("unknown GGUF value type '{}'", name));
}

// Little-endian bytes of one scalar of `type` taken from a Python number.
void append_scalar(std::vector<uint8_t>& out, ValueType type, const py::handle& item) {
  auto put = [&](auto v) {
    const auto* p = reinterpret_cast<const uint8_t*>(&v);
    out.insert(out.end(), p, p + sizeof v);
  };
  switch (type) {
    case ValueType::UINT8: put(item.cast<uint8_t>()); break;
    case ValueType::INT8: put(item.cast<int8_t>()); break;
    case ValueType::UINT16: put(item.cast<uint16_t>()); break;
    case ValueType::INT16: put(item.cast<int16_t>()); break;
    case ValueType::UINT32: put(item.cast<uint32_t>()); break;
    case ValueType::INT32: put(item.cast<int32_t>()); break;
    case ValueType::FLOAT32: put(item.cast<float>()); break;
    case ValueType::BOOL: put(static_cast<uint8_t>(item.cast<bool>())); break;
    case ValueType::UINT64: put(item.cast<uint64_t>()); break;
    case ValueType::INT64: put(item.cast<int64_t>()); break;
    case ValueType::FLOAT64: put(item.cast<double>()); break;
    default:
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{} is not a numeric GGUF type", gguf::value_type_name(type)));
  }
}

// (type_name, value): "UINT32", 7 — or "ARRAY", ("INT32", [1, 2]) — or "ARRAY[INT32]", [1, 2].
Value value_from_python(const std::string& key, const py::tuple& spec) {
  if (spec.size() != 2) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("metadata '{}': expected (type_name, value)", key));
  }
  std::string type_name_ = spec[0].cast<std::string>();
  py::object value = spec[1];
  std::optional<ValueType> element_type;
  if (type_name_ == "ARRAY") {
    auto inner = value.cast<py::tuple>();
    if (inner.size() != 2) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("metadata '{}': an ARRAY value is (element_type, list)", key));
    }
    element_type = parse_value_type(inner[0].cast<std::string>());
    value = inner[1];
  } else if (type_name_.rfind("ARRAY[", 0) == 0 && type_name_.back() == ']') {
    element_type = parse_value_type(type_name_.substr(6, type_name_.size() - 7));
  }
  if (element_type) {
    if (*element_type == ValueType::STRING) {
      return Value::string_array(value.cast<std::vector<std::string>>());
    }
    std::vector<uint8_t> bytes;
    uint64_t count = 0;
    for (const py::handle item : value) {
      append_scalar(bytes, *element_type, item);
      ++count;
    }
    return Value::array(*element_type, std::move(bytes), count);
  }
  const ValueType type = parse_value_type(type_name_);
  switch (type) {
    case ValueType::STRING: return Value::string(value.cast<std::string>());
    case ValueType::UINT8: return Value::uint8(value.cast<uint8_t>());
    case ValueType::INT8: return Value::int8(value.cast<int8_t>());
    case ValueType::UINT16: return Value::uint16(value.cast<uint16_t>());
    case ValueType::INT16: return Value::int16(value.cast<int16_t>());
    case ValueType::UINT32: return Value::uint32(value.cast<uint32_t>());
    case ValueType::INT32: return Value::int32(value.cast<int32_t>());
    case ValueType::FLOAT32: return Value::float32(value.cast<float>());
    case ValueType::BOOL: return Value::boolean(value.cast<bool>());
    case ValueType::UINT64: return Value::uint64(value.cast<uint64_t>());
    case ValueType::INT64: return Value::int64(value.cast<int64_t>());
    case ValueType::FLOAT64: return Value::float64(value.cast<double>());
    default:
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("metadata '{}': use \"ARRAY[TYPE]\" for arrays", key));
  }
}

class PyGgufFile {
 public:
  explicit PyGgufFile(const std::string& path)
      : file_(std::make_shared<gguf::File>(gguf::File::open(path))) {}

  py::dict metadata() const {
    py::dict d;
    for (const gguf::KeyValue& kv : file_->metadata()) d[py::str(kv.key)] = value_to_python(kv.value);
    return d;
  }

  py::dict metadata_types() const {
    py::dict d;
    for (const gguf::KeyValue& kv : file_->metadata()) {
      d[py::str(kv.key)] =
          kv.value.is_array()
              ? fmt::format("ARRAY[{}]", gguf::value_type_name(kv.value.array_type()))
              : std::string(gguf::value_type_name(kv.value.type()));
    }
    return d;
  }

  std::vector<std::string> tensor_names() const {
    std::vector<std::string> names;
    for (const gguf::TensorInfo& t : file_->tensors()) names.push_back(t.name);
    return names;
  }

  // The tensor called `name`; NotFoundError (a LookupError) when the file has none: the file
  // is fine, the name is not.
  const gguf::TensorInfo& named(const std::string& name) const {
    const gguf::TensorInfo* t = file_->find_tensor(name);
    if (t == nullptr) {
      throw ktx::AbiError(KTX_STATUS_NOT_FOUND,
                          fmt::format("{}: no tensor named '{}'", file_->paths().front(), name));
    }
    return *t;
  }

  py::dict tensor_info(const std::string& name) const {
    const gguf::TensorInfo& t = named(name);
    py::dict d;
    d["name"] = t.name;
    d["type"] = std::string(type_name(t.type));
    d["shape"] = t.shape;
    d["offset"] = t.offset;
    d["n_elements"] = t.n_elements;
    d["n_bytes"] = t.n_bytes;
    d["split"] = t.split;
    return d;
  }

  // A read-only uint8 view of the tensor's bytes; `self` keeps the mapping alive.
  py::array raw(const std::string& name, py::object self) const {
    const gguf::TensorInfo& t = named(name);
    py::array view(py::dtype::of<uint8_t>(), {static_cast<py::ssize_t>(t.n_bytes)}, {1},
                   t.data, self);
    py::detail::array_proxy(view.ptr())->flags &= ~py::detail::npy_api::NPY_ARRAY_WRITEABLE_;
    return view;
  }

  // The tensor as float32, shaped in numpy order (GGUF's shape reversed).
  py::array_t<float> tensor(const std::string& name) const {
    const gguf::TensorInfo& t = named(name);
    if (!quant::can_dequantize(t.type)) {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("{}: tensor '{}' is {}, which ktx cannot dequantize",
                              file_->paths()[t.split], t.name, type_name(t.type)));
    }
    std::vector<py::ssize_t> shape(t.shape.rbegin(), t.shape.rend());
    py::array_t<float> out(shape);
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release release;
      const size_t row_bytes = row_size(t.type, t.shape[0]);
      for (int64_t r = 0; r < t.rows(); ++r) {
        quant::dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes,
                              dst + r * t.shape[0], t.shape[0]);
      }
    }
    return out;
  }

  const gguf::File& file() const { return *file_; }

 private:
  std::shared_ptr<gguf::File> file_;
};

void write_gguf(const std::string& path, const py::dict& metadata, const py::list& tensors,
                uint32_t alignment, uint32_t version) {
  gguf::Writer writer(version);
  writer.set_alignment(alignment);
  for (const auto& [k, v] : metadata) {
    const std::string key = k.cast<std::string>();
    writer.set_metadata(key, value_from_python(key, v.cast<py::tuple>()));
  }
  for (const py::handle item : tensors) {
    auto t = item.cast<py::tuple>();
    if (t.size() != 4) {
      throw Error(ErrorCode::kInvalidArgument,
                  "each tensor is (name, type_name, shape_in_gguf_order, uint8 bytes)");
    }
    const auto name = t[0].cast<std::string>();
    auto type = type_from_name(t[1].cast<std::string>());
    if (!type) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("tensor '{}': unknown type '{}'", name, t[1].cast<std::string>()));
    }
    auto shape = t[2].cast<std::vector<int64_t>>();
    auto bytes = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(t[3]);
    if (!bytes) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("tensor '{}': data must be convertible to a uint8 array", name));
    }
    writer.add_tensor(name, *type, std::move(shape), bytes.data(),
                      static_cast<uint64_t>(bytes.nbytes()));
  }
  py::gil_scoped_release release;
  writer.write(path);
}

}  // namespace

void register_gguf(py::module_& m) {
  py::class_<PyGgufFile>(m, "GGUFFile", "A GGUF file (or split model), memory-mapped, read-only.")
      .def(py::init<const std::string&>(), py::arg("path"))
      .def_property_readonly("metadata", &PyGgufFile::metadata, "dict: key -> Python value")
      .def_property_readonly("metadata_types", &PyGgufFile::metadata_types,
                             "dict: key -> GGUF type name ('UINT32', 'ARRAY[STRING]' …)")
      .def_property_readonly("version", [](const PyGgufFile& f) { return f.file().version(); })
      .def_property_readonly("alignment", [](const PyGgufFile& f) { return f.file().alignment(); })
      .def_property_readonly("paths", [](const PyGgufFile& f) { return f.file().paths(); })
      .def("tensor_names", &PyGgufFile::tensor_names)
      .def("tensor_info", &PyGgufFile::tensor_info, py::arg("name"))
      .def(
          "raw",
          [](py::object self, const std::string& name) {
            return self.cast<const PyGgufFile&>().raw(name, self);
          },
          py::arg("name"), "The tensor's stored bytes as a read-only uint8 array (no copy).")
      .def("tensor", &PyGgufFile::tensor, py::arg("name"),
           "The tensor dequantized to float32, in numpy order (GGUF shape reversed).");
  m.def("write_gguf", &write_gguf, py::arg("path"), py::arg("metadata"), py::arg("tensors"),
        py::arg("alignment") = 32, py::arg("version") = 3,
        "Write a GGUF file. metadata: {key: (type_name, value)}, arrays as ('ARRAY[INT32]', "
        "[...]); tensors: [(name, type_name, shape_gguf_order, uint8 bytes)].");
}

}  // namespace ktx::python
