// ktx.Model, ktx.ModelTokenizer and ktx.backends(): loading (progress, Ctrl-C), metadata, the
// plan and the tokenizer, all through the C ABI via ktx.hpp.
#include <Python.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "abi_objects.h"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {

SessionUse::SessionUse(SessionObject& s) : s_(s) {
  if (s.busy.exchange(true)) {
    throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                        "ktx.Session: already in use by another thread (a session serves one "
                        "thread at a time; give each thread its own session)");
  }
}

void check(ktx_status* raw) {
  if (raw == nullptr) return;
  const ktx_status_code code = ktx_status_get_code(raw);
  std::string message = ktx_status_get_message(raw);
  ktx_status_release(raw);
  throw ktx::AbiError(code, message);
}

py::str utf8_lenient(std::string_view bytes) {
  PyObject* s =
      PyUnicode_DecodeUTF8(bytes.data(), static_cast<Py_ssize_t>(bytes.size()), "replace");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

std::string path_argument(const py::handle& path) {
  std::string out = py::module_::import("os").attr("fspath")(path).cast<std::string>();
  // The C ABI takes NUL-terminated paths: "a\0b" would name the file "a" (open() refuses it too).
  if (out.find('\0') != std::string::npos) throw py::value_error("embedded null byte in path");
  return out;
}

std::vector<ktx::ChatTurn> chat_turns(const py::handle& messages) {
  std::vector<ktx::ChatTurn> out;
  for (const py::handle item : py::reinterpret_borrow<py::iterable>(messages)) {
    if (py::isinstance<py::dict>(item)) {
      auto d = py::reinterpret_borrow<py::dict>(item);
      if (!d.contains("role") || !d.contains("content")) {
        throw py::value_error("a chat message needs 'role' and 'content' keys");
      }
      out.push_back({d["role"].cast<std::string>(), d["content"].cast<std::string>()});
    } else {
      auto pair = item.cast<std::pair<std::string, std::string>>();
      out.push_back({pair.first, pair.second});
    }
  }
  return out;
}

namespace {

// One path or an iterable of them (a lone str is one path, not a sequence of characters).
std::vector<std::string> path_list(const py::handle& paths) {
  if (py::isinstance<py::str>(paths) || py::isinstance<py::bytes>(paths) ||
      py::hasattr(paths, "__fspath__")) {
    return {path_argument(paths)};
  }
  std::vector<std::string> out;
  for (const py::handle p : py::reinterpret_borrow<py::iterable>(paths)) {
    out.push_back(path_argument(p));
  }
  return out;
}

// --- loading ------------------------------------------------------------------------------------

// Calls `progress(fraction)` under the GIL and turns a pending Ctrl-C into KeyboardInterrupt.
// The load runs without the GIL, so Python's SIGINT handler only runs when this asks for it;
// the exception then stops the C call through ktx.hpp, which cancels the load (nothing stays
// loaded) and rethrows it.
bool report_progress(const py::object& progress, float fraction) {
  py::gil_scoped_acquire gil;
  if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  if (progress.is_none()) return true;
  // Only False (or numpy's False) cancels (docs/PYTHON.md): a bar's update returns None, a
  // counter's 0.
  const py::object answer = progress(fraction);
  if (answer.ptr() == Py_False) return false;
  const std::string type = Py_TYPE(answer.ptr())->tp_name;
  if (type == "numpy.bool" || type == "numpy.bool_") {
    const int truth = PyObject_IsTrue(answer.ptr());
    if (truth < 0) throw py::error_already_set();
    return truth != 0;
  }
  return true;
}

void close_bar(const py::object& bar) {
  if (!bar.is_none() && py::hasattr(bar, "close")) bar.attr("close")();
}

std::shared_ptr<ModelObject> load_model(const py::object& path_arg, const py::object& rules,
                                        const std::optional<int32_t> threads,
                                        const py::object& backend_paths, bool prefault,
                                        const py::object& progress) {
  const std::string path = path_argument(path_arg);
  ktx::ModelOptions options;
  if (threads) options.threads(*threads);
  if (!rules.is_none()) options.rules_path(path_argument(rules));
  for (const std::string& p : path_list(backend_paths)) options.add_backend_path(p);
  options.prefault(prefault);

  py::object callback = py::none(), bar = py::none();
  if (py::isinstance<py::bool_>(progress)) {
    if (progress.cast<bool>()) {
      bar = py::module_::import("ktx._progress").attr("default_bar")(path);
      callback = bar;
    }
  } else if (!progress.is_none()) {
    if (!PyCallable_Check(progress.ptr())) {
      throw py::type_error("progress must be True, False, None or a callable(fraction)");
    }
    callback = progress;
  }
  // Installed even without a callback: it is where Ctrl-C is noticed during the load.
  options.progress([&callback](float fraction) { return report_progress(callback, fraction); });

  std::optional<ktx::Model> model;
  try {
    py::gil_scoped_release release;
    model.emplace(ktx::Model::load(path, options));
  } catch (...) {
    try {
      close_bar(bar);
    } catch (const py::error_already_set&) {  // the load's error is the one to report
    }
    throw;
  }
  close_bar(bar);
  return std::make_shared<ModelObject>(std::move(*model), path);
}

// --- metadata, plan, backends -------------------------------------------------------------------

// Scalars only: the C ABI has no array getter (ktx.GGUFFile reads arrays from the file itself).
py::dict metadata(const ModelObject& m) {
  py::dict out;
  for (const std::string& key : m.model.meta_keys()) {
    const std::optional<ktx_meta_type> type = m.model.meta_type(key);
    if (!type) continue;
    switch (*type) {
      case KTX_META_ARRAY:
        break;
      case KTX_META_STRING:
        out[py::str(key)] = utf8_lenient(m.model.meta_string(key));
        break;
      case KTX_META_FLOAT32:
      case KTX_META_FLOAT64:
        out[py::str(key)] = m.model.meta_float(key);
        break;
      case KTX_META_BOOL:
        out[py::str(key)] = m.model.meta_int(key) != 0;
        break;
      default:
        try {
          out[py::str(key)] = m.model.meta_int(key);
        } catch (const ktx::AbiError&) {
          // A UINT64 past INT64_MAX: the C ABI cannot return it exactly; leave it out rather
          // than return a rounded float.
        }
    }
  }
  return out;
}

py::list backend_list(const ktx::BackendList& list) {
  py::list out;
  for (size_t b = 0; b < list.size(); ++b) {
    const ktx_backend_info info = list.info(b);
    py::list devices;
    for (int32_t d = 0; d < info.n_devices; ++d) {
      const ktx_device_info dev = list.device(b, static_cast<size_t>(d));
      py::dict dd;
      dd["name"] = dev.name;
      dd["description"] = dev.description;
      dd["free_bytes"] = dev.free_bytes < 0 ? py::object(py::none()) : py::int_(dev.free_bytes);
      dd["total_bytes"] = dev.total_bytes < 0 ? py::object(py::none()) : py::int_(dev.total_bytes);
      devices.append(dd);
    }
    py::dict d;
    d["name"] = info.name;
    d["path"] = info.path;
    d["description"] = info.description;
    d["score"] = info.score;
    d["has_streams"] = info.has_streams != 0;
    d["devices"] = devices;
    d["operators"] = list.operators(b);
    out.append(d);
  }
  return out;
}

ktx::ModelOptions backend_options(const py::object& backend_paths) {
  ktx::ModelOptions options;
  for (const std::string& p : path_list(backend_paths)) options.add_backend_path(p);
  return options;
}

// --- the tokenizer ------------------------------------------------------------------------------

struct TokenizerObject {
  std::shared_ptr<ModelObject> model;
  const ktx::Model& m() const { return model->model; }
};

std::string text_argument(const py::handle& text) {
  if (!py::isinstance<py::str>(text) && !py::isinstance<py::bytes>(text)) {
    throw py::type_error("text must be str or bytes");
  }
  return text.cast<std::string>();  // str as UTF-8; bytes as they are
}

py::object optional_token(int32_t id) { return id < 0 ? py::object(py::none()) : py::int_(id); }

void register_tokenizer_class(py::module_& m) {
  py::class_<TokenizerObject>(m, "ModelTokenizer",
                              "A loaded model's tokenizer and chat template (Model.tokenizer).")
      .def(
          "encode",
          [](const TokenizerObject& t, const py::object& text, bool add_special,
             bool parse_special) {
            const std::string s = text_argument(text);
            const uint32_t flags = (add_special ? KTX_TOKENIZE_ADD_SPECIAL : 0u) |
                                   (parse_special ? KTX_TOKENIZE_PARSE_SPECIAL : 0u);
            py::gil_scoped_release release;
            return t.m().tokenize(s, flags);
          },
          py::arg("text"), py::kw_only(), py::arg("add_special") = true,
          py::arg("parse_special") = false,
          "Token ids of `text` (str, or bytes taken as they are). add_special: BOS/EOS as the file "
          "asks; parse_special: control tokens written in the text become their ids.")
      .def(
          "decode",
          [](const TokenizerObject& t, const std::vector<int32_t>& tokens, bool render_special) {
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.m().detokenize(tokens, render_special ? KTX_DETOKENIZE_RENDER_SPECIAL : 0);
            }
            return utf8_lenient(text);
          },
          py::arg("tokens"), py::kw_only(), py::arg("render_special") = false,
          "The text of token ids; bytes that are not UTF-8 become U+FFFD.")
      .def(
          "decode_bytes",
          [](const TokenizerObject& t, const std::vector<int32_t>& tokens, bool render_special) {
            std::string text;
            {
              py::gil_scoped_release release;
              text = t.m().detokenize(tokens, render_special ? KTX_DETOKENIZE_RENDER_SPECIAL : 0);
            }
            return py::bytes(text);
          },
          py::arg("tokens"), py::kw_only(), py::arg("render_special") = false,
          "The exact bytes of token ids' text.")
      .def(
          "token_to_piece",
          [](const TokenizerObject& t, int32_t token, bool render_special) {
            return py::bytes(
                t.m().token_to_piece(token, render_special ? KTX_DETOKENIZE_RENDER_SPECIAL : 0));
          },
          py::arg("token"), py::kw_only(), py::arg("render_special") = true,
          "The bytes one token adds to a text (possibly part of a UTF-8 character).")
      .def_property_readonly("bos",
                             [](const TokenizerObject& t) { return optional_token(t.m().bos()); })
      .def_property_readonly("eos",
                             [](const TokenizerObject& t) { return optional_token(t.m().eos()); })
      .def_property_readonly("n_vocab",
                             [](const TokenizerObject& t) { return t.model->info.n_vocab; })
      .def(
          "is_eog", [](const TokenizerObject& t, int32_t token) { return t.m().is_eog(token); },
          py::arg("token"))
      .def(
          "apply_chat_template",
          [](const TokenizerObject& t, const py::iterable& messages, bool add_generation_prompt) {
            const std::vector<ktx::ChatTurn> turns = chat_turns(messages);
            return utf8_lenient(t.m().apply_chat_template(turns, add_generation_prompt));
          },
          py::arg("messages"), py::kw_only(), py::arg("add_generation_prompt") = true,
          "Renders [{'role': …, 'content': …}, …] (or (role, content) pairs) with the model's chat "
          "template; tokenize the result with parse_special=True, add_special=False.")
      .def("__repr__", [](const TokenizerObject& t) {
        return "<ktx.ModelTokenizer of " + t.model->path + ">";
      });
}

}  // namespace

void register_model(py::module_& m) {
  register_tokenizer_class(m);

  using ModelPtr = std::shared_ptr<ModelObject>;
  py::class_<ModelObject, ModelPtr>(m, "Model", "A loaded GGUF model (through the C ABI).")
      .def(py::init(&load_model), py::arg("path"), py::kw_only(), py::arg("rules") = py::none(),
           py::arg("threads") = py::none(), py::arg("backend_paths") = py::tuple(),
           py::arg("prefault") = false, py::arg("progress") = true,
           "Loads a GGUF model (the first part of a split one). rules: a rule file; threads: the "
           "pool's size (None: every hardware thread); backend_paths: extra backend modules or "
           "folders; prefault: read every weight page now; progress: True for a bar when someone "
           "can see it, False, or a callable(fraction) that returns False to cancel. The GIL is "
           "released while loading; Ctrl-C cancels.")
      .def_property_readonly("path", [](const ModelObject& o) { return o.path; })
      .def_property_readonly("name", [](const ModelObject& o) { return o.name; })
      .def_property_readonly("arch", [](const ModelObject& o) { return o.architecture; })
      .def_property_readonly("n_layer", [](const ModelObject& o) { return o.info.n_layer; })
      .def_property_readonly("n_embd", [](const ModelObject& o) { return o.info.n_embd; })
      .def_property_readonly("n_vocab", [](const ModelObject& o) { return o.info.n_vocab; })
      .def_property_readonly("n_ctx_train", [](const ModelObject& o) { return o.info.n_ctx_train; })
      .def_property_readonly("n_head", [](const ModelObject& o) { return o.info.n_head; })
      .def_property_readonly("n_expert", [](const ModelObject& o) { return o.info.n_expert; })
      .def_property_readonly("n_expert_used",
                             [](const ModelObject& o) { return o.info.n_expert_used; })
      .def_property_readonly("n_threads", [](const ModelObject& o) { return o.info.n_threads; })
      .def_property_readonly("kv_bytes_per_token",
                             [](const ModelObject& o) { return o.info.kv_bytes_per_token; })
      .def_property_readonly("warnings", [](const ModelObject& o) { return o.model.warnings(); })
      .def_property_readonly("metadata", &metadata)
      .def_property_readonly("has_tokenizer",
                             [](const ModelObject& o) { return o.model.has_tokenizer(); })
      .def_property_readonly("tokenizer", [](const ModelPtr& o) { return TokenizerObject{o}; })
      .def(
          "plan",
          [](const ModelObject& o) {
            return py::module_::import("json").attr("loads")(o.model.plan_json());
          },
          "Where each module runs: {'placements': [{'module', 'impl', 'generate_device', "
          "'prefill_device', 'options', 'why'}, …], 'warnings': […]}.")
      .def(
          "backends", [](const ModelObject& o) { return backend_list(o.model.backends()); },
          "The backends this model uses, built-in CPU first.")
      .def("__repr__", [](const ModelObject& o) {
        return "<ktx.Model " + o.architecture + " '" + o.name + "' from " + o.path + ">";
      });

  m.def(
      "backends",
      [](const py::object& backend_paths) {
        const ktx::ModelOptions options = backend_options(backend_paths);
        return backend_list(ktx::BackendList::load(&options));
      },
      py::arg("backend_paths") = py::tuple(),
      "The backends ktx would load: the CPU, modules in backend_paths, the default folders.");
  m.def(
      "refused_backends",
      [](const py::object& backend_paths) {
        const ktx::ModelOptions options = backend_options(backend_paths);
        return ktx::BackendList::load(&options).refused();
      },
      py::arg("backend_paths") = py::tuple(), "Module files considered and left out, and why.");
  m.def(
      "abi_version",
      [] {
        const uint32_t v = ktx::abi_version();
        return py::make_tuple(v >> 16, v & 0xffffu);
      },
      "(major, minor) of the loaded libktx's C ABI.");
}

}  // namespace ktx::python
