// Vocabulary loading: tokens, token types and scores from GGUF metadata, with errors that name
// the file, the key, the index and what was expected.
#include "tokenizer/vocab.h"

#include <fmt/format.h>

#include "ktx/error.h"
#include "ktx/gguf.h"

namespace ktx::tokenizer {
namespace {

constexpr std::string_view kTokens = "tokenizer.ggml.tokens";
constexpr std::string_view kTokenType = "tokenizer.ggml.token_type";
constexpr std::string_view kScores = "tokenizer.ggml.scores";

absl::string_view as_absl(std::string_view s) { return {s.data(), s.size()}; }

[[noreturn]] void fail(const gguf::File& file, const std::string& message) {
  throw Error(ErrorCode::kInvalidFile, file_prefix(file) + message);
}

}  // namespace

std::string file_prefix(const gguf::File& file) {
  return file.paths().empty() ? std::string() : file.paths().front() + ": ";
}

std::string describe_value(const gguf::Value& v) {
  if (v.is_array()) {
    return fmt::format("an array of {} × {}", gguf::value_type_name(v.array_type()),
                       v.array_size());
  }
  return fmt::format("{} {}", gguf::value_type_name(v.type()), v.to_display_string());
}

Vocab Vocab::load(const gguf::File& file, bool require_scores) {
  Vocab vocab;
  const gguf::Value* tokens = file.find(kTokens);
  if (tokens == nullptr) fail(file, fmt::format("no {} key: the file has no vocabulary", kTokens));
  const std::vector<std::string>* texts = tokens->strings();
  if (texts == nullptr) {
    fail(file,
         fmt::format("{} is {}, expected an array of STRING", kTokens, describe_value(*tokens)));
  }
  if (texts->empty()) fail(file, fmt::format("{} is empty", kTokens));
  if (texts->size() > static_cast<size_t>(INT32_MAX)) {
    fail(file,
         fmt::format("{} holds {} tokens, more than int32 ids can name", kTokens, texts->size()));
  }
  vocab.text = *texts;
  const size_t n = vocab.text.size();

  vocab.type.assign(n, TokenType::kNormal);  // llama.cpp's reading when the key is absent
  if (const gguf::Value* types = file.find(kTokenType)) {
    if (!types->is_array() || !gguf::is_integer_type(types->array_type())) {
      fail(file, fmt::format("{} is {}, expected an array of integers", kTokenType,
                             describe_value(*types)));
    }
    if (types->array_size() != n) {
      fail(file, fmt::format("{} has {} entries but {} has {}: one type per token expected",
                             kTokenType, types->array_size(), kTokens, n));
    }
    for (size_t i = 0; i < n; ++i) {
      int64_t t = types->int_at(i).value_or(-1);
      if (t < 0 || t > static_cast<int64_t>(TokenType::kByte)) {
        fail(file, fmt::format("{}[{}] = {} (token '{}'): not a token type (0…6)", kTokenType, i, t,
                               vocab.text[i]));
      }
      vocab.type[i] = static_cast<TokenType>(t);
    }
  }

  vocab.score.assign(n, 0.0f);
  const gguf::Value* scores = file.find(kScores);
  if (scores == nullptr && require_scores) {
    fail(file,
         fmt::format("no {} key: a SentencePiece vocabulary needs one score per token", kScores));
  }
  if (scores != nullptr) {
    if (!scores->is_array() || (scores->array_type() != gguf::ValueType::FLOAT32 &&
                                scores->array_type() != gguf::ValueType::FLOAT64)) {
      fail(file,
           fmt::format("{} is {}, expected an array of FLOAT32", kScores, describe_value(*scores)));
    }
    if (scores->array_size() != n) {
      fail(file, fmt::format("{} has {} entries but {} has {}: one score per token expected",
                             kScores, scores->array_size(), kTokens, n));
    }
    for (size_t i = 0; i < n; ++i) vocab.score[i] = static_cast<float>(*scores->float_at(i));
  }

  vocab.id_of_.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    // An empty token can never be produced by encoding; it stays decodable (as nothing).
    if (vocab.text[i].empty()) continue;
    auto [it, inserted] = vocab.id_of_.emplace(vocab.text[i], static_cast<int32_t>(i));
    if (!inserted) {
      fail(file, fmt::format("{}[{}] = '{}' repeats {}[{}]: token texts must be unique", kTokens, i,
                             vocab.text[i], kTokens, it->second));
    }
  }
  return vocab;
}

int32_t Vocab::find(std::string_view token_text) const {
  auto it = id_of_.find(as_absl(token_text));
  return it == id_of_.end() ? -1 : it->second;
}

int32_t read_token_id(const gguf::File& file, std::string_view key, int32_t n_vocab) {
  const gguf::Value* v = file.find(key);
  if (v == nullptr) return -1;
  std::optional<int64_t> id = v->is_array() ? std::nullopt : v->as_int();
  if (!id)
    fail(file, fmt::format("{} is {}, expected an integer token id", key, describe_value(*v)));
  if (*id < 0 || *id >= n_vocab) {
    fail(file, fmt::format("{} = {} names no token (the vocabulary has {})", key, *id, n_vocab));
  }
  return static_cast<int32_t>(*id);
}

bool read_bool(const gguf::File& file, std::string_view key, bool fallback) {
  const gguf::Value* v = file.find(key);
  if (v == nullptr) return fallback;
  std::optional<bool> b = v->is_array() ? std::nullopt : v->as_bool();
  if (!b) fail(file, fmt::format("{} is {}, expected a BOOL", key, describe_value(*v)));
  return *b;
}

}  // namespace ktx::tokenizer
