// The _ktx extension module: registers each area. Errors: errors_binding.cpp.
#include "module.h"

#include <pybind11/pybind11.h>

#include "ktx/ktx.h"

namespace py = pybind11;

PYBIND11_MODULE(_ktx, m) {
  m.doc() =
      "ktx: models, sessions and generation through the C ABI; GGUF files, quantization formats "
      "and tokenizers over the C++ core";
  ktx::python::register_errors(m);
  m.attr("__version__") = ktx_version_string();
  ktx::python::register_gguf(m);
  ktx::python::register_quant(m);
  ktx::python::register_tokenizer(m);
  ktx::python::register_model(m);
  ktx::python::register_session(m);
}
