// ktx.Session, ktx.Generation and ktx.Completion: evaluation, logits as numpy arrays, and text
// generation, through the C ABI via ktx.hpp.
//
// Session.generate is an iterator that runs the generation loop one step per item, with the
// same order of operations as ktx_generate (lib/runtime/generate.cpp): evaluate the prompt, then
// sample, accept, stream, and evaluate the sampled token only if another one is wanted. So it
// needs no thread and no callback into Python, every compute call runs without the GIL, and
// Session.complete (one ktx_generate call) gives the same tokens and text.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "abi_objects.h"
#include "module.h"

namespace py = pybind11;

namespace ktx::python {
namespace {

using Clock = std::chrono::steady_clock;
using SessionPtr = std::shared_ptr<SessionObject>;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

py::array_t<float> copy_logits(const float* data, size_t n) {
  py::array_t<float> out(static_cast<py::ssize_t>(n));
  std::memcpy(out.mutable_data(), data, n * sizeof(float));
  return out;
}

// A list, tuple, numpy array or any iterable of ints (numpy integers included): TypeError for
// anything else, naming the item; an int past int32 is an id outside every vocabulary.
std::vector<int32_t> token_list(const py::handle& tokens) {
  auto type_name = [](const py::handle& h) { return std::string(Py_TYPE(h.ptr())->tp_name); };
  if (py::isinstance<py::str>(tokens) || py::isinstance<py::bytes>(tokens)) {
    throw py::type_error("tokens must be a sequence of int token ids, not text");
  }
  if (!py::isinstance<py::iterable>(tokens)) {
    throw py::type_error("tokens must be a sequence of int token ids, not " + type_name(tokens));
  }
  std::vector<int32_t> out;
  for (const py::handle item : tokens) {
    const std::string where = "token #" + std::to_string(out.size());
    auto not_an_int = [&] {
      return py::type_error(where + " is " + std::string(py::repr(item)) + " (" + type_name(item) +
                            "), not an int");
    };
    if (PyBool_Check(item.ptr()) || PyIndex_Check(item.ptr()) == 0) throw not_an_int();
    // numpy arrays claim __index__ and refuse it unless they hold one integer.
    const py::int_ value = py::reinterpret_steal<py::int_>(PyNumber_Index(item.ptr()));
    if (!value) {
      if (!PyErr_ExceptionMatches(PyExc_TypeError)) throw py::error_already_set();
      PyErr_Clear();
      throw not_an_int();
    }
    int overflow = 0;
    const long long v = PyLong_AsLongLongAndOverflow(value.ptr(), &overflow);
    if (overflow != 0 || v < INT32_MIN || v > INT32_MAX) {
      throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                          where + " is " + std::string(py::str(value)) +
                              ", outside the vocabulary (token ids are 32-bit)");
    }
    out.push_back(static_cast<int32_t>(v));
  }
  return out;
}

// Length of the longest prefix of `s` that does not end inside a UTF-8 sequence: what can be
// handed out as text now (a token may end in the middle of a character).
size_t complete_utf8_prefix(std::string_view s) {
  size_t i = s.size(), back = 0;
  while (i > 0 && back < 4 && (static_cast<unsigned char>(s[i - 1]) & 0xC0) == 0x80) {
    --i;
    ++back;
  }
  if (i == 0) return back == 0 ? 0 : s.size();  // only continuation bytes: invalid anyway
  const unsigned char lead = static_cast<unsigned char>(s[i - 1]);
  size_t need = 1;
  if ((lead & 0xE0) == 0xC0)
    need = 2;
  else if ((lead & 0xF0) == 0xE0)
    need = 3;
  else if ((lead & 0xF8) == 0xF0)
    need = 4;
  return back + 1 >= need ? s.size() : i - 1;
}

// Stop strings: where the first one occurs, and how much of a text's end could still become one.
class StopStrings {
 public:
  explicit StopStrings(std::vector<std::string> stops) : stops_(std::move(stops)) {
    for (const std::string& s : stops_) {
      if (s.empty()) throw py::value_error("a stop string must not be empty");
      longest_ = std::max(longest_, s.size());
    }
  }
  bool empty() const { return stops_.empty(); }
  size_t longest() const { return longest_; }

  // The earliest position in `text` at or after `from` where a stop string starts, or npos.
  size_t find(std::string_view text, size_t from) const {
    size_t best = std::string_view::npos;
    for (const std::string& s : stops_) best = std::min(best, text.find(s, from));
    return best;
  }
  // The length of the longest end of `text` that is a proper prefix of a stop string: text that
  // must be held back, since the next token may complete the stop string.
  size_t held(std::string_view text) const {
    size_t best = 0;
    for (const std::string& s : stops_) {
      for (size_t n = std::min(text.size(), s.size() - 1); n > best; --n) {
        if (text.substr(text.size() - n) == std::string_view(s).substr(0, n)) {
          best = n;
          break;
        }
      }
    }
    return best;
  }

 private:
  std::vector<std::string> stops_;
  size_t longest_ = 0;
};

std::vector<std::string> stop_list(const py::object& stop) {
  if (stop.is_none()) return {};
  if (py::isinstance<py::str>(stop)) return {stop.cast<std::string>()};
  return stop.cast<std::vector<std::string>>();
}

// --- sampling and prompts -----------------------------------------------------------------------

struct SamplingArgs {
  float temperature = 0.8f, top_p = 0.95f, min_p = 0.05f, repeat_penalty = 1.0f;
  float presence_penalty = 0.0f, frequency_penalty = 0.0f;
  int32_t top_k = 40, penalty_last_n = 64;
  std::optional<uint64_t> seed;

  // The setters check each value and name the parameter in the error.
  ktx::SamplingOptions options() const {
    ktx::SamplingOptions o;
    o.temperature(temperature).top_k(top_k).top_p(top_p).min_p(min_p);
    o.repeat_penalty(repeat_penalty).presence_penalty(presence_penalty);
    o.frequency_penalty(frequency_penalty).penalty_last_n(penalty_last_n);
    if (seed) o.seed(*seed);
    return o;
  }
};

// The prompt as token ids: text is tokenized (a chat turn first rendered with the model's
// template), a list of messages is a conversation, a list of ints is taken as it is.
std::vector<int32_t> prompt_tokens(const SessionObject& s, const py::object& prompt, bool chat,
                                   std::optional<bool> add_special) {
  const ktx::Model& model = s.model->model;
  auto render = [&](const std::vector<ktx::ChatTurn>& turns) {
    // The template writes BOS itself, and its control tokens must become their ids.
    const std::string text = model.apply_chat_template(turns, true);
    py::gil_scoped_release release;
    return model.tokenize(text, KTX_TOKENIZE_PARSE_SPECIAL);
  };
  if (py::isinstance<py::str>(prompt) || py::isinstance<py::bytes>(prompt)) {
    const std::string text = prompt.cast<std::string>();
    if (chat) return render({{"user", text}});
    // BOS only at the start of a sequence: a prompt continuing a session gets none.
    const bool special = add_special.value_or(s.session.position() == 0);
    const uint32_t flags = KTX_TOKENIZE_PARSE_SPECIAL | (special ? KTX_TOKENIZE_ADD_SPECIAL : 0u);
    py::gil_scoped_release release;
    return model.tokenize(text, flags);
  }
  const py::sequence items = prompt.cast<py::sequence>();
  if (items.size() > 0 && !PyIndex_Check(items[0].ptr())) return render(chat_turns(items));
  if (chat) throw py::type_error("chat=True takes the user's text or a list of messages");
  return token_list(items);
}

// --- generation ---------------------------------------------------------------------------------

const char* const kStopLength = "length";
const char* const kStopEog = "eog";
const char* const kStopString = "stop";
const char* const kStopContextFull = "context_full";
const char* const kStopCancelled = "cancelled";

// Checks what ktx_generate checks before anything runs, so a bad call fails when it is made.
void check_generation(const SessionObject& s, const std::vector<int32_t>& prompt,
                      int64_t max_tokens) {
  if (max_tokens < 0) {
    throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                        "max_tokens must be >= 0, not " + std::to_string(max_tokens));
  }
  if (!s.model->model.has_tokenizer()) {
    throw ktx::AbiError(KTX_STATUS_UNSUPPORTED,
                        s.model->path +
                            ": the model has no tokenizer, so generated tokens cannot become "
                            "text; use Session.eval / Session.decode with token ids");
  }
  const int64_t n_vocab = s.model->info.n_vocab;
  for (size_t i = 0; i < prompt.size(); ++i) {
    if (prompt[i] < 0 || prompt[i] >= n_vocab) {
      throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT, "prompt token #" + std::to_string(i) +
                                                           " is " + std::to_string(prompt[i]) +
                                                           ", outside the vocabulary [0, " +
                                                           std::to_string(n_vocab) + ")");
    }
  }
  const int64_t position = s.session.position(), n_ctx = s.session.n_ctx();
  if (position + static_cast<int64_t>(prompt.size()) > n_ctx) {
    throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                        "context full: " + std::to_string(position) + " tokens in the session + " +
                            std::to_string(prompt.size()) +
                            " in the prompt exceed the context of " + std::to_string(n_ctx));
  }
  if (prompt.empty() && s.session.logits().empty()) {
    throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                        "nothing to generate from: the prompt is empty and the session holds "
                        "no logits");
  }
}

// What Generation and Completion report besides the text.
struct GenerationStats {
  std::vector<int32_t> tokens;  // generated, the end-of-generation token not included
  int64_t n_prompt = 0;
  double prefill_seconds = 0, decode_seconds = 0;
  std::optional<std::string> stop_reason;
};

class Generation {
 public:
  Generation(SessionPtr session, std::vector<int32_t> prompt, int64_t max_tokens,
             const ktx::SamplingOptions& sampling, StopStrings stops)
      : s_(std::move(session)),
        sampler_(sampling),
        prompt_(std::move(prompt)),
        max_tokens_(max_tokens),
        stops_(std::move(stops)),
        version_(s_->version) {
    stats_.n_prompt = static_cast<int64_t>(prompt_.size());
  }

  py::str next() {
    if (done_) throw py::stop_iteration();
    SessionUse use(*s_);  // before reading the version, which another thread may be changing
    if (s_->version != version_) {
      done_ = true;
      throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                          "ktx.Generation: the session was evaluated, reset or rewound by "
                          "something else since this generation's last step; start a new one");
    }
    try {
      std::string piece;
      while (!done_ && piece.empty()) piece = step();
      if (piece.empty()) throw py::stop_iteration();  // ended with nothing left to hand out
      return utf8_lenient(piece);
    } catch (...) {
      done_ = true;  // an error ends the generation; what ran stays in the session
      throw;
    }
  }

  // Stops early: the session keeps what was evaluated (the last sampled token is not).
  void close() {
    if (!done_) {
      done_ = true;
      if (!stats_.stop_reason) stats_.stop_reason = kStopCancelled;
    }
  }

  const GenerationStats& stats() const { return stats_; }
  std::string_view text() const { return std::string_view(text_).substr(0, yielded_); }
  bool done() const { return done_; }

 private:
  // One token, or the prefill on the first call. Returns the text that became ready (maybe
  // empty); sets done_ when the generation ends.
  std::string step() {
    ktx::Session& session = s_->session;
    if (!started_) {
      started_ = true;
      const Clock::time_point t0 = Clock::now();
      {
        py::gil_scoped_release release;
        for (int32_t t : prompt_) sampler_.accept(t);
        session.eval(prompt_);
      }
      bump_version();
      stats_.prefill_seconds = seconds_since(t0);
      if (session.logits().empty()) {
        throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                            "nothing to generate from: the prompt is empty and the session "
                            "holds no logits");
      }
    }
    const int64_t n = static_cast<int64_t>(stats_.tokens.size());
    auto room = [&] { return n < max_tokens_ && session.position() < session.n_ctx(); };
    const Clock::time_point t0 = Clock::now();
    int32_t token = -1;
    {
      py::gil_scoped_release release;
      // The previous token is evaluated only now that another one is wanted: a generation that
      // ends leaves its last token sampled but not evaluated, as ktx_generate does.
      if (n > 0 && room()) {
        session.decode(stats_.tokens.back());
        bump_version();
      }
      if (room()) {
        token = sampler_.sample(session.logits());
        sampler_.accept(token);
      }
    }
    if (token < 0) {
      stats_.decode_seconds += seconds_since(t0);
      return finish(n >= max_tokens_ ? kStopLength : kStopContextFull);
    }
    if (s_->model->model.is_eog(token)) {
      stats_.decode_seconds += seconds_since(t0);
      return finish(kStopEog);
    }
    stats_.tokens.push_back(token);
    // Decoding the whole continuation keeps the tokenizer's spacing rules (SentencePiece's
    // leading space) right; only the new, complete-UTF-8 end is handed out.
    text_ = s_->model->model.detokenize(stats_.tokens);
    stats_.decode_seconds += seconds_since(t0);
    const size_t ready = std::max(complete_utf8_prefix(text_), yielded_);
    if (stops_.empty()) return take(ready);
    const std::string_view pending = std::string_view(text_).substr(0, ready);
    const size_t from = yielded_ >= stops_.longest() ? yielded_ - stops_.longest() + 1 : 0;
    if (const size_t at = stops_.find(pending, from); at != std::string_view::npos) {
      text_.resize(std::max(at, yielded_));
      return finish(kStopString);
    }
    return take(ready - stops_.held(pending.substr(yielded_)));
  }

  std::string take(size_t end) {
    if (end <= yielded_) return {};  // also guards a text that shrank (it never should)
    std::string piece = text_.substr(yielded_, end - yielded_);
    yielded_ = end;
    return piece;
  }
  // Hands out what is left: held-back text and the bytes of an incomplete last character.
  std::string finish(const char* reason) {
    done_ = true;
    stats_.stop_reason = reason;
    return take(text_.size());
  }
  void bump_version() { version_ = ++s_->version; }

  SessionPtr s_;
  ktx::Sampler sampler_;
  std::vector<int32_t> prompt_;
  int64_t max_tokens_;
  StopStrings stops_;
  uint64_t version_;
  GenerationStats stats_;
  std::string text_;    // the generated text so far (cut at a stop string)
  size_t yielded_ = 0;  // bytes of text_ handed out
  bool started_ = false, done_ = false;
};

struct Completion {
  std::string text;
  GenerationStats stats;
};

// One ktx_generate call: the library's own loop, the reference the iterator is tested against.
Completion complete(SessionObject& s, const std::vector<int32_t>& prompt, int64_t max_tokens,
                    const ktx::SamplingOptions& sampling, const StopStrings& stops) {
  Completion c;
  c.stats.n_prompt = static_cast<int64_t>(prompt.size());
  bool stopped = false, interrupted = false;
  ktx::Sampler sampler(sampling);
  ktx_generate_stats g{};
  auto last_check = Clock::now();
  {
    py::gil_scoped_release release;
    g = s.session.generate(sampler, prompt, max_tokens, [&](int32_t token, std::string_view piece) {
      // Ctrl-C is seen only when Python's handler runs, which needs the GIL: ask every 50 ms,
      // as loading does (taking the GIL can wait a switch interval, 5 ms, for another thread).
      if (Clock::now() - last_check >= std::chrono::milliseconds(50)) {
        last_check = Clock::now();
        py::gil_scoped_acquire gil;
        if (PyErr_CheckSignals() != 0) {  // the KeyboardInterrupt stays pending, raised below
          interrupted = true;
          return false;
        }
      }
      if (token >= 0) c.stats.tokens.push_back(token);
      const size_t before = c.text.size();
      c.text.append(piece);
      if (stops.empty() || token < 0) return true;
      const size_t from = before >= stops.longest() ? before - stops.longest() + 1 : 0;
      const size_t at = stops.find(c.text, from);
      if (at == std::string::npos) return true;
      c.text.resize(at);
      stopped = true;
      return false;
    });
  }
  ++s.version;
  // The session keeps what was generated before the interrupt, as after one in Session.generate.
  if (interrupted) throw py::error_already_set();
  c.stats.prefill_seconds = g.prefill_seconds;
  c.stats.decode_seconds = g.decode_seconds;
  c.stats.stop_reason = stopped                               ? kStopString
                        : g.stop_reason == KTX_STOP_EOG       ? kStopEog
                        : g.stop_reason == KTX_STOP_LENGTH    ? kStopLength
                        : g.stop_reason == KTX_STOP_CANCELLED ? kStopCancelled
                                                              : kStopContextFull;
  return c;
}

// --- registration -------------------------------------------------------------------------------

// Keyword arguments shared by Session.generate and Session.complete.
template <class F>
auto with_generation_args(F&& body) {
  return
      [body](const SessionPtr& s, const py::object& prompt, int64_t max_tokens, float temperature,
             int32_t top_k, float top_p, float min_p, float repeat_penalty, float presence_penalty,
             float frequency_penalty, int32_t penalty_last_n, std::optional<uint64_t> seed,
             bool chat, std::optional<bool> add_special, const py::object& stop) {
        SamplingArgs a;
        a.temperature = temperature;
        a.top_k = top_k;
        a.top_p = top_p;
        a.min_p = min_p;
        a.repeat_penalty = repeat_penalty;
        a.presence_penalty = presence_penalty;
        a.frequency_penalty = frequency_penalty;
        a.penalty_last_n = penalty_last_n;
        a.seed = seed;
        ktx::SamplingOptions options = a.options();
        StopStrings stops(stop_list(stop));
        std::vector<int32_t> tokens;
        {
          SessionUse use(*s);
          tokens = prompt_tokens(*s, prompt, chat, add_special);
          check_generation(*s, tokens, max_tokens);
        }
        return body(s, std::move(tokens), max_tokens, options, std::move(stops));
      };
}

#define KTX_GENERATION_ARGS                                                                  \
  py::arg("prompt"), py::kw_only(),                                                          \
      py::arg("max_tokens") = 128, py::arg("temperature") = 0.8f, py::arg("top_k") = 40,     \
      py::arg("top_p") = 0.95f, py::arg("min_p") = 0.05f, py::arg("repeat_penalty") = 1.0f,  \
      py::arg("presence_penalty") = 0.0f, py::arg("frequency_penalty") = 0.0f,               \
      py::arg("penalty_last_n") = 64, py::arg("seed") = py::none(), py::arg("chat") = false, \
      py::arg("add_special") = py::none(), py::arg("stop") = py::none()

template <class T>
void add_stats(py::class_<T>& c, const GenerationStats& (*get)(const T&)) {
  c.def_property_readonly("tokens", [get](const T& o) { return get(o).tokens; })
      .def_property_readonly("n_prompt", [get](const T& o) { return get(o).n_prompt; })
      .def_property_readonly("n_generated", [get](const T& o) { return get(o).tokens.size(); })
      .def_property_readonly("prefill_seconds",
                             [get](const T& o) { return get(o).prefill_seconds; })
      .def_property_readonly("decode_seconds", [get](const T& o) { return get(o).decode_seconds; })
      .def_property_readonly("stop_reason", [get](const T& o) { return get(o).stop_reason; });
}

}  // namespace

void register_session(py::module_& m) {
  py::class_<Generation> generation(
      m, "Generation",
      "An iterator over the text a Session.generate call produces, one piece per step.");
  generation.def("__iter__", [](py::object self) { return self; })
      .def("__next__", &Generation::next)
      .def("close", &Generation::close)
      .def_property_readonly("text", [](const Generation& g) { return utf8_lenient(g.text()); })
      .def_property_readonly("done", &Generation::done);
  add_stats<Generation>(generation,
                        [](const Generation& g) -> const GenerationStats& { return g.stats(); });

  py::class_<Completion> completion(m, "Completion", "What Session.complete produced.");
  completion.def_property_readonly("text", [](const Completion& c) { return utf8_lenient(c.text); })
      .def("__str__", [](const Completion& c) { return utf8_lenient(c.text); })
      .def("__repr__", [](const Completion& c) {
        return "<ktx.Completion " + std::to_string(c.stats.tokens.size()) + " tokens, stop " +
               c.stats.stop_reason.value_or("?") + ">";
      });
  add_stats<Completion>(completion,
                        [](const Completion& c) -> const GenerationStats& { return c.stats; });

  py::class_<SessionObject, SessionPtr>(m, "Session",
                                        "One sequence over a model: its KV cache and tokens.")
      .def(py::init([](std::shared_ptr<ModelObject> model, int64_t n_ctx) {
             // Allocating and clearing the KV cache takes seconds at long contexts.
             py::gil_scoped_release unlocked;
             return std::make_shared<SessionObject>(std::move(model), n_ctx);
           }),
           py::arg("model"), py::kw_only(), py::arg("n_ctx") = 0,
           "A new, empty session; n_ctx positions of KV cache (0: the training context, at "
           "most 4096).")
      .def_property_readonly("model", [](const SessionObject& s) { return s.model; })
      .def_property_readonly("n_ctx", [](const SessionObject& s) { return s.session.n_ctx(); })
      .def_property_readonly("n_vocab",
                             [](const SessionObject& s) { return s.model->info.n_vocab; })
      .def_property_readonly("position",
                             [](SessionObject& s) {
                               SessionUse use(s);
                               return s.session.position();
                             })
      .def_property_readonly("tokens",
                             [](SessionObject& s) {
                               SessionUse use(s);
                               return s.session.tokens();
                             })
      .def(
          "eval",
          [](SessionObject& s, const py::object& tokens_arg, bool all_logits) -> py::object {
            const std::vector<int32_t> tokens = token_list(tokens_arg);
            SessionUse use(s);
            const size_t n_vocab = static_cast<size_t>(s.model->info.n_vocab);
            if (all_logits) {
              py::array_t<float> out(
                  {static_cast<py::ssize_t>(tokens.size()), static_cast<py::ssize_t>(n_vocab)});
              float* dst = out.mutable_data();
              {
                py::gil_scoped_release release;
                check(ktx_session_eval_all(s.session.get(), tokens.data(), tokens.size(), dst,
                                           tokens.size() * n_vocab));
              }
              ++s.version;
              return out;
            }
            ktx::Logits logits;
            {
              py::gil_scoped_release release;
              logits = s.session.eval(tokens);
            }
            if (!tokens.empty()) ++s.version;
            if (logits.empty()) {
              throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                                  "Session.eval: no tokens given and the session holds no logits");
            }
            return copy_logits(logits.data, logits.size);
          },
          py::arg("tokens"), py::kw_only(), py::arg("all_logits") = false,
          "Evaluates token ids after those held. Returns the last one's logits, float32 "
          "(n_vocab,), or with all_logits=True every token's, (len(tokens), n_vocab); a copy.")
      .def(
          "decode",
          [](SessionObject& s, int32_t token) {
            SessionUse use(s);
            ktx::Logits logits;
            {
              py::gil_scoped_release release;
              logits = s.session.decode(token);
            }
            ++s.version;
            return copy_logits(logits.data, logits.size);
          },
          py::arg("token"), "One decode step: eval([token]).")
      .def(
          "logits",
          [](SessionObject& s) -> py::object {
            SessionUse use(s);
            const ktx::Logits logits = s.session.logits();
            if (logits.empty()) return py::none();
            return copy_logits(logits.data, logits.size);
          },
          "The last evaluated token's logits (a copy), or None after reset / rewind.")
      .def("reset",
           [](SessionObject& s) {
             SessionUse use(s);
             s.session.reset();
             ++s.version;
           })
      .def(
          "rewind",
          [](SessionObject& s, int64_t position) {
            SessionUse use(s);
            s.session.rewind(position);
            ++s.version;
          },
          py::arg("position"), "Keeps the first `position` tokens (cached) and forgets the rest.")
      .def(
          "fork",
          [](SessionObject& s, int64_t n_ctx) {
            SessionUse use(s);
            std::optional<ktx::Session> copy;
            {
              py::gil_scoped_release unlocked;  // copies the whole cache
              copy.emplace(s.session.fork(n_ctx));
            }
            return std::make_shared<SessionObject>(s.model, std::move(*copy));
          },
          py::kw_only(), py::arg("n_ctx") = 0,
          "A new session holding a copy of this one's tokens, logits and KV cache, evolving on its "
          "own afterwards: to branch a conversation or try several continuations of one prompt. "
          "n_ctx: its context (0: this session's).")
      .def(
          "save",
          [](SessionObject& s, const py::object& path_arg) {
            const std::string path = path_argument(path_arg);
            SessionUse use(s);
            py::gil_scoped_release unlocked;
            s.session.save(path);
          },
          py::arg("path"),
          "Saves the tokens, logits and filled KV cache to a session file (a GGUF file; "
          "docs/SESSIONS.md), written through a temporary file and a rename. Refuses the "
          "model's own file.")
      .def(
          "load",
          [](SessionObject& s, const py::object& path_arg) {
            const std::string path = path_argument(path_arg);
            SessionUse use(s);
            const int64_t before = s.session.position();
            try {
              py::gil_scoped_release unlocked;
              s.session.load(path);
            } catch (...) {
              // A refused file leaves the session as it was; an accelerator's copy failing
              // halfway empties it, which an open generation must notice.
              if (s.session.position() != before) ++s.version;
              throw;
            }
            ++s.version;
          },
          py::arg("path"),
          "Replaces this session's state with a saved one. The file must come from the same "
          "model file and its tokens fit n_ctx; everything is checked first, so on an error the "
          "session is unchanged (but when an accelerator's copy fails halfway: then it is empty).")
      .def("generate",
           with_generation_args([](const SessionPtr& s, std::vector<int32_t> tokens,
                                   int64_t max_tokens, const ktx::SamplingOptions& options,
                                   StopStrings stops) {
             return Generation(s, std::move(tokens), max_tokens, options, std::move(stops));
           }),
           KTX_GENERATION_ARGS,
           "Generates after what the session holds; an iterator of text pieces. prompt: text, "
           "token ids, or chat messages; chat=True renders text as a user turn with the model's "
           "template. Stops at max_tokens, an end-of-generation token, a stop string (not "
           "included) or a full context.")
      .def("complete",
           with_generation_args([](const SessionPtr& s, std::vector<int32_t> tokens,
                                   int64_t max_tokens, const ktx::SamplingOptions& options,
                                   StopStrings stops) {
             SessionUse use(*s);
             return complete(*s, tokens, max_tokens, options, stops);
           }),
           KTX_GENERATION_ARGS,
           "Session.generate in one call (the C ABI's ktx_generate), returning a Completion.")
      .def("__repr__", [](const SessionObject& s) {
        return "<ktx.Session n_ctx=" + std::to_string(s.session.n_ctx()) + " of " + s.model->path +
               ">";
      });

  // Model.session(): registered here, beside the class it makes.
  auto model = py::reinterpret_borrow<py::class_<ModelObject, std::shared_ptr<ModelObject>>>(
      m.attr("Model"));
  model.def(
      "session",
      [](std::shared_ptr<ModelObject> self, int64_t n_ctx) {
        py::gil_scoped_release unlocked;  // the KV cache: seconds at long contexts
        return std::make_shared<SessionObject>(std::move(self), n_ctx);
      },
      py::kw_only(), py::arg("n_ctx") = 0,
      "A new, empty session; n_ctx positions of KV cache (0: the training context, at most "
      "4096).");

  m.def(
      "decode_batch",
      [](const std::vector<SessionPtr>& sessions, const py::object& tokens_arg) {
        const std::vector<int32_t> tokens = token_list(tokens_arg);  // counts: ktx::decode_batch
        for (size_t i = 0; i < sessions.size(); ++i) {
          if (!sessions[i])
            throw py::type_error("decode_batch: session #" + std::to_string(i) + " is None");
          for (size_t j = 0; j < i; ++j) {
            // Before the in-use guards below, which would call the repeat another thread.
            if (sessions[j] == sessions[i]) {
              throw ktx::AbiError(KTX_STATUS_INVALID_ARGUMENT,
                                  "decode_batch: session #" + std::to_string(i) + " is session #" +
                                      std::to_string(j) + " again: one token each");
            }
          }
        }
        std::vector<std::unique_ptr<SessionUse>> uses;
        std::vector<ktx::Session*> raw;
        for (const SessionPtr& s : sessions) {
          uses.push_back(std::make_unique<SessionUse>(*s));
          raw.push_back(&s->session);
        }
        {
          py::gil_scoped_release unlocked;
          ktx::decode_batch(raw, tokens);
        }
        for (const SessionPtr& s : sessions) ++s->version;  // before anything else can fail
        const size_t n_vocab =
            sessions.empty() ? 0 : static_cast<size_t>(sessions[0]->model->info.n_vocab);
        py::array_t<float> out(
            {static_cast<py::ssize_t>(sessions.size()), static_cast<py::ssize_t>(n_vocab)});
        for (size_t i = 0; i < sessions.size(); ++i) {
          const ktx::Logits l = sessions[i]->session.logits();
          std::memcpy(out.mutable_data(static_cast<py::ssize_t>(i)), l.data,
                      n_vocab * sizeof(float));
        }
        return out;
      },
      py::arg("sessions"), py::arg("tokens"),
      "One decode step of several sessions of one model at once: sessions[i] evaluates "
      "tokens[i]. Returns the logits, float32 (len(sessions), n_vocab) ((0, 0) for no "
      "sessions); each session also holds its row. The weights are read once for the whole "
      "batch, which can cost less than stepping each session (docs/SESSIONS.md).");
}

}  // namespace ktx::python
