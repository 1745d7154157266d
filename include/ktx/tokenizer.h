// Tokenizers built from a GGUF file's tokenizer.* metadata: byte-level BPE (GPT-2 style, with the
// pre-tokenizer regexes each model family was trained with) and SentencePiece-style BPE (scores,
// ▁ for spaces, <0xNN> byte fallback), special tokens, BOS/EOS rules and the chat templates of
// the models ktx runs. docs/TOKENIZER.md lists what is supported and how it is checked.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ktx {

namespace gguf {
class File;
}  // namespace gguf

// Token types with the numbers GGUF stores in tokenizer.ggml.token_type.
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,      // BOS, EOS, chat markers: rendered only on request, matched only when asked
  kUserDefined = 4,  // added tokens that are plain text: always matched, always rendered
  kUnused = 5,
  kByte = 6,  // SentencePiece <0xNN> byte fallback
};

struct ChatMessage {
  std::string role;  // "system", "user", "assistant"; DeepSeek V3 templates also know "tool"
  std::string content;
};

// A chat template that ktx recognised in a Jinja text (tokenizer.chat_template), rendered by C++
// code written for its family — ktx has no Jinja engine. Families:
//   "chatml"    <|im_start|>role\n…<|im_end|>\n (SmolLM2 and others), including a default system
//               prompt that the template inserts when the conversation has none;
//   "deepseek2" DeepSeek LLM / V2 / V2-Lite chat ("User: …\n\nAssistant: …<eos>");
//   "deepseek3" DeepSeek V3 / R1 (<｜User｜>…<｜Assistant｜>…), with the variants of their
//               published templates: system prompts joined or last-one-wins, reasoning removed
//               from past assistant turns, a "<think>\n" generation prompt, tool outputs.
// Copyable; immutable after detect().
class ChatTemplate {
 public:
  // Recognises `jinja`. Throws ktx::Error(kUnsupported) quoting the start of the text and
  // listing the families above when the template is not one ktx renders.
  static ChatTemplate detect(std::string_view jinja);

  const std::string& family() const { return family_; }

  // Renders `messages` exactly as the template's Jinja would (byte for byte, as checked against
  // jinja2 in tests/data/chat_template_goldens.txt). `bos_text` / `eos_text` are what the
  // template's bos_token / eos_token stand for. With `add_generation_prompt` the text ends with
  // the assistant's opening, ready for generation. Roles a template ignores are skipped, as its
  // Jinja skips them.
  std::string render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                     std::string_view bos_text, std::string_view eos_text) const;

 private:
  enum class Family { kChatMl, kDeepSeek2, kDeepSeek3 };
  Family kind_ = Family::kChatMl;
  std::string family_;
  std::string default_system_;  // chatml: inserted when messages[0] is not a system message
  bool has_default_system_ = false;
  bool join_system_prompts_ = false;  // deepseek3: "\n\n"-joined, else the last one wins
  bool strip_reasoning_ = false;      // deepseek3: keep only the text after </think>
  std::string generation_prompt_;  // deepseek3: "<｜Assistant｜>" or "<｜Assistant｜><think>\n"
  std::string tool_output_separator_;  // deepseek3: between consecutive tool outputs
};

// A tokenizer built from GGUF metadata. Immutable after construction; copies share the same
// state and every method is safe to call from many threads at once.
class Tokenizer {
 public:
  enum class Model {
    kBytePairEncoding,  // tokenizer.ggml.model = "gpt2": byte-level BPE with ranked merges
    kSentencePiece,     // tokenizer.ggml.model = "llama": score-driven BPE over ▁-escaped text
  };

  // Reads tokenizer.* from `file`. Throws ktx::Error naming the file and the key: kInvalidFile
  // when metadata is missing or inconsistent (a merge naming a token the vocabulary lacks,
  // token_type or scores of the wrong length, a special token id out of range …),
  // kUnsupported for a tokenizer.ggml.model or tokenizer.ggml.pre ktx does not implement (the
  // message lists the supported ones). A chat template ktx does not recognise is not an error
  // here: apply_chat_template() reports it.
  static Tokenizer from_gguf(const gguf::File& file);

  // Token ids for `text` (UTF-8; invalid bytes are tokenized as bytes, never refused).
  // add_special: BOS/EOS as the file asks (tokenizer.ggml.add_bos_token / add_eos_token, with
  //   llama.cpp's defaults when absent: SentencePiece and llama-bpe add BOS).
  // parse_special: control tokens written in the text ("<|im_start|>", "<｜User｜>") become
  //   their ids; otherwise they are tokenized as plain text. User-defined tokens are matched
  //   either way. Matching is leftmost-longest, before pre-tokenization.
  std::vector<int32_t> encode(std::string_view text, bool add_special, bool parse_special) const;

  // The bytes the tokens stand for. Control and unknown tokens render as "" unless
  // `render_special`. For byte-level BPE decode(encode(s)) == s for every s; SentencePiece
  // removes the space that add_space_prefix put in front of the text. Throws
  // ktx::Error(kInvalidArgument) for an id outside [0, n_vocab()).
  std::string decode(std::span<const int32_t> tokens, bool render_special = false) const;

  // What one token contributes to decode() (possibly part of a UTF-8 character), without the
  // leading-space removal — for streaming output.
  std::string token_piece(int32_t token, bool render_special = true) const;
  const std::string& token_text(int32_t token) const;  // as stored in tokenizer.ggml.tokens
  TokenType token_type(int32_t token) const;
  int32_t find_token(std::string_view text) const;  // -1 when no token has exactly this text

  int32_t n_vocab() const;
  Model model() const;
  const std::string& pre_tokenizer() const;  // tokenizer.ggml.pre ("default" when absent)
  int32_t bos() const;                       // -1 when the file names none
  int32_t eos() const;
  bool add_bos() const;
  bool add_eos() const;
  // End of generation: EOS, EOT, EOM and the end-of-turn markers llama.cpp recognises by text
  // (<|im_end|>, <|endoftext|>, <|eot_id|> …).
  bool is_eog(int32_t token) const;

  const std::string& chat_template() const;  // the Jinja text; "" when the file has none
  // Renders a conversation with the file's chat template (see ChatTemplate). The result holds
  // the BOS text when the template writes bos_token, so encode it with add_special = false and
  // parse_special = true. Throws ktx::Error(kUnsupported) naming the file when it has no
  // template or one ktx does not recognise.
  std::string apply_chat_template(std::span<const ChatMessage> messages,
                                  bool add_generation_prompt) const;

 private:
  struct Impl;  // lib/tokenizer/tokenizer_impl.h
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace ktx
