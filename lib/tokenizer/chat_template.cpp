// Chat templates without a Jinja engine: a template is recognised by text that only its family
// writes (as llama.cpp's llm_chat_detect_template does), the variant details of the family are
// read from the same text, and C++ renders what the Jinja would. A template that ktx cannot
// render exactly is refused rather than approximated.
#include <fmt/format.h>

#include "ktx/error.h"
#include "ktx/tokenizer.h"

namespace ktx {
namespace {

constexpr std::string_view kImStart = "<|im_start|>";
constexpr std::string_view kImEnd = "<|im_end|>";
constexpr std::string_view kDsUser = "<｜User｜>";
constexpr std::string_view kDsAssistant = "<｜Assistant｜>";
constexpr std::string_view kDsEndOfSentence = "<｜end▁of▁sentence｜>";
constexpr std::string_view kDsToolOutputsBegin = "<｜tool▁outputs▁begin｜>";
constexpr std::string_view kDsToolOutputsEnd = "<｜tool▁outputs▁end｜>";
constexpr std::string_view kDsToolOutputBegin = "<｜tool▁output▁begin｜>";
constexpr std::string_view kDsToolOutputEnd = "<｜tool▁output▁end｜>";

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// Whether the template holds `literal` (which may contain newlines) inside a Jinja string,
// written either with real newlines or with \n escapes.
bool contains_literal(std::string_view tmpl, std::string_view literal) {
  if (contains(tmpl, literal)) return true;
  std::string escaped;
  for (char c : literal) {
    if (c == '\n') {
      escaped += "\\n";
    } else {
      escaped += c;
    }
  }
  return contains(tmpl, escaped);
}

// The start of a template for error messages: one line, at most 60 characters (cut at a UTF-8
// boundary).
std::string excerpt(std::string_view tmpl) {
  std::string out;
  for (char c : tmpl) {
    if (out.size() >= 60 && (static_cast<uint8_t>(c) & 0xC0) != 0x80) {
      out += "…";
      break;
    }
    out += c == '\n' ? ' ' : c;
  }
  return out;
}

[[noreturn]] void unsupported(std::string_view tmpl, std::string_view why) {
  throw Error(ErrorCode::kUnsupported,
              fmt::format("chat template \"{}\" is not supported: {}. ktx renders the chatml, "
                          "deepseek2 (DeepSeek LLM / V2) and deepseek3 (DeepSeek V3 / R1) "
                          "families",
                          excerpt(tmpl), why));
}

// Reads the Jinja string literal that contains position `inside` (between its quotes), with
// Jinja's escapes resolved. Empty when `inside` is not within a quoted string.
std::string string_literal_around(std::string_view tmpl, size_t inside) {
  size_t open = tmpl.find_last_of("'\"", inside);
  if (open == std::string_view::npos) return {};
  char quote = tmpl[open];
  std::string value;
  for (size_t i = open + 1; i < tmpl.size(); ++i) {
    char c = tmpl[i];
    if (c == quote) return i > inside ? value : std::string();
    if (c == '\\' && i + 1 < tmpl.size()) {
      char e = tmpl[++i];
      switch (e) {
        case 'n':
          value += '\n';
          break;
        case 't':
          value += '\t';
          break;
        case 'r':
          value += '\r';
          break;
        case '\\':
          value += '\\';
          break;
        case '\'':
          value += '\'';
          break;
        case '"':
          value += '"';
          break;
        default:
          value += '\\';
          value += e;
          break;
      }
      continue;
    }
    value += c;
  }
  return {};
}

}  // namespace

ChatTemplate ChatTemplate::detect(std::string_view tmpl) {
  ChatTemplate t;
  if (contains(tmpl, kImStart)) {
    if (contains(tmpl, "<|im_sep|>")) unsupported(tmpl, "Phi-4's variant of ChatML");
    if (contains(tmpl, "<end_of_utterance>")) unsupported(tmpl, "SmolVLM's variant of ChatML");
    // Qwen-style templates render tool calls and tool results in their own way.
    if (contains(tmpl, "tool")) unsupported(tmpl, "ChatML with tool-call handling");
    t.kind_ = Family::kChatMl;
    t.family_ = "chatml";
    // SmolLM2's template writes a fixed system turn before the first message when that message
    // is not a system message.
    constexpr std::string_view kDefaultSystemCondition =
        "loop.first and messages[0]['role'] != 'system'";
    size_t condition = tmpl.find(kDefaultSystemCondition);
    size_t system_turn = tmpl.find("<|im_start|>system");
    if (condition != std::string_view::npos) {
      std::string literal = system_turn == std::string_view::npos
                                ? std::string()
                                : string_literal_around(tmpl, system_turn);
      std::string prefix = std::string(kImStart) + "system\n";
      std::string suffix = std::string(kImEnd) + "\n";
      if (system_turn < condition || literal.size() < prefix.size() + suffix.size() ||
          literal.compare(0, prefix.size(), prefix) != 0 ||
          literal.compare(literal.size() - suffix.size(), suffix.size(), suffix) != 0) {
        unsupported(tmpl, "a default system prompt written in a form ktx does not recognise");
      }
      t.default_system_ =
          literal.substr(prefix.size(), literal.size() - prefix.size() - suffix.size());
      t.has_default_system_ = true;
    } else if (system_turn != std::string_view::npos) {
      unsupported(tmpl, "a fixed system turn under a condition ktx does not recognise");
    }
    return t;
  }
  if (contains(tmpl, "'Assistant: ' + message['content'] + eos_token") &&
      contains_literal(tmpl, "'User: ' + message['content'] + '\n\n'")) {
    t.kind_ = Family::kDeepSeek2;
    t.family_ = "deepseek2";
    return t;
  }
  if (contains(tmpl, kDsUser) && contains(tmpl, kDsAssistant) && contains(tmpl, kDsEndOfSentence)) {
    // DeepSeek V3.1 and later switch between thinking and non-thinking prompts.
    if (contains(tmpl, "thinking")) unsupported(tmpl, "DeepSeek's thinking-mode template (V3.1+)");
    if (!contains(tmpl, "ns.system_prompt")) {
      unsupported(tmpl, "a DeepSeek template without the V3/R1 system-prompt handling");
    }
    t.kind_ = Family::kDeepSeek3;
    t.family_ = "deepseek3";
    t.join_system_prompts_ = contains(tmpl, "is_first_sp");
    t.strip_reasoning_ = contains(tmpl, "split('</think>')");
    t.generation_prompt_ = std::string(kDsAssistant);
    if (contains_literal(tmpl, std::string(kDsAssistant) + "<think>\n")) {
      t.generation_prompt_ += "<think>\n";
    }
    if (contains_literal(tmpl, "'\n" + std::string(kDsToolOutputBegin))) {
      t.tool_output_separator_ = "\n";
    }
    return t;
  }
  unsupported(tmpl, "it matches none of the known families");
}

std::string ChatTemplate::render(std::span<const ChatMessage> messages, bool add_generation_prompt,
                                 std::string_view bos_text, std::string_view eos_text) const {
  std::string out;
  switch (kind_) {
    case Family::kChatMl: {
      for (size_t i = 0; i < messages.size(); ++i) {
        if (i == 0 && has_default_system_ && messages[0].role != "system") {
          out += fmt::format("{}system\n{}{}\n", kImStart, default_system_, kImEnd);
        }
        out += fmt::format("{}{}\n{}{}\n", kImStart, messages[i].role, messages[i].content, kImEnd);
      }
      if (add_generation_prompt) out += fmt::format("{}assistant\n", kImStart);
      break;
    }
    case Family::kDeepSeek2: {
      out += bos_text;
      for (const ChatMessage& m : messages) {
        if (m.role == "user") {
          out += fmt::format("User: {}\n\n", m.content);
        } else if (m.role == "assistant") {
          out += fmt::format("Assistant: {}{}", m.content, eos_text);
        } else if (m.role == "system") {
          out += fmt::format("{}\n\n", m.content);
        }
      }
      if (add_generation_prompt) out += "Assistant:";
      break;
    }
    case Family::kDeepSeek3: {
      // All system messages go first, before any turn, wherever they appear.
      std::string system_prompt;
      bool first_system = true;
      for (const ChatMessage& m : messages) {
        if (m.role != "system") continue;
        if (join_system_prompts_ && !first_system) {
          system_prompt += "\n\n" + m.content;
        } else if (join_system_prompts_) {
          system_prompt += m.content;
        } else {
          system_prompt = m.content;
        }
        first_system = false;
      }
      out += bos_text;
      out += system_prompt;
      bool in_tool_outputs = false;
      bool first_tool_output = true;  // never reset: the published templates do not
      for (const ChatMessage& m : messages) {
        if (m.role == "user") {
          in_tool_outputs = false;
          out += fmt::format("{}{}", kDsUser, m.content);
        } else if (m.role == "assistant") {
          if (in_tool_outputs) {
            out += fmt::format("{}{}{}", kDsToolOutputsEnd, m.content, kDsEndOfSentence);
            in_tool_outputs = false;
          } else {
            std::string_view content = m.content;
            size_t think_end = content.rfind("</think>");
            if (strip_reasoning_ && think_end != std::string_view::npos) {
              content.remove_prefix(think_end + std::string_view("</think>").size());
            }
            out += fmt::format("{}{}{}", kDsAssistant, content, kDsEndOfSentence);
          }
        } else if (m.role == "tool") {
          in_tool_outputs = true;
          if (first_tool_output) {
            out += fmt::format("{}{}{}{}", kDsToolOutputsBegin, kDsToolOutputBegin, m.content,
                               kDsToolOutputEnd);
            first_tool_output = false;
          } else {
            out += fmt::format("{}{}{}{}", tool_output_separator_, kDsToolOutputBegin, m.content,
                               kDsToolOutputEnd);
          }
        }
      }
      if (in_tool_outputs) out += kDsToolOutputsEnd;
      if (add_generation_prompt && !in_tool_outputs) out += generation_prompt_;
      break;
    }
  }
  return out;
}

}  // namespace ktx
