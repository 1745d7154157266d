// Rule files from YAML text to a RuleSet: every key and type checked, every error naming the file
// and line (yaml-cpp marks are 0-based; messages are 1-based like editors).
#include <fmt/format.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <fstream>
#include <set>
#include <sstream>

#include "ktx/error.h"
#include "rules/rules.h"
#include "rules/suggest.h"

namespace ktx::rules {
namespace {

using detail::did_you_mean;
using detail::join;

constexpr model::ModuleKind kAllKinds[] = {
    model::ModuleKind::kEmbedding,    model::ModuleKind::kRmsNorm, model::ModuleKind::kMlaAttention,
    model::ModuleKind::kGqaAttention, model::ModuleKind::kMlp,     model::ModuleKind::kMoeGate,
    model::ModuleKind::kExperts,      model::ModuleKind::kLmHead,
};

// KTransformers' kwargs that choose among its own implementations or wire its Python objects;
// ktx makes those choices itself, so they are dropped (with one warning per file).
const std::set<std::string, std::less<>> kKtransformersOnlyKwargs = {
    "generate_op",        "prefill_op",         "out_device",
    "generate_mlp_type",  "prefill_mlp_type",   "per_layer_prefill_intput_threshold",
    "transfer_map",       "absorb_for_prefill", "backend",
    "chunck_size",        "chunk_size",         "use_flashinfer_mla",
    "n_deferred_experts",
};

class Parser {
 public:
  explicit Parser(std::string file) : file_(std::move(file)) {}

  RuleSet parse(const std::string& text) {
    // yaml-cpp would read UTF-16 and NUL bytes as something else and complain about that.
    if (text.starts_with("\xFF\xFE") || text.starts_with("\xFE\xFF")) {
      fail(1, "the file is UTF-16 (it starts with a UTF-16 byte-order mark); save it as UTF-8");
    }
    if (const size_t nul = text.find('\0'); nul != std::string::npos) {
      const int line = 1 + static_cast<int>(std::count(
                               text.begin(), text.begin() + static_cast<ptrdiff_t>(nul), '\n'));
      fail(line, fmt::format("a NUL byte at offset {}: a rule file is UTF-8 text", nul));
    }
    std::vector<YAML::Node> docs;
    try {
      docs = YAML::LoadAll(text);
    } catch (const YAML::Exception& e) {
      fail(e.mark.line + 1, fmt::format("YAML syntax error: {}", e.msg));
    }
    RuleSet set;
    set.source = file_;
    if (docs.size() > 1)
      fail(line_of(docs[1], 1), "a rule file holds one YAML document, not several");
    if (docs.empty() || docs[0].IsNull()) {
      set.warnings.push_back(fmt::format("{}: the file holds no rules", file_));
      return set;
    }
    const YAML::Node& root = docs[0];
    if (!root.IsSequence()) {
      fail(line_of(root, 1),
           fmt::format("a rule file is a list of rules ('- match: ...'), not {}", describe(root)));
    }
    for (const YAML::Node& item : root) set.rules.push_back(parse_rule(item));
    if (!ignored_kwargs_.empty()) {
      std::vector<std::string> keys(ignored_kwargs_.begin(), ignored_kwargs_.end());
      warnings_.push_back(fmt::format(
          "{}:{}: kwargs {} choose among KTransformers' own implementations; ktx ignores them",
          file_, first_ignored_kwarg_line_, join(keys)));
    }
    set.warnings.insert(set.warnings.end(), warnings_.begin(), warnings_.end());
    return set;
  }

 private:
  [[noreturn]] void fail(int line, const std::string& what) const {
    throw Error(ErrorCode::kInvalidFile, fmt::format("{}:{}: {}", file_, line, what));
  }

  static int line_of(const YAML::Node& node, int fallback) {
    const YAML::Mark mark = node.Mark();
    return mark.is_null() || mark.line < 0 ? fallback : mark.line + 1;
  }

  static std::string describe(const YAML::Node& node) {
    switch (node.Type()) {
      case YAML::NodeType::Null:
        return "empty";
      case YAML::NodeType::Scalar:
        return fmt::format("the value '{}'", node.Scalar());
      case YAML::NodeType::Sequence:
        return "a list";
      case YAML::NodeType::Map:
        return "a mapping";
      default:
        return "undefined";
    }
  }

  std::string scalar(const YAML::Node& node, int line, std::string_view what) const {
    if (!node.IsScalar())
      fail(line, fmt::format("{} must be a string, not {}", what, describe(node)));
    return node.Scalar();
  }

  // Visits the keys of a mapping, refusing unknown and repeated ones.
  template <class F>
  void for_each_key(const YAML::Node& map, int line, std::string_view what,
                    const std::vector<std::string>& known, F&& f) const {
    if (!map.IsMap())
      fail(line, fmt::format("{} must be a mapping (key: value), not {}", what, describe(map)));
    std::set<std::string> seen;
    for (auto it = map.begin(); it != map.end(); ++it) {
      const int key_line = line_of(it->first, line);
      const std::string key = scalar(it->first, key_line, fmt::format("a key of {}", what));
      if (!known.empty() && std::find(known.begin(), known.end(), key) == known.end()) {
        fail(key_line, fmt::format("unknown key '{}' in {}{}; expected {}", key, what,
                                   did_you_mean(key, known), join(known)));
      }
      if (!seen.insert(key).second)
        fail(key_line, fmt::format("'{}' is given twice in {}", key, what));
      f(key, it->second, key_line);
    }
  }

  registry::Device device(const YAML::Node& node, int line, std::string_view what) const {
    const std::string text = scalar(node, line, what);
    std::optional<registry::Device> d = registry::parse_device(text);
    if (!d)
      fail(line, fmt::format("{}: '{}' is not a device; write cpu, cuda, cuda:N or <backend>:N",
                             what, text));
    return *d;
  }

  std::vector<model::ModuleKind> kinds(const YAML::Node& node, int line) const {
    std::vector<std::string> names;
    for (model::ModuleKind k : kAllKinds) names.emplace_back(model::module_kind_name(k));
    std::vector<model::ModuleKind> out;
    auto one = [&](const YAML::Node& n) {
      const int l = line_of(n, line);
      const std::string text = scalar(n, l, "match.kind");
      std::optional<model::ModuleKind> k = model::module_kind_from_name(text);
      if (!k) {
        fail(l, fmt::format("unknown module kind '{}'{}; expected one of {}", text,
                            did_you_mean(text, names), join(names)));
      }
      out.push_back(*k);
    };
    if (node.IsSequence()) {
      if (node.size() == 0) fail(line, "match.kind is an empty list");
      for (const YAML::Node& n : node) one(n);
    } else {
      one(node);
    }
    return out;
  }

  Rule parse_rule(const YAML::Node& item) {
    const int line = line_of(item, 1);
    if (!item.IsMap()) {
      fail(line,
           fmt::format("each rule is a mapping with match: and replace:, not {}", describe(item)));
    }
    Rule rule;
    rule.file = file_;
    rule.line = line;
    YAML::Node match, replace;
    bool has_match = false, has_replace = false;
    int match_line = line, replace_line = line;
    for_each_key(item, line, "a rule", {"match", "replace", "recursive"},
                 [&](const std::string& key, const YAML::Node& value, int key_line) {
                   if (key == "match") {
                     match = value;
                     has_match = true;
                     match_line = key_line;
                   } else if (key == "replace") {
                     replace = value;
                     has_replace = true;
                     replace_line = key_line;
                   } else {
                     if (!value.IsScalar()) {
                       fail(key_line, fmt::format("recursive must be true or false, not {}",
                                                  describe(value)));
                     }
                     bool b = true;
                     if (!YAML::convert<bool>::decode(value, b)) {
                       fail(key_line, fmt::format("recursive must be true or false, not '{}'",
                                                  value.Scalar()));
                     }
                     rule.recursive = b;
                   }
                 });
    if (!has_match) fail(line, "the rule has no match:");
    if (!has_replace) fail(line, "the rule has no replace:");
    // The dialect decides how the name pattern matches, so look at replace first.
    const YAML::Node& const_replace = replace;  // const: operator[] must not insert
    if (const_replace.IsMap() && const_replace["class"]) rule.ktransformers = true;
    parse_match(rule, match, match_line);
    parse_replace(rule, replace, replace_line);
    if (rule.ignored) {
      warnings_.push_back(fmt::format("{}: rule ignored: {}", rule.where(), rule.ignored_why));
    }
    return rule;
  }

  void parse_match(Rule& rule, const YAML::Node& match, int line) {
    bool any = false;
    for_each_key(
        match, line, "match", {"name", "kind", "class"},
        [&](const std::string& key, const YAML::Node& value, int key_line) {
          any = true;
          if (key == "name") {
            const std::string pattern = scalar(value, key_line, "match.name");
            std::string error;
            NameRegex re = NameRegex::compile(pattern, &error);
            if (!re.valid()) {
              fail(key_line, fmt::format("bad regular expression '{}': {}", pattern, error));
            }
            rule.name = std::move(re);
            rule.name_line = key_line;
          } else if (key == "kind") {
            rule.kinds = kinds(value, key_line);
          } else {
            rule.match_class = scalar(value, key_line, "match.class");
            std::optional<ClassMapping> m = match_class_mapping(rule.match_class);
            if (!m) {
              fail(key_line, fmt::format("match.class '{}' is a class ktx does not know; match "
                                         "modules with kind: (one of embedding, rms_norm, "
                                         "mla_attention, gqa_attention, mlp, moe_gate, experts, "
                                         "lm_head) instead — docs/RULES.md lists the classes ktx "
                                         "translates",
                                         rule.match_class));
            }
            if (m->action == ClassMapping::Action::kIgnored) {
              rule.ignored = true;
              rule.ignored_why = fmt::format("match.class {}: {}", rule.match_class, m->note);
            } else {
              rule.class_kinds = m->kinds;
            }
          }
        });
    if (!any) fail(line, "match: needs name:, kind: or class:");
  }

  void parse_replace(Rule& rule, const YAML::Node& replace, int line) {
    if (replace.IsNull()) return;  // `replace:` alone: the defaults, pinned explicitly
    for_each_key(
        replace, line, "replace",
        {"op", "class", "device", "generate_device", "prefill_device", "kwargs"},
        [&](const std::string& key, const YAML::Node& value, int key_line) {
          if (key == "op") {
            rule.op = scalar(value, key_line, "replace.op");
            rule.op_line = key_line;
            if (rule.op == "default") rule.op.clear();
            if (replace["class"]) {
              fail(key_line,
                   "replace: has both op: (a ktx operator) and class: (a KTransformers "
                   "class); keep one");
            }
          } else if (key == "class") {
            rule.replace_class = scalar(value, key_line, "replace.class");
            rule.op_line = key_line;
            std::optional<ClassMapping> m = replace_class_mapping(rule.replace_class);
            if (!m) {
              fail(key_line,
                   fmt::format("replace.class '{}' has no ktx counterpart; name a ktx operator "
                               "with op: instead (e.g. op: cpu.experts) — docs/RULES.md lists "
                               "the KTransformers classes ktx translates",
                               rule.replace_class));
            }
            if (m->action == ClassMapping::Action::kIgnored) {
              if (!rule.ignored) {
                rule.ignored = true;
                rule.ignored_why = fmt::format("replace.class {}: {}", rule.replace_class, m->note);
              }
            } else if (!m->kinds.empty()) {
              rule.class_kind = m->kinds[0];
            }
          } else if (key == "kwargs") {
            parse_kwargs(rule, value, key_line);
          } else {
            set_device(rule, key, value, key_line);
          }
        });
  }

  void set_device(Rule& rule, const std::string& key, const YAML::Node& value, int key_line) {
    const registry::Device d = device(value, key_line, key);
    auto set = [&](std::optional<registry::Device>& slot, int& slot_line) {
      if (slot) {
        fail(key_line,
             fmt::format("{} is given twice (replace.{} and replace.kwargs.{})", key, key, key));
      }
      slot = d;
      slot_line = key_line;
    };
    if (key == "device") {
      set(rule.device, rule.device_line);
    } else if (key == "generate_device") {
      set(rule.generate_device, rule.generate_device_line);
    } else {
      set(rule.prefill_device, rule.prefill_device_line);
    }
  }

  void parse_kwargs(Rule& rule, const YAML::Node& kwargs, int line) {
    if (kwargs.IsNull()) return;
    for_each_key(kwargs, line, "replace.kwargs", {},
                 [&](const std::string& key, const YAML::Node& value, int key_line) {
                   // Devices are placement, not operator options, in either dialect.
                   if (key == "generate_device" || key == "prefill_device") {
                     rule.ktransformers = rule.ktransformers || !rule.replace_class.empty();
                     set_device(rule, key, value, key_line);
                     return;
                   }
                   if (rule.ktransformers && kKtransformersOnlyKwargs.count(key) != 0) {
                     if (ignored_kwargs_.empty()) first_ignored_kwarg_line_ = key_line;
                     ignored_kwargs_.insert(key);
                     return;
                   }
                   if (!value.IsScalar()) {
                     fail(key_line, fmt::format("replace.kwargs.{} must be a single value, not {}",
                                                key, describe(value)));
                   }
                   rule.kwargs[key] = value.Scalar();
                 });
  }

  std::string file_;
  std::vector<std::string> warnings_;
  std::set<std::string> ignored_kwargs_;
  int first_ignored_kwarg_line_ = 0;
};

}  // namespace

std::string Rule::where() const { return fmt::format("{}:{}", file, line); }

bool Rule::matches(const model::ModuleDesc& module) const {
  if (ignored) return false;
  if (!kinds.empty() && std::find(kinds.begin(), kinds.end(), module.kind) == kinds.end()) {
    return false;
  }
  if (class_kinds &&
      std::find(class_kinds->begin(), class_kinds->end(), module.kind) == class_kinds->end()) {
    return false;
  }
  if (!name) return true;
  try {
    return ktransformers ? name->search(module.name) : name->full_match(module.name);
  } catch (const Error& e) {
    throw Error(e.code(), fmt::format("{}:{}: {}", file, name_line, e.what()));
  }
}

RuleSet parse_rules(const std::string& text, const std::string& name) {
  return Parser(name).parse(text);
}

RuleSet load_rules(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(ErrorCode::kIo, fmt::format("{}: cannot open the rule file", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) throw Error(ErrorCode::kIo, fmt::format("{}: cannot read the rule file", path));
  return parse_rules(text.str(), path);
}

}  // namespace ktx::rules
