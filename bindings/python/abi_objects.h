// The objects behind ktx.Model and ktx.Session, shared by the binding files that go through the
// C ABI. These files include ktx.hpp and nothing of lib/, so every Python call into a model is a
// call through libktx.so's exported ktx_* functions.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ktx/ktx.hpp"

namespace ktx::python {

// A loaded model. Tokenizer and session objects hold a shared_ptr to it, so Python can drop the
// Model while they live; the C handle itself would allow that too, but the Python objects also
// read `info` and the path.
struct ModelObject {
  ModelObject(ktx::Model m, std::string p) : model(std::move(m)), path(std::move(p)) {
    const ktx_model_info i = model.info();
    architecture = i.architecture;
    name = i.name;
    info = i;
    info.architecture = architecture.c_str();  // the borrowed strings, replaced by our copies
    info.name = name.c_str();
  }
  ktx::Model model;
  std::string path;
  std::string architecture, name;
  ktx_model_info info{};
};

// A session. The C ABI allows one thread at a time per session; `busy` turns a second thread's
// call into a clear error instead of a data race (the GIL is released while it computes).
struct SessionObject {
  SessionObject(std::shared_ptr<ModelObject> m, int64_t n_ctx)
      : model(std::move(m)), session(model->model, n_ctx) {}
  SessionObject(std::shared_ptr<ModelObject> m, ktx::Session s)  // a fork
      : model(std::move(m)), session(std::move(s)) {}
  std::shared_ptr<ModelObject> model;
  ktx::Session session;
  // Bumped by every change to the session, so a generation notices that someone else evaluated,
  // reset or rewound the session between two of its steps.
  // Atomic: a Generation is made (reading it) under the GIL alone, while another thread's
  // generation step may bump it with the GIL released.
  std::atomic<uint64_t> version{0};
  std::atomic<bool> busy{false};
};

// Marks a session in use for the lifetime of the guard; throws when another thread has it.
class SessionUse {
 public:
  explicit SessionUse(SessionObject& s);
  ~SessionUse() { s_.busy.store(false); }
  SessionUse(const SessionUse&) = delete;
  SessionUse& operator=(const SessionUse&) = delete;

 private:
  SessionObject& s_;
};

// Throws a C status as ktx::AbiError (for the few C calls ktx.hpp does not wrap the way the
// binding needs, e.g. writing all logits straight into a numpy array).
void check(ktx_status* status);

// A str from UTF-8 that may be cut or invalid: bad bytes become U+FFFD, never an exception.
pybind11::str utf8_lenient(std::string_view bytes);

// A path argument: str, bytes or os.PathLike.
std::string path_argument(const pybind11::handle& path);

// Chat turns from [{"role": …, "content": …}, …] or [(role, content), …].
std::vector<ktx::ChatTurn> chat_turns(const pybind11::handle& messages);

}  // namespace ktx::python
