// ktx.hpp — a header-only C++17 layer over the C ABI (ktx.h): RAII handles and exceptions. It
// calls nothing but ktx.h, so whatever uses it (the Python binding, C++ hosts) exercises the ABI.
//
// Errors are thrown as ktx::AbiError (code + message), not returned as expected-like results:
// constructors such as Model::load cannot return a result, C++17 has no std::expected, and the
// Python binding turns a C++ exception into a Python one with no code per call. A callback that
// throws (progress, token streaming) stops the C call, and its exception is rethrown as is.
#ifndef KTX_KTX_HPP
#define KTX_KTX_HPP

#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ktx/ktx.h"

namespace ktx {

// A failed C call: its status code and message.
class AbiError : public std::runtime_error {
 public:
  AbiError(ktx_status_code code, const std::string& message)
      : std::runtime_error(message), code_(code) {}
  ktx_status_code code() const noexcept { return code_; }
  const char* code_name() const noexcept { return ktx_status_code_name(code_); }

 private:
  ktx_status_code code_;
};

namespace detail {

template <class T, void (*Release)(T*)>
struct Releaser {
  void operator()(T* p) const noexcept { Release(p); }
};
template <class T, void (*Release)(T*)>
using Handle = std::unique_ptr<T, Releaser<T, Release>>;

using Status = Handle<ktx_status, ktx_status_release>;

// Throws the status's error, if any, after releasing it.
inline void check(ktx_status* raw) {
  Status status(raw);
  if (status) throw AbiError(ktx_status_get_code(raw), ktx_status_get_message(raw));
}

// The buffer protocol: size query, then fill (the size can only be stable here, since the
// inputs do not change between the two calls; the loop is for robustness).
template <class T, class Call>
std::vector<T> read_buffer(Call call, size_t guess) {
  std::vector<T> out(guess);
  for (int attempt = 0; attempt < 3; ++attempt) {
    size_t needed = 0;
    T* data = out.empty() ? nullptr : out.data();
    Status status(call(data, out.size(), &needed));
    if (!status && (data != nullptr || needed == 0)) {
      out.resize(needed);
      return out;
    }
    if (!status) {  // a size query: now fill
      out.resize(needed + 1);
      continue;
    }
    if (ktx_status_get_code(status.get()) != KTX_STATUS_BUFFER_TOO_SMALL) {
      throw AbiError(ktx_status_get_code(status.get()), ktx_status_get_message(status.get()));
    }
    out.resize(needed + 1);
  }
  throw AbiError(KTX_STATUS_INTERNAL, "ktx.hpp: the size a buffer needs kept changing");
}

inline std::string read_text(const std::function<ktx_status*(char*, size_t, size_t*)>& call,
                             size_t guess = 64) {
  const std::vector<char> buf = read_buffer<char>(call, guess + 1);
  return std::string(buf.data(), buf.size());  // resized to the length, NUL excluded
}

// A progress callback's exception, kept while ktx_model_load unwinds and rethrown after it. Per
// thread, not in the options: one ModelOptions may serve loads on several threads at once
// (ktx_model_load calls the callback on the thread that called it).
inline std::exception_ptr& load_callback_error() {
  thread_local std::exception_ptr error;
  return error;
}

// A callback's exception, kept while the C call unwinds and rethrown after it.
struct CallbackError {
  std::exception_ptr error;
  void rethrow_if_any() {
    if (error) std::rethrow_exception(std::exchange(error, nullptr));
  }
};

}  // namespace detail

// The library's ABI version, (major << 16) | minor, and its release string.
inline uint32_t abi_version() { return ktx_abi_version(); }
inline std::string version_string() { return ktx_version_string(); }
// Whether the loaded library serves the ABI this header was compiled against.
inline bool abi_compatible() {
  const uint32_t v = ktx_abi_version();
  return (v >> 16) == KTX_ABI_VERSION_MAJOR && (v & 0xffffu) >= KTX_ABI_VERSION_MINOR;
}

// Logits owned by a session: valid until the session's next evaluate, reset or rewind.
struct Logits {
  const float* data = nullptr;
  size_t size = 0;
  const float* begin() const { return data; }
  const float* end() const { return data + size; }
  float operator[](size_t i) const { return data[i]; }
  bool empty() const { return size == 0; }
};

// One turn of a conversation, for Model::apply_chat_template.
struct ChatTurn {
  std::string role;
  std::string content;
};

class ModelOptions {
 public:
  ModelOptions() {
    ktx_model_options* raw = nullptr;
    detail::check(ktx_model_options_create(&raw));
    handle_.reset(raw);
  }
  ModelOptions& threads(int32_t n) {
    detail::check(ktx_model_options_set_threads(get(), n));
    return *this;
  }
  ModelOptions& rules_path(const std::string& path) {
    detail::check(ktx_model_options_set_rules_path(get(), path.c_str()));
    return *this;
  }
  ModelOptions& add_backend_path(const std::string& path) {
    detail::check(ktx_model_options_add_backend_path(get(), path.c_str()));
    return *this;
  }
  ModelOptions& prefault(bool on) {
    detail::check(ktx_model_options_set_prefault(get(), on));
    return *this;
  }
  // Called with 0..1 while loading; return false to cancel (AbiError KTX_STATUS_CANCELLED).
  ModelOptions& progress(std::function<bool(float)> callback) {
    check_not_moved_from("ktx::ModelOptions::progress");
    progress_->callback = std::move(callback);
    detail::check(ktx_model_options_set_progress_callback(
        get(), progress_->callback ? &ModelOptions::on_progress : nullptr, progress_.get()));
    return *this;
  }

  ktx_model_options* get() const { return handle_.get(); }

 private:
  friend class Model;
  friend class BackendList;
  struct Progress {
    std::function<bool(float)> callback;
  };
  // A moved-from ModelOptions holds nothing: using it is a bug in the caller, said as such
  // rather than loaded with default options or dereferenced.
  void check_not_moved_from(const char* function) const {
    if (!handle_ || !progress_) {
      throw AbiError(KTX_STATUS_INVALID_ARGUMENT,
                     std::string(function) + ": the ModelOptions object was moved from");
    }
  }
  static bool on_progress(float fraction, void* user_data) {
    auto* p = static_cast<Progress*>(user_data);
    try {
      return p->callback(fraction);
    } catch (...) {
      detail::load_callback_error() = std::current_exception();
      return false;
    }
  }

  detail::Handle<ktx_model_options, ktx_model_options_release> handle_;
  std::unique_ptr<Progress> progress_ = std::make_unique<Progress>();  // stable user_data
};

// A view of backends: a model's, or an owning list from BackendList::load.
class BackendList {
 public:
  // The backends ktx would load (CPU, modules in `options`' backend paths, the default folders).
  static BackendList load(const ModelOptions* options = nullptr) {
    if (options != nullptr) options->check_not_moved_from("ktx::BackendList::load");
    ktx_backend_list* raw = nullptr;
    detail::check(ktx_backend_list_load(options ? options->get() : nullptr, &raw));
    BackendList list(raw);
    list.owned_.reset(raw);
    return list;
  }

  size_t size() const { return ktx_backend_list_count(list_); }
  ktx_backend_info info(size_t index) const {
    ktx_backend_info info{};
    info.struct_size = sizeof info;
    detail::check(ktx_backend_list_get(list_, index, &info));
    return info;
  }
  ktx_device_info device(size_t backend, size_t device) const {
    ktx_device_info info{};
    info.struct_size = sizeof info;
    detail::check(ktx_backend_list_get_device(list_, backend, device, &info));
    return info;
  }
  std::vector<std::string> operators(size_t backend) const {
    std::vector<std::string> out;
    for (size_t i = 0; const char* name = ktx_backend_list_operator(list_, backend, i); ++i) {
      out.emplace_back(name);
    }
    return out;
  }
  std::vector<std::string> refused() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < ktx_backend_list_refused_count(list_); ++i) {
      out.emplace_back(ktx_backend_list_refused(list_, i));
    }
    return out;
  }
  const ktx_backend_list* get() const { return list_; }

 private:
  friend class Model;
  explicit BackendList(const ktx_backend_list* list) : list_(list) {}
  const ktx_backend_list* list_;
  detail::Handle<ktx_backend_list, ktx_backend_list_release> owned_;
};

class Model {
 public:
  // Throws AbiError (KTX_STATUS_IO_ERROR, INVALID_FILE, UNSUPPORTED, CANCELLED …), or what the
  // progress callback threw.
  static Model load(const std::string& path, const ModelOptions* options = nullptr) {
    if (options != nullptr) options->check_not_moved_from("ktx::Model::load");
    ktx_model* raw = nullptr;
    detail::load_callback_error() = nullptr;
    detail::Status status(ktx_model_load(path.c_str(), options ? options->get() : nullptr, &raw));
    Model model(raw);  // owns what was loaded, whatever is thrown below
    if (std::exception_ptr error = std::exchange(detail::load_callback_error(), nullptr)) {
      std::rethrow_exception(error);
    }
    detail::check(status.release());
    return model;
  }
  static Model load(const std::string& path, const ModelOptions& options) {
    return load(path, &options);
  }

  // `architecture` and `name` are borrowed from the model: copy them to keep them past it
  // (`Model::load(p).info().architecture` dangles once the temporary model is gone).
  ktx_model_info info() const {
    ktx_model_info info{};
    info.struct_size = sizeof info;
    detail::check(ktx_model_get_info(get(), &info));
    return info;
  }
  std::vector<std::string> warnings() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < ktx_model_warning_count(get()); ++i) {
      out.emplace_back(ktx_model_warning(get(), i));
    }
    return out;
  }

  // Metadata. The getters throw AbiError KTX_STATUS_NOT_FOUND for a missing key and
  // KTX_STATUS_INVALID_ARGUMENT for a value of another type.
  std::vector<std::string> meta_keys() const {
    std::vector<std::string> out;
    for (size_t i = 0; i < ktx_model_meta_count(get()); ++i) {
      out.emplace_back(ktx_model_meta_key(get(), i));
    }
    return out;
  }
  std::optional<ktx_meta_type> meta_type(const std::string& key) const {
    ktx_meta_type type = KTX_META_UINT8;
    detail::Status status(ktx_model_meta_get_type(get(), key.c_str(), &type));
    if (!status) return type;
    if (ktx_status_get_code(status.get()) == KTX_STATUS_NOT_FOUND) return std::nullopt;
    throw AbiError(ktx_status_get_code(status.get()), ktx_status_get_message(status.get()));
  }
  int64_t meta_int(const std::string& key) const {
    int64_t v = 0;
    detail::check(ktx_model_meta_get_int(get(), key.c_str(), &v));
    return v;
  }
  double meta_float(const std::string& key) const {
    double v = 0;
    detail::check(ktx_model_meta_get_float(get(), key.c_str(), &v));
    return v;
  }
  std::string meta_string(const std::string& key) const {
    const char* v = nullptr;
    size_t len = 0;
    detail::check(ktx_model_meta_get_string(get(), key.c_str(), &v, &len));
    return std::string(v, len);
  }

  // The plan.
  size_t plan_size() const { return ktx_model_plan_count(get()); }
  ktx_placement placement(size_t index) const {
    ktx_placement p{};
    p.struct_size = sizeof p;
    detail::check(ktx_model_plan_get(get(), index, &p));
    return p;
  }
  std::string plan_json() const { return ktx_model_plan_json(get()); }

  // A view into the model, valid while the model lives (unlike a session, it does not keep
  // the model alive).
  BackendList backends() const { return BackendList(ktx_model_get_backends(get())); }

  // The tokenizer; without one these throw AbiError KTX_STATUS_UNSUPPORTED. Defaults as in
  // `ktx generate`: tokenize adds BOS/EOS as the file asks, detokenize hides control tokens,
  // token_to_piece shows them.
  bool has_tokenizer() const { return ktx_model_has_tokenizer(get()); }
  std::vector<int32_t> tokenize(std::string_view text,
                                uint32_t flags = KTX_TOKENIZE_ADD_SPECIAL) const {
    return detail::read_buffer<int32_t>(
        [&](int32_t* buf, size_t capacity, size_t* n) {
          return ktx_tokenize(get(), text.data(), text.size(), flags, buf, capacity, n);
        },
        text.size() / 2 + 8);
  }
  std::string detokenize(const std::vector<int32_t>& tokens, uint32_t flags = 0) const {
    return detail::read_text(
        [&](char* buf, size_t capacity, size_t* len) {
          return ktx_detokenize(get(), tokens.data(), tokens.size(), flags, buf, capacity, len);
        },
        tokens.size() * 8);
  }
  std::string token_to_piece(int32_t token, uint32_t flags = KTX_DETOKENIZE_RENDER_SPECIAL) const {
    return detail::read_text([&](char* buf, size_t capacity, size_t* len) {
      return ktx_token_to_piece(get(), token, flags, buf, capacity, len);
    });
  }
  int32_t bos() const { return ktx_token_bos(get()); }
  int32_t eos() const { return ktx_token_eos(get()); }
  bool is_eog(int32_t token) const { return ktx_token_is_eog(get(), token); }
  std::string apply_chat_template(const std::vector<ChatTurn>& turns,
                                  bool add_generation_prompt = true) const {
    std::vector<ktx_chat_message> messages;
    messages.reserve(turns.size());
    size_t total = 0;
    for (const ChatTurn& t : turns) {
      messages.push_back({t.role.c_str(), t.content.c_str()});
      total += t.role.size() + t.content.size();
    }
    return detail::read_text(
        [&](char* buf, size_t capacity, size_t* len) {
          return ktx_chat_apply_template(get(), messages.data(), messages.size(),
                                         add_generation_prompt, buf, capacity, len);
        },
        total + 256);
  }

  ktx_model* get() const { return handle_.get(); }

 private:
  explicit Model(ktx_model* raw) : handle_(raw) {}
  detail::Handle<ktx_model, ktx_model_release> handle_;
};

class SamplingOptions {
 public:
  SamplingOptions() {
    ktx_sampling_options* raw = nullptr;
    detail::check(ktx_sampling_options_create(&raw));
    handle_.reset(raw);
  }
  SamplingOptions& temperature(float v) {
    return set(ktx_sampling_options_set_temperature(get(), v));
  }
  SamplingOptions& top_k(int32_t v) { return set(ktx_sampling_options_set_top_k(get(), v)); }
  SamplingOptions& top_p(float v) { return set(ktx_sampling_options_set_top_p(get(), v)); }
  SamplingOptions& min_p(float v) { return set(ktx_sampling_options_set_min_p(get(), v)); }
  SamplingOptions& repeat_penalty(float v) {
    return set(ktx_sampling_options_set_repeat_penalty(get(), v));
  }
  SamplingOptions& presence_penalty(float v) {
    return set(ktx_sampling_options_set_presence_penalty(get(), v));
  }
  SamplingOptions& frequency_penalty(float v) {
    return set(ktx_sampling_options_set_frequency_penalty(get(), v));
  }
  SamplingOptions& penalty_last_n(int32_t v) {
    return set(ktx_sampling_options_set_penalty_last_n(get(), v));
  }
  SamplingOptions& seed(uint64_t v) { return set(ktx_sampling_options_set_seed(get(), v)); }

  ktx_sampling_options* get() const { return handle_.get(); }

 private:
  SamplingOptions& set(ktx_status* status) {
    detail::check(status);
    return *this;
  }
  detail::Handle<ktx_sampling_options, ktx_sampling_options_release> handle_;
};

class Sampler {
 public:
  Sampler() : Sampler(nullptr) {}
  explicit Sampler(const SamplingOptions& options) : Sampler(options.get()) {}

  int32_t sample(const float* logits, size_t n) {
    int32_t token = -1;
    detail::check(ktx_sampler_sample(get(), logits, n, &token));
    return token;
  }
  int32_t sample(Logits logits) { return sample(logits.data, logits.size); }
  void accept(int32_t token) { detail::check(ktx_sampler_accept(get(), token)); }
  void reset() { ktx_sampler_reset(get()); }

  ktx_sampler* get() const { return handle_.get(); }

 private:
  explicit Sampler(const ktx_sampling_options* options) {
    ktx_sampler* raw = nullptr;
    detail::check(ktx_sampler_create(options, &raw));
    handle_.reset(raw);
  }
  detail::Handle<ktx_sampler, ktx_sampler_release> handle_;
};

// Receives each generated token and its text (token -1: trailing bytes); return false to stop.
using TokenCallback = std::function<bool(int32_t token, std::string_view piece)>;

class Session {
 public:
  // n_ctx 0: the model's training context, at most 4096. The session keeps the model's weights
  // alive: the Model object may be destroyed first.
  explicit Session(const Model& model, int64_t n_ctx = 0) {
    n_vocab_ = static_cast<size_t>(model.info().n_vocab);
    ktx_session* raw = nullptr;
    detail::check(ktx_session_create(model.get(), n_ctx, &raw));
    handle_.reset(raw);
  }

  // Evaluates tokens after those held; returns the last token's logits.
  Logits eval(const int32_t* tokens, size_t n) {
    const float* logits = nullptr;
    detail::check(ktx_session_eval(get(), tokens, n, &logits));
    return logits_view(logits);
  }
  Logits eval(const std::vector<int32_t>& tokens) { return eval(tokens.data(), tokens.size()); }
  Logits decode(int32_t token) { return eval(&token, 1); }
  // The logits of every token, [tokens.size()][n_vocab].
  std::vector<float> eval_all(const std::vector<int32_t>& tokens) {
    std::vector<float> out(tokens.size() * n_vocab_);
    detail::check(
        ktx_session_eval_all(get(), tokens.data(), tokens.size(), out.data(), out.size()));
    return out;
  }

  Logits logits() const {
    size_t n = 0;
    const float* data = ktx_session_get_logits(get(), &n);
    return {data, n};
  }
  std::vector<int32_t> tokens() const {
    size_t n = 0;
    const int32_t* data = ktx_session_get_tokens(get(), &n);
    return data == nullptr ? std::vector<int32_t>() : std::vector<int32_t>(data, data + n);
  }
  int64_t position() const { return ktx_session_position(get()); }
  int64_t n_ctx() const { return ktx_session_n_ctx(get()); }
  void reset() { ktx_session_reset(get()); }
  void rewind(int64_t position) { detail::check(ktx_session_rewind(get(), position)); }

  // A copy holding this session's tokens, logits and cache, evolving on its own afterwards
  // (ktx_session_fork); n_ctx 0: this session's context.
  Session fork(int64_t n_ctx = 0) const {
    ktx_session* raw = nullptr;
    detail::check(ktx_session_fork(get(), n_ctx, &raw));
    return Session(raw, n_vocab_);
  }
  // The session's state to a session file, and back (ktx_session_save, ktx_session_load).
  void save(const std::string& path) const { detail::check(ktx_session_save(get(), path.c_str())); }
  void load(const std::string& path) { detail::check(ktx_session_load(get(), path.c_str())); }

  // Generates up to n_predict tokens after `prompt`; see ktx_generate.
  ktx_generate_stats generate(Sampler& sampler, const std::vector<int32_t>& prompt,
                              int64_t n_predict, TokenCallback on_token = {}) {
    struct State : detail::CallbackError {
      TokenCallback* callback;
    } state;
    state.callback = &on_token;
    auto trampoline = [](int32_t token, const char* piece, size_t len, void* user_data) -> bool {
      auto* s = static_cast<State*>(user_data);
      try {
        return (*s->callback)(token, std::string_view(piece, len));
      } catch (...) {
        s->error = std::current_exception();
        return false;
      }
    };
    ktx_generate_stats stats{};
    stats.struct_size = sizeof stats;
    detail::Status status(ktx_generate(get(), sampler.get(), prompt.data(), prompt.size(),
                                       n_predict, on_token ? +trampoline : nullptr, &state,
                                       &stats));
    state.rethrow_if_any();
    detail::check(status.release());
    return stats;
  }

  ktx_session* get() const { return handle_.get(); }

 private:
  Session(ktx_session* raw, size_t n_vocab) : n_vocab_(n_vocab), handle_(raw) {}
  Logits logits_view(const float* data) const {
    size_t n = 0;
    ktx_session_get_logits(get(), &n);
    return {data, data == nullptr ? 0 : n};
  }
  size_t n_vocab_ = 0;
  detail::Handle<ktx_session, ktx_session_release> handle_;
};

// One decode step of several sessions of one model at once (ktx_session_decode_batch):
// sessions[i] evaluates tokens[i]; each then holds its logits.
inline void decode_batch(const std::vector<Session*>& sessions,
                         const std::vector<int32_t>& tokens) {
  if (sessions.size() != tokens.size()) {
    throw AbiError(KTX_STATUS_INVALID_ARGUMENT,
                   "ktx::decode_batch: " + std::to_string(sessions.size()) + " sessions but " +
                       std::to_string(tokens.size()) + " tokens");
  }
  std::vector<ktx_session*> raw(sessions.size());
  for (size_t i = 0; i < sessions.size(); ++i) {
    raw[i] = sessions[i] != nullptr ? sessions[i]->get() : nullptr;
  }
  detail::check(ktx_session_decode_batch(raw.data(), raw.size(), tokens.data()));
}

}  // namespace ktx

#endif  // KTX_KTX_HPP
