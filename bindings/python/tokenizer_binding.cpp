// ktx.Tokenizer and ktx.ChatTemplate: the GGUF tokenizer from Python. Text goes in as str (or
// bytes, for input that is not valid UTF-8); decode() gives str with invalid UTF-8 replaced, as
// Hugging Face does, and decode_bytes() the exact bytes.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <string>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/tokenizer.h"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {
namespace {

// str is taken as its UTF-8; bytes as they are (pybind11 converts both to std::string).
std::string text_argument(const py::object& text) { return text.cast<std::string>(); }

py::str utf8_lenient(const std::string& bytes) {
  PyObject* s =
      PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "replace");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

std::vector<ChatMessage> messages_argument(const py::iterable& messages) {
  std::vector<ChatMessage> out;
  for (const py::handle item : messages) {
    // Accepts {"role": …, "content": …} dicts (what chat APIs pass) and (role, content) pairs.
    if (py::isinstance<py::dict>(item)) {
      auto d = item.cast<py::dict>();
      out.push_back({d["role"].cast<std::string>(), d["content"].cast<std::string>()});
    } else {
      auto pair = item.cast<std::pair<std::string, std::string>>();
      out.push_back({pair.first, pair.second});
    }
  }
  return out;
}

}  // namespace

void register_tokenizer(py::module_& m) {
  py::enum_<TokenType>(m, "TokenType")
      .value("UNDEFINED", TokenType::kUndefined)
      .value("NORMAL", TokenType::kNormal)
      .value("UNKNOWN", TokenType::kUnknown)
      .value("CONTROL", TokenType::kControl)
      .value("USER_DEFINED", TokenType::kUserDefined)
      .value("UNUSED", TokenType::kUnused)
      .value("BYTE", TokenType::kByte);

  py::class_<ChatTemplate>(m, "ChatTemplate",
                           "A chat template recognised from its Jinja text and rendered by ktx.")
      .def_static("detect", &ChatTemplate::detect, py::arg("jinja"))
      .def_property_readonly("family", &ChatTemplate::family)
      .def(
          "render",
          [](const ChatTemplate& t, const py::iterable& messages, bool add_generation_prompt,
             const std::string& bos_token, const std::string& eos_token) {
            std::vector<ChatMessage> list = messages_argument(messages);
            return t.render(list, add_generation_prompt, bos_token, eos_token);
          },
          py::arg("messages"), py::arg("add_generation_prompt") = false, py::arg("bos_token") = "",
          py::arg("eos_token") = "");

  py::class_<Tokenizer>(m, "Tokenizer", "A tokenizer built from a GGUF file's tokenizer.* keys.")
      .def_static(
          "from_gguf",
          [](const std::string& path) { return Tokenizer::from_gguf(gguf::File::open(path)); },
          py::arg("path"))
      .def(
          "encode",
          [](const Tokenizer& t, const py::object& text, bool add_special, bool parse_special) {
            std::string s = text_argument(text);
            py::gil_scoped_release release;
            return t.encode(s, add_special, parse_special);
          },
          py::arg("text"), py::arg("add_special") = false, py::arg("parse_special") = false)
      .def(
          "decode",
          [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
            return utf8_lenient(t.decode(ids, render_special));
          },
          py::arg("ids"), py::arg("render_special") = false)
      .def(
          "decode_bytes",
          [](const Tokenizer& t, const std::vector<int32_t>& ids, bool render_special) {
            return py::bytes(t.decode(ids, render_special));
          },
          py::arg("ids"), py::arg("render_special") = false)
      .def(
          "token_piece",
          [](const Tokenizer& t, int32_t id, bool render_special) {
            return py::bytes(t.token_piece(id, render_special));
          },
          py::arg("id"), py::arg("render_special") = true)
      .def(
          "token_text",
          [](const Tokenizer& t, int32_t id) { return utf8_lenient(t.token_text(id)); },
          py::arg("id"))
      .def("token_type", &Tokenizer::token_type, py::arg("id"))
      .def("find_token", &Tokenizer::find_token, py::arg("text"))
      .def("is_eog", &Tokenizer::is_eog, py::arg("id"))
      .def_property_readonly("n_vocab", &Tokenizer::n_vocab)
      .def_property_readonly("model",
                             [](const Tokenizer& t) {
                               return t.model() == Tokenizer::Model::kBytePairEncoding ? "gpt2"
                                                                                       : "llama";
                             })
      .def_property_readonly("pre_tokenizer", &Tokenizer::pre_tokenizer)
      .def_property_readonly("bos", &Tokenizer::bos)
      .def_property_readonly("eos", &Tokenizer::eos)
      .def_property_readonly("add_bos", &Tokenizer::add_bos)
      .def_property_readonly("add_eos", &Tokenizer::add_eos)
      .def_property_readonly("chat_template", &Tokenizer::chat_template)
      .def(
          "apply_chat_template",
          [](const Tokenizer& t, const py::iterable& messages, bool add_generation_prompt) {
            std::vector<ChatMessage> list = messages_argument(messages);
            return t.apply_chat_template(list, add_generation_prompt);
          },
          py::arg("messages"), py::arg("add_generation_prompt") = false);
}

}  // namespace ktx::python
