// Pieces of the _ktx Python module, one registration function per area.
#pragma once

#include <pybind11/pybind11.h>

namespace ktx::python {

void register_errors(pybind11::module_& m);  // first: the others raise these
// Over the C++ core: GGUF files, quantization formats, the standalone tokenizer.
void register_gguf(pybind11::module_& m);
void register_quant(pybind11::module_& m);
void register_tokenizer(pybind11::module_& m);
// Over the C ABI (ktx.hpp): models, tokenizers of loaded models, sessions, generation.
void register_model(pybind11::module_& m);
void register_session(pybind11::module_& m);  // after register_model: adds Model.session

}  // namespace ktx::python
