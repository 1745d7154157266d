// ktx.Error and its subclasses, one per status code, and the translation of both C++ exception
// types the module meets: ktx::Error (the core, for GGUF files and formats) and ktx::AbiError
// (ktx.hpp, for everything that goes through the C ABI). Their codes are the same numbers.
#include <pybind11/pybind11.h>

#include <array>
#include <exception>
#include <string>

#include "ktx/error.h"
#include "ktx/ktx.hpp"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {
namespace {

struct ErrorClass {
  int code;
  const char* name;
  PyObject* builtin;  // a second base, so `except ValueError` etc. also catch it; or nullptr
  const char* doc;
};

// Codes without a class here (BUFFER_TOO_SMALL, which ktx.hpp resolves itself) raise ktx.Error.
const std::array<ErrorClass, 8> kClasses = {{
    {KTX_STATUS_INVALID_ARGUMENT, "InvalidArgumentError", PyExc_ValueError,
     "An argument out of range or malformed (KTX_STATUS_INVALID_ARGUMENT)."},
    {KTX_STATUS_INVALID_FILE, "InvalidFileError", nullptr,
     "A model or rule file breaks its format; the message names the file and where "
     "(KTX_STATUS_INVALID_FILE)."},
    {KTX_STATUS_IO_ERROR, "IoError", PyExc_OSError,
     "The operating system refused to open, map or read a file (KTX_STATUS_IO_ERROR)."},
    {KTX_STATUS_UNSUPPORTED, "UnsupportedError", nullptr,
     "Valid input that ktx does not implement, or a model without a tokenizer "
     "(KTX_STATUS_UNSUPPORTED)."},
    {KTX_STATUS_OUT_OF_MEMORY, "OutOfMemoryError", PyExc_MemoryError,
     "An allocation failed (KTX_STATUS_OUT_OF_MEMORY)."},
    {KTX_STATUS_INTERNAL, "InternalError", nullptr,
     "A bug in ktx: please report the message (KTX_STATUS_INTERNAL)."},
    {KTX_STATUS_CANCELLED, "CancelledError", nullptr,
     "A callback asked to stop, e.g. a progress callback that returned False "
     "(KTX_STATUS_CANCELLED)."},
    {KTX_STATUS_NOT_FOUND, "NotFoundError", PyExc_LookupError,
     "A metadata key the model does not have (KTX_STATUS_NOT_FOUND)."},
}};

// Leaked on purpose: the types must outlive every translator call, even at interpreter exit.
PyObject* g_error = nullptr;
std::array<PyObject*, 16> g_by_code{};

PyObject* new_class(py::module_& m, const std::string& name, const char* doc, PyObject* bases) {
  const std::string qualified = "ktx." + name;  // what tracebacks show
  PyObject* type = PyErr_NewExceptionWithDoc(qualified.c_str(), doc, bases, nullptr);
  if (type == nullptr) throw py::error_already_set();
  m.add_object(name.c_str(), py::handle(type));  // add_object takes its own reference
  return type;
}

void raise(int code, const char* message) {
  PyObject* type = code >= 0 && code < static_cast<int>(g_by_code.size()) && g_by_code[code]
                       ? g_by_code[code]
                       : g_error;
  py::object instance = py::reinterpret_borrow<py::object>(type)(message);
  instance.attr("code") = code;
  instance.attr("code_name") = ktx_status_code_name(static_cast<ktx_status_code>(code));
  PyErr_SetObject(type, instance.ptr());
}

}  // namespace

void register_errors(py::module_& m) {
  g_error = new_class(m, "Error",
                      "Every error ktx raises. `code` is the ktx status code (an int), "
                      "`code_name` its name ('KTX_STATUS_IO_ERROR'); the message names the file, "
                      "key, tensor, rule line or argument at fault.",
                      PyExc_RuntimeError);
  for (const ErrorClass& c : kClasses) {
    py::tuple bases = c.builtin != nullptr
                          ? py::tuple(py::make_tuple(py::handle(g_error), py::handle(c.builtin)))
                          : py::tuple(py::make_tuple(py::handle(g_error)));
    g_by_code[static_cast<size_t>(c.code)] = new_class(m, c.name, c.doc, bases.ptr());
  }
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const ktx::Error& e) {
      raise(static_cast<int>(e.code()), e.what());
    } catch (const ktx::AbiError& e) {
      raise(static_cast<int>(e.code()), e.what());
    } catch (const py::cast_error& e) {
      // An argument of the wrong Python type (pybind11's RuntimeError otherwise).
      PyErr_SetString(PyExc_TypeError, e.what());
    }
  });
}

}  // namespace ktx::python
