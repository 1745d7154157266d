// Tokenizer: reads tokenizer.* metadata into the parts (vocabulary, BPE or SentencePiece model,
// pre-tokenizer, special-token matcher, chat template) and drives them for encode and decode.
#include "ktx/tokenizer.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <optional>

#include "ktx/error.h"
#include "ktx/gguf.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pre_tokenizer.h"
#include "tokenizer/sentencepiece.h"
#include "tokenizer/special_tokens.h"
#include "tokenizer/vocab.h"

namespace ktx {

using tokenizer::BytePairEncoder;
using tokenizer::PreTokenizer;
using tokenizer::SentencePieceEncoder;
using tokenizer::SpecialTokenMatcher;
using tokenizer::Vocab;

struct Tokenizer::Impl {
  std::string path;
  Model model = Model::kBytePairEncoding;
  std::string pre_name;
  Vocab vocab;
  std::vector<std::string> pieces;          // what each token decodes to (special ones: their text)
  std::unique_ptr<PreTokenizer> pre;        // BPE only
  std::optional<BytePairEncoder> bpe;       // BPE only
  std::optional<SentencePieceEncoder> spm;  // SentencePiece only
  bool add_space_prefix = false;            // SentencePiece only
  std::optional<SpecialTokenMatcher> specials;
  int32_t bos = -1;
  int32_t eos = -1;
  bool add_bos = false;
  bool add_eos = false;
  std::vector<int32_t> end_of_generation;  // sorted, unique
  std::string chat_template_text;
  std::optional<ChatTemplate> chat_template;
  std::string chat_template_error;  // why chat_template is empty

  void check_id(int32_t token) const {
    if (token < 0 || token >= vocab.size()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("token id {} is outside the vocabulary [0, {}) of {}", token,
                              vocab.size(), path));
    }
  }
  bool is_special(int32_t token) const {
    TokenType t = vocab.type[token];
    return t == TokenType::kControl || t == TokenType::kUnknown;
  }
};

namespace {

constexpr std::string_view kModel = "tokenizer.ggml.model";
constexpr std::string_view kPre = "tokenizer.ggml.pre";
constexpr std::string_view kChatTemplate = "tokenizer.chat_template";

// Tokens llama.cpp treats as ending a turn by their text, whatever the file's EOS says.
constexpr std::array<std::string_view, 7> kEndOfTurnTexts = {
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|eom_id|>", "<EOT>"};

const std::string& read_string(const gguf::File& file, std::string_view key) {
  const gguf::Value* v = file.find(key);
  if (v == nullptr) {
    throw Error(ErrorCode::kInvalidFile, fmt::format("{}no {} key: the file has no tokenizer",
                                                     tokenizer::file_prefix(file), key));
  }
  const std::string* s = v->as_string();
  if (s == nullptr) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}{} is {}, expected a STRING", tokenizer::file_prefix(file), key,
                            tokenizer::describe_value(*v)));
  }
  return *s;
}

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  size_t pos = 0;
  while (true) {
    size_t hit = s.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(s.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(s.substr(pos));
  return out;
}

}  // namespace

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}

Tokenizer Tokenizer::from_gguf(const gguf::File& file) {
  auto impl = std::make_shared<Impl>();
  impl->path = file.paths().empty() ? std::string("(memory)") : file.paths().front();
  const std::string prefix = tokenizer::file_prefix(file);

  const std::string& model_name = read_string(file, kModel);
  if (model_name == "gpt2") {
    impl->model = Model::kBytePairEncoding;
  } else if (model_name == "llama") {
    impl->model = Model::kSentencePiece;
  } else if (model_name == "none" || model_name == "no_vocab") {
    // llama.cpp's spelling of "this model has no vocabulary" (random-weight test models).
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{}{} = \"{}\": the model has no vocabulary; give token ids instead "
                            "of text",
                            prefix, kModel, model_name));
  } else {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{}{} = \"{}\" is not supported; ktx implements \"gpt2\" (byte-level "
                            "BPE) and \"llama\" (SentencePiece)",
                            prefix, kModel, model_name));
  }
  const bool is_bpe = impl->model == Model::kBytePairEncoding;
  impl->vocab = Vocab::load(file, /*require_scores=*/!is_bpe);
  const Vocab& vocab = impl->vocab;

  bool adds_bos_by_default = !is_bpe;  // llama.cpp: SentencePiece files add BOS unless told not to
  if (is_bpe) {
    // llama.cpp reads a missing tokenizer.ggml.pre as "default" (files from old converters).
    const gguf::Value* pre = file.find(kPre);
    if (pre != nullptr && pre->as_string() == nullptr) {
      throw Error(ErrorCode::kInvalidFile, fmt::format("{}{} is {}, expected a STRING", prefix,
                                                       kPre, tokenizer::describe_value(*pre)));
    }
    impl->pre_name = pre != nullptr ? *pre->as_string() : "default";
    impl->pre = PreTokenizer::create(impl->pre_name);
    if (!impl->pre) {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("{}{} = \"{}\" is not a pre-tokenizer ktx knows; supported: {}",
                              prefix, kPre, impl->pre_name, PreTokenizer::supported_names()));
    }
    adds_bos_by_default = impl->pre->adds_bos_by_default();
    impl->bpe.emplace(file, vocab);
  } else {
    impl->pre_name = "default";
    impl->add_space_prefix = tokenizer::read_bool(file, "tokenizer.ggml.add_space_prefix", true);
    int32_t unknown =
        tokenizer::read_token_id(file, "tokenizer.ggml.unknown_token_id", vocab.size());
    impl->spm.emplace(vocab, unknown);
  }
  impl->specials.emplace(vocab);

  impl->bos = tokenizer::read_token_id(file, "tokenizer.ggml.bos_token_id", vocab.size());
  impl->eos = tokenizer::read_token_id(file, "tokenizer.ggml.eos_token_id", vocab.size());
  impl->add_bos = tokenizer::read_bool(file, "tokenizer.ggml.add_bos_token", adds_bos_by_default);
  impl->add_eos = tokenizer::read_bool(file, "tokenizer.ggml.add_eos_token", false);
  if (impl->add_bos && impl->bos < 0) {
    throw Error(ErrorCode::kInvalidFile,
                fmt::format("{}BOS is to be added (tokenizer.ggml.add_bos_token or the model's "
                            "default) but tokenizer.ggml.bos_token_id is missing",
                            prefix));
  }
  if (impl->add_eos && impl->eos < 0) {
    throw Error(
        ErrorCode::kInvalidFile,
        fmt::format("{}tokenizer.ggml.add_eos_token is true but tokenizer.ggml.eos_token_id "
                    "is missing",
                    prefix));
  }

  for (std::string_view key : {"tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id",
                               "tokenizer.ggml.eom_token_id"}) {
    int32_t id = tokenizer::read_token_id(file, key, vocab.size());
    if (id >= 0) impl->end_of_generation.push_back(id);
  }
  for (std::string_view text : kEndOfTurnTexts) {
    int32_t id = vocab.find(text);
    if (id >= 0) impl->end_of_generation.push_back(id);
  }
  auto& eog = impl->end_of_generation;
  std::sort(eog.begin(), eog.end());
  eog.erase(std::unique(eog.begin(), eog.end()), eog.end());

  impl->pieces.resize(vocab.text.size());
  for (size_t i = 0; i < vocab.text.size(); ++i) {
    const std::string& text = vocab.text[i];
    switch (vocab.type[i]) {
      case TokenType::kControl:
      case TokenType::kUnknown:
      case TokenType::kUserDefined:
        impl->pieces[i] = text;  // written as is, never through the byte alphabet
        break;
      case TokenType::kByte:
        if (!is_bpe) {
          int byte = -1;
          if (text.size() == 6 && text.compare(0, 3, "<0x") == 0 && text[5] == '>') {
            byte = std::stoi(text.substr(3, 2), nullptr, 16);
          }
          if (byte < 0 ||
              impl->spm->byte_token(static_cast<uint8_t>(byte)) != static_cast<int32_t>(i)) {
            throw Error(ErrorCode::kInvalidFile,
                        fmt::format("{}tokenizer.ggml.tokens[{}] = '{}' has type byte "
                                    "(tokenizer.ggml.token_type 6) but is not written <0xNN>",
                                    prefix, i, text));
          }
          impl->pieces[i] = std::string(1, static_cast<char>(byte));
          break;
        }
        [[fallthrough]];
      default:
        impl->pieces[i] = is_bpe ? impl->bpe->alphabet().decode(text)
                                 : replace_all(text, SentencePieceEncoder::kSpace, " ");
        break;
    }
  }

  if (const gguf::Value* tmpl = file.find(kChatTemplate)) {
    if (tmpl->as_string() == nullptr) {
      throw Error(ErrorCode::kInvalidFile,
                  fmt::format("{}{} is {}, expected a STRING", prefix, kChatTemplate,
                              tokenizer::describe_value(*tmpl)));
    }
    impl->chat_template_text = *tmpl->as_string();
    try {
      impl->chat_template = ChatTemplate::detect(impl->chat_template_text);
    } catch (const Error& e) {
      impl->chat_template_error = fmt::format("{}{}: {}", prefix, kChatTemplate, e.what());
    }
  } else {
    impl->chat_template_error =
        fmt::format("{}no {} key: the file carries no chat template", prefix, kChatTemplate);
  }
  return Tokenizer(std::move(impl));
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special,
                                       bool parse_special) const {
  const Impl& t = *impl_;
  std::vector<int32_t> out;
  if (add_special && t.add_bos) out.push_back(t.bos);
  std::vector<SpecialTokenMatcher::Fragment> fragments;
  t.specials->partition(text, parse_special, fragments);
  std::vector<std::string_view> pieces;
  // llama.cpp gives every plain fragment that follows a special token (or starts the text) its
  // own ▁ prefix; the SentencePiece path follows it.
  bool after_special = true;
  for (const auto& fragment : fragments) {
    if (fragment.token >= 0) {
      out.push_back(fragment.token);
      after_special = true;
      continue;
    }
    if (t.bpe) {
      t.pre->split(fragment.text, pieces);
      for (std::string_view piece : pieces) {
        t.bpe->encode(t.vocab, piece, t.pre->ignore_merges(), out);
      }
    } else {
      t.spm->encode(t.vocab, fragment.text, t.add_space_prefix && after_special, out);
    }
    after_special = false;
  }
  if (add_special && t.add_eos) out.push_back(t.eos);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> tokens, bool render_special) const {
  const Impl& t = *impl_;
  std::string out;
  // SentencePiece's decoder drops the space that add_dummy_prefix put before the text: one
  // leading space of the first token that is not a special one.
  bool strip_space = t.spm && t.add_space_prefix;
  for (int32_t token : tokens) {
    t.check_id(token);
    if (t.is_special(token)) {
      if (render_special) out.append(t.pieces[token]);
      continue;
    }
    std::string_view piece = t.pieces[token];
    if (strip_space && t.vocab.type[token] == TokenType::kNormal && !piece.empty() &&
        piece.front() == ' ') {
      piece.remove_prefix(1);
    }
    strip_space = false;
    out.append(piece);
  }
  return out;
}

std::string Tokenizer::token_piece(int32_t token, bool render_special) const {
  impl_->check_id(token);
  if (impl_->is_special(token) && !render_special) return {};
  return impl_->pieces[token];
}

const std::string& Tokenizer::token_text(int32_t token) const {
  impl_->check_id(token);
  return impl_->vocab.text[token];
}

TokenType Tokenizer::token_type(int32_t token) const {
  impl_->check_id(token);
  return impl_->vocab.type[token];
}

int32_t Tokenizer::find_token(std::string_view text) const { return impl_->vocab.find(text); }
int32_t Tokenizer::n_vocab() const { return impl_->vocab.size(); }
Tokenizer::Model Tokenizer::model() const { return impl_->model; }
const std::string& Tokenizer::pre_tokenizer() const { return impl_->pre_name; }
int32_t Tokenizer::bos() const { return impl_->bos; }
int32_t Tokenizer::eos() const { return impl_->eos; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }

bool Tokenizer::is_eog(int32_t token) const {
  const auto& eog = impl_->end_of_generation;
  return std::binary_search(eog.begin(), eog.end(), token);
}

const std::string& Tokenizer::chat_template() const { return impl_->chat_template_text; }

std::string Tokenizer::apply_chat_template(std::span<const ChatMessage> messages,
                                           bool add_generation_prompt) const {
  const Impl& t = *impl_;
  if (!t.chat_template) throw Error(ErrorCode::kUnsupported, t.chat_template_error);
  std::string_view bos = t.bos >= 0 ? std::string_view(t.vocab.text[t.bos]) : std::string_view();
  std::string_view eos = t.eos >= 0 ? std::string_view(t.vocab.text[t.eos]) : std::string_view();
  return t.chat_template->render(messages, add_generation_prompt, bos, eos);
}

}  // namespace ktx
