// The tokenizer and chat template of a model, through caller buffers.
#include "ktx/tokenizer.h"

#include <string>
#include <string_view>
#include <vector>

#include "abi_internal.h"

using ktx::abi::check_flags;
using ktx::abi::invalid_argument;
using ktx::abi::null_argument;

namespace {

constexpr uint32_t kTokenizeFlags = KTX_TOKENIZE_ADD_SPECIAL | KTX_TOKENIZE_PARSE_SPECIAL;
constexpr uint32_t kDetokenizeFlags = KTX_DETOKENIZE_RENDER_SPECIAL;

// nullptr when the model has no usable tokenizer (or is NULL): for the calls that never fail.
const ktx::Tokenizer* tokenizer_or_null(const ktx_model* model) {
  if (model == nullptr || !model->model->has_tokenizer()) return nullptr;
  return &model->model->tokenizer();
}

}  // namespace

extern "C" {

bool ktx_model_has_tokenizer(const ktx_model* model) { return tokenizer_or_null(model) != nullptr; }

ktx_status* ktx_tokenize(const ktx_model* model, const char* text, size_t text_len, uint32_t flags,
                         int32_t* tokens, size_t capacity, size_t* n_tokens) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (text == nullptr && text_len != 0) return null_argument(__func__, "text");
  if (n_tokens == nullptr) return null_argument(__func__, "n_tokens");
  if (ktx_status* s = check_flags(__func__, flags, kTokenizeFlags)) return s;
  const ktx::Tokenizer& tok = model->model->tokenizer();  // KTX_STATUS_UNSUPPORTED when none
  const std::vector<int32_t> ids = tok.encode(
      std::string_view(text == nullptr ? "" : text, text_len),
      (flags & KTX_TOKENIZE_ADD_SPECIAL) != 0, (flags & KTX_TOKENIZE_PARSE_SPECIAL) != 0);
  return ktx::abi::write_tokens(__func__, ids, tokens, capacity, n_tokens);
  KTX_API_END
}

ktx_status* ktx_detokenize(const ktx_model* model, const int32_t* tokens, size_t n_tokens,
                           uint32_t flags, char* buf, size_t capacity, size_t* len) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (tokens == nullptr && n_tokens != 0) return null_argument(__func__, "tokens");
  if (len == nullptr) return null_argument(__func__, "len");
  if (ktx_status* s = check_flags(__func__, flags, kDetokenizeFlags)) return s;
  const ktx::Tokenizer& tok = model->model->tokenizer();
  const std::string text =
      n_tokens == 0 ? std::string()
                    : tok.decode({tokens, n_tokens}, (flags & KTX_DETOKENIZE_RENDER_SPECIAL) != 0);
  return ktx::abi::write_text(__func__, text, buf, capacity, len);
  KTX_API_END
}

ktx_status* ktx_token_to_piece(const ktx_model* model, int32_t token, uint32_t flags, char* buf,
                               size_t capacity, size_t* len) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (len == nullptr) return null_argument(__func__, "len");
  if (ktx_status* s = check_flags(__func__, flags, kDetokenizeFlags)) return s;
  const ktx::Tokenizer& tok = model->model->tokenizer();
  if (token < 0 || token >= tok.n_vocab()) {
    return invalid_argument(__func__, "token " + std::to_string(token) +
                                          " is outside the vocabulary [0, " +
                                          std::to_string(tok.n_vocab()) + ")");
  }
  const std::string piece = tok.token_piece(token, (flags & KTX_DETOKENIZE_RENDER_SPECIAL) != 0);
  return ktx::abi::write_text(__func__, piece, buf, capacity, len);
  KTX_API_END
}

int32_t ktx_token_bos(const ktx_model* model) {
  const ktx::Tokenizer* tok = tokenizer_or_null(model);
  return tok == nullptr ? -1 : tok->bos();
}

int32_t ktx_token_eos(const ktx_model* model) {
  const ktx::Tokenizer* tok = tokenizer_or_null(model);
  return tok == nullptr ? -1 : tok->eos();
}

bool ktx_token_is_eog(const ktx_model* model, int32_t token) {
  const ktx::Tokenizer* tok = tokenizer_or_null(model);
  if (tok == nullptr || token < 0 || token >= tok->n_vocab()) return false;
  return tok->is_eog(token);
}

ktx_status* ktx_chat_apply_template(const ktx_model* model, const ktx_chat_message* messages,
                                    size_t n_messages, bool add_generation_prompt, char* buf,
                                    size_t capacity, size_t* len) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (messages == nullptr && n_messages != 0) return null_argument(__func__, "messages");
  if (len == nullptr) return null_argument(__func__, "len");
  std::vector<ktx::ChatMessage> turns;
  turns.reserve(n_messages);
  for (size_t i = 0; i < n_messages; ++i) {
    if (messages[i].role == nullptr || messages[i].content == nullptr) {
      return invalid_argument(__func__, "messages[" + std::to_string(i) + "]." +
                                            (messages[i].role == nullptr ? "role" : "content") +
                                            " is NULL");
    }
    turns.push_back({messages[i].role, messages[i].content});
  }
  const std::string text =
      model->model->tokenizer().apply_chat_template(turns, add_generation_prompt);
  return ktx::abi::write_text(__func__, text, buf, capacity, len);
  KTX_API_END
}

}  // extern "C"
