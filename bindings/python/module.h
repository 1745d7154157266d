// Pieces of the _ktx Python module, one registration function per area.
#pragma once

#include <pybind11/pybind11.h>

namespace ktx::python {

void register_gguf(pybind11::module_& m);
void register_quant(pybind11::module_& m);
void register_tokenizer(pybind11::module_& m);

}  // namespace ktx::python
