// ktx.dequantize / ktx.quantize / ktx.vec_dot: the reference block formats on numpy arrays, so
// Python tests can compare them with the gguf package byte for byte.
#include <fmt/format.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {
namespace {

using Bytes = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>;
using Floats = py::array_t<float, py::array::c_style | py::array::forcecast>;

TensorType parse_type(const std::string& name) {
  auto t = type_from_name(name);
  if (!t) throw Error(ErrorCode::kInvalidArgument, fmt::format("unknown tensor type '{}'", name));
  return *t;
}

void check_size(const char* what, size_t have, size_t want, TensorType type, int64_t n) {
  if (have != want) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: {} elements of {} take {} bytes, but {} were given", what, n,
                            type_name(type), want, have));
  }
}

py::array_t<float> dequantize(const Bytes& data, const std::string& type_name_, int64_t n) {
  const TensorType type = parse_type(type_name_);
  check_size("dequantize", static_cast<size_t>(data.size()), row_size(type, n), type, n);
  py::array_t<float> out(n);
  const uint8_t* src = data.data();
  float* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    quant::dequantize_row(type, src, dst, n);
  }
  return out;
}

py::array_t<uint8_t> quantize(const Floats& x, const std::string& type_name_) {
  const TensorType type = parse_type(type_name_);
  const int64_t n = static_cast<int64_t>(x.size());
  py::array_t<uint8_t> out(static_cast<py::ssize_t>(row_size(type, n)));
  const float* src = x.data();
  uint8_t* dst = out.mutable_data();
  {
    py::gil_scoped_release release;
    quant::quantize_row(type, src, dst, n);
  }
  return out;
}

float vec_dot(const std::string& type_name_, const Bytes& x, const Bytes& y, int64_t n) {
  const TensorType type = parse_type(type_name_);
  auto y_type = quant::vec_dot_type(type);
  if (!y_type) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{} has no reference dot product", type_name(type)));
  }
  check_size("vec_dot x", static_cast<size_t>(x.size()), row_size(type, n), type, n);
  check_size("vec_dot y", static_cast<size_t>(y.size()), row_size(*y_type, n), *y_type, n);
  return quant::vec_dot(type, n, x.data(), y.data());
}

}  // namespace

void register_quant(py::module_& m) {
  m.def("dequantize", &dequantize, py::arg("data"), py::arg("type_name"), py::arg("n"),
        "Dequantize n elements stored as type_name (bytes as a uint8 array) to float32.");
  m.def("quantize", &quantize, py::arg("x"), py::arg("type_name"),
        "Quantize a 1-D float32 array to type_name; returns the block bytes as uint8.");
  m.def("vec_dot", &vec_dot, py::arg("type_name"), py::arg("x"), py::arg("y"), py::arg("n"),
        "Reference dot product of a type_name row x with y stored as vec_dot_type(type_name).");
  m.def(
      "vec_dot_type",
      [](const std::string& name) -> py::object {
        auto t = quant::vec_dot_type(parse_type(name));
        if (!t) return py::none();
        return py::str(std::string(type_name(*t)));
      },
      py::arg("type_name"), "The activation type llama.cpp pairs with a weight type.");
  m.def(
      "type_size",
      [](const std::string& name) {
        const TypeTraits& t = traits(parse_type(name));
        return py::make_tuple(t.block_size, t.type_size);
      },
      py::arg("type_name"), "(block_size, bytes per block) of a tensor type.");
}

}  // namespace ktx::python
