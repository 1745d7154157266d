// The _ktx extension module: registers each area and maps ktx::Error to ktx.Error.
#include <pybind11/pybind11.h>

#include "ktx/error.h"
#include "ktx/ktx.h"
#include "module.h"

namespace py = pybind11;

PYBIND11_MODULE(_ktx, m) {
  m.doc() = "ktx: GGUF files and quantization formats (the first part of the ktx binding)";
  // Leaked on purpose: the type must outlive every translator call, even at interpreter exit.
  static py::handle error_type =
      py::exception<ktx::Error>(m, "Error", PyExc_RuntimeError).release();
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ktx::Error& e) {
      // An instance with .code (the ErrorCode number) beside the message.
      py::object instance = py::reinterpret_borrow<py::object>(error_type)(e.what());
      instance.attr("code") = static_cast<int>(e.code());
      PyErr_SetObject(error_type.ptr(), instance.ptr());
    }
  });
  m.attr("__version__") = ktx_version_string();
  ktx::python::register_gguf(m);
  ktx::python::register_quant(m);
  ktx::python::register_tokenizer(m);
}
