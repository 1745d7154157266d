// `ktx make-model OUT.gguf [--model NAME] [--layers N ...] [--type T | --preset P]`: writes a
// GGUF model with seeded random weights in any supported shape and type, for tests, benchmarks
// and users without a model at hand (lib/model/random_model.h).
#include <fmt/format.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <optional>
#include <string>

#include "args.h"
#include "commands.h"
#include "core/output_path.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/quantize.h"
#include "model/random_model.h"

namespace ktx::cli {
namespace {

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;

// The types --type accepts: those ktx can write as weights (not the activation-only Q8_1/Q8_K).
std::string writable_types() {
  std::string out;
  for (uint32_t id = 0; id < 64; ++id) {
    const auto t = type_traits(id);
    if (!t || !quant::can_quantize(t->type) || t->type == TensorType::Q8_1 ||
        t->type == TensorType::Q8_K) {
      continue;
    }
    out += fmt::format("{}{}", out.empty() ? "" : ", ", t->name);
  }
  return out;
}

void print_help(std::FILE* out) {
  fmt::print(out,
             "usage: ktx make-model OUT.gguf [--model NAME | --arch deepseek2|llama] [shape "
             "options]\n"
             "                       [--type T | --preset P] [--seed N] [--threads N]\n"
             "\n"
             "Writes a GGUF model with random weights: the keys and tensors llama.cpp's converter\n"
             "writes, seeded (same seed, same bytes) and scaled so activations stay near unit "
             "size.\n"
             "No tokenizer is written unless --vocab-from names a GGUF to copy it from.\n"
             "\nmodel presets (--model; default tiny-deepseek2; --arch A = --model tiny-A):\n");
  for (const model::RandomModelPreset& p : model::random_model_presets()) {
    fmt::print(out, "  {:<18} {}\n", p.name, p.description);
  }
  fmt::print(out,
             "\nshape (each overrides the preset):\n"
             "  --layers N           block_count\n"
             "  --hidden N           embedding_length (n_embd)\n"
             "  --heads N            attention heads (n_head)\n"
             "  --kv-heads N         llama: key/value heads (n_head_kv)\n"
             "  --head-dim N         llama: head size (default hidden / heads)\n"
             "  --ff N               dense FFN width (n_ff; llama MoE: expert width too)\n"
             "  --vocab N            vocabulary size (rows of token_embd)\n"
             "  --context N          context_length\n"
             "  --q-lora-rank N      deepseek2: query compression (0: attn_q, as V2-Lite)\n"
             "  --kv-lora-rank N     deepseek2: latent width\n"
             "  --qk-nope N          deepseek2: per-head key width without RoPE\n"
             "  --qk-rope N          deepseek2: RoPE width (even)\n"
             "  --v-head N           deepseek2: per-head value width\n"
             "  --kv-b fused|split   deepseek2: attn_kv_b, or attn_k_b + attn_v_b (newer files)\n"
             "  --experts N          routed experts (0: dense)\n"
             "  --experts-used N     experts per token (n_expert_used)\n"
             "  --shared-experts N   deepseek2: shared experts\n"
             "  --expert-ff N        deepseek2: expert FFN width\n"
             "  --dense-layers N     deepseek2: leading dense layers\n"
             "  --gating softmax|sigmoid\n"
             "  --expert-bias yes|no deepseek2: exp_probs_b (V3's selection bias)\n"
             "  --weights-norm yes|no, --weights-scale X   routing weight normalisation, scale\n"
             "  --groups N, --groups-used N                group-limited routing (0: none)\n"
             "  --yarn yes|no        YaRN rope scaling keys\n"
             "  --tied yes|no        no output.weight: token_embd is the output projection\n"
             "\ntypes:\n"
             "  --type T             every matrix in T (default F16); a row T's block does not\n"
             "                       fit takes llama.cpp's substitute\n"
             "                       (Q4_K -> Q5_0, Q6_K -> Q8_0 ...), F16 when none fits;\n"
             "                       norms, biases and the expert router stay F32\n"
             "  --embd-type T        token_embd with --type (default T)\n"
             "  --preset P           llama-quantize's per-tensor mix of P (ktx quantize --help)\n"
             "  types ktx writes: {}\n"
             "\nother:\n"
             "  --seed N             weights seed (default 1)\n"
             "  --threads N          generating threads (default: all)\n"
             "  --vocab-from FILE    copy tokenizer.* keys from FILE (--vocab defaults to its "
             "size)\n"
             "  --name TEXT          general.name\n"
             "  --dry-run            list tensors, types and size; write nothing\n",
             writable_types());
}

TensorType parse_type(const Args& args, const std::string& flag, const std::string& name) {
  const std::optional<TensorType> type = type_from_name(name);
  if (!type || !quant::can_quantize(*type) || *type == TensorType::Q8_1 ||
      *type == TensorType::Q8_K) {
    args.fail(fmt::format("--{} {}: expected one of {}", flag, name, writable_types()));
  }
  return *type;
}

bool parse_yes_no(const Args& args, const std::string& flag, bool fallback) {
  const std::optional<std::string> v = args.option(flag);
  if (!v) return fallback;
  if (*v == "yes" || *v == "true" || *v == "on" || *v == "1") return true;
  if (*v == "no" || *v == "false" || *v == "off" || *v == "0") return false;
  args.fail(fmt::format("--{} takes yes or no, not '{}'", flag, *v));
}

float parse_float(const Args& args, const std::string& flag, float fallback) {
  const std::optional<std::string> v = args.option(flag);
  if (!v) return fallback;
  float out = 0;
  const auto [end, ec] = std::from_chars(v->data(), v->data() + v->size(), out);
  if (ec != std::errc() || end != v->data() + v->size()) {
    args.fail(fmt::format("--{} must be a number, not '{}'", flag, *v));
  }
  return out;
}

// The spec the command line describes: a preset, then each override.
model::RandomModelSpec spec_from(const Args& args) {
  const std::optional<std::string> preset_name = args.option("model");
  const std::optional<std::string> arch = args.option("arch");
  if (preset_name && arch) args.fail("give --model or --arch, not both");
  if (arch && *arch != "deepseek2" && *arch != "llama") {
    args.fail(fmt::format("--arch {}: expected deepseek2 or llama", *arch));
  }
  model::RandomModelSpec s = model::random_model_preset(preset_name ? *preset_name
                                                        : arch      ? "tiny-" + *arch
                                                               : std::string("tiny-deepseek2"));

  constexpr int64_t kMax = (1ll << 31) - 1;
  auto size = [&](const char* flag, int64_t& field, int64_t min) {
    field = args.int_option(flag, field, min, kMax);
  };
  size("layers", s.n_layer, 1);
  size("hidden", s.n_embd, 1);
  size("heads", s.n_head, 1);
  size("kv-heads", s.n_head_kv, 1);
  size("head-dim", s.head_dim, 2);
  size("ff", s.n_ff, 1);
  size("vocab", s.n_vocab, 1);
  size("context", s.n_ctx, 1);
  size("q-lora-rank", s.q_lora_rank, 0);
  size("kv-lora-rank", s.kv_lora_rank, 1);
  size("qk-nope", s.qk_nope, 1);
  size("qk-rope", s.qk_rope, 2);
  size("v-head", s.v_head, 1);
  size("experts", s.n_expert, 0);
  size("experts-used", s.n_expert_used, 1);
  size("shared-experts", s.n_expert_shared, 0);
  size("expert-ff", s.n_ff_exp, 1);
  size("dense-layers", s.n_layer_dense_lead, 0);
  size("groups", s.n_group, 0);
  size("groups-used", s.n_group_used, 0);
  if (s.n_group == 0 && args.option("groups-used") && s.n_group_used > 0) {
    args.fail("--groups-used needs --groups (expert groups to choose from)");
  }
  if (s.n_group == 0) s.n_group_used = 0;
  // Shape options of the other architecture would be ignored without a word.
  const bool llama = s.arch == "llama";
  for (const char* flag :
       {"q-lora-rank", "kv-lora-rank", "qk-nope", "qk-rope", "v-head", "kv-b", "gating",
        "expert-bias", "weights-norm", "weights-scale", "shared-experts", "dense-layers"}) {
    if (llama && args.option(flag)) {
      args.fail(fmt::format("--{} shapes DeepSeek's layers; the model is llama", flag));
    }
  }
  for (const char* flag : {"kv-heads", "head-dim"}) {
    if (!llama && args.option(flag)) {
      args.fail(
          fmt::format("--{} shapes llama's attention; the model is deepseek2 (MLA: "
                      "--kv-lora-rank, --qk-nope, --qk-rope, --v-head)",
                      flag));
    }
  }
  if (args.option("heads") && !args.option("kv-heads") && s.arch == "llama" &&
      s.n_head % s.n_head_kv != 0) {
    args.fail(
        fmt::format("--heads {} is not a multiple of the preset's {} key/value heads; "
                    "give --kv-heads",
                    s.n_head, s.n_head_kv));
  }
  if (const auto kv_b = args.option("kv-b")) {
    if (*kv_b != "fused" && *kv_b != "split") {
      args.fail(fmt::format("--kv-b takes fused or split, not '{}'", *kv_b));
    }
    s.split_kv_b = *kv_b == "split";
  }
  if (const auto gating = args.option("gating")) {
    if (*gating != "softmax" && *gating != "sigmoid") {
      args.fail(fmt::format("--gating takes softmax or sigmoid, not '{}'", *gating));
    }
    s.gating = *gating == "softmax" ? 1 : 2;
  }
  s.exp_probs_bias = parse_yes_no(args, "expert-bias", s.exp_probs_bias);
  s.weights_norm = parse_yes_no(args, "weights-norm", s.weights_norm);
  s.weights_scale = parse_float(args, "weights-scale", s.weights_scale);
  s.yarn = parse_yes_no(args, "yarn", s.yarn);
  s.tied = parse_yes_no(args, "tied", s.tied);
  s.seed = static_cast<uint64_t>(args.int_option("seed", 1, 0, INT64_MAX));
  if (const auto name = args.option("name")) s.name = *name;

  const std::optional<std::string> type = args.option("type");
  const std::optional<std::string> preset = args.option("preset");
  if (type && preset) args.fail("give --type or --preset, not both");
  if (preset) {
    if (args.option("embd-type")) args.fail("--embd-type goes with --type, not --preset");
    s.preset = quantize::parse_preset(*preset);
  } else {
    s.weight_type = type ? parse_type(args, "type", *type) : TensorType::F16;
    s.embd_type = args.option("embd-type")
                      ? parse_type(args, "embd-type", *args.option("embd-type"))
                      : s.weight_type;
  }

  if (const auto vocab_from = args.option("vocab-from")) {
    s.tokenizer_from = *vocab_from;
    if (!args.option("vocab")) {
      const gguf::File donor = gguf::File::open(*vocab_from);
      const gguf::Value* tokens = donor.find("tokenizer.ggml.tokens");
      if (tokens == nullptr || tokens->strings() == nullptr) {
        args.fail(fmt::format("--vocab-from {}: no tokenizer.ggml.tokens list in it", *vocab_from));
      }
      s.n_vocab = static_cast<int64_t>(tokens->array_size());
    }
  }
  return s;
}

std::string shape_string(const std::vector<int64_t>& shape) {
  std::string out;
  for (int64_t d : shape) out += fmt::format("{}{}", out.empty() ? "" : " x ", d);
  return out;
}

// 1.09 B, 72.4 M, 9.3 K, 512.
std::string count_string(uint64_t n) {
  if (n >= 1000000000) return fmt::format("{:.2f} B", n / 1e9);
  if (n >= 1000000) return fmt::format("{:.1f} M", n / 1e6);
  if (n >= 1000) return fmt::format("{:.1f} K", n / 1e3);
  return fmt::format("{}", n);
}

std::string bytes_string(uint64_t n) {
  if (n >= (uint64_t{1} << 30)) return fmt::format("{:.2f} GiB", n / kGiB);
  if (n >= (uint64_t{1} << 20)) return fmt::format("{:.1f} MiB", n / (1024.0 * 1024.0));
  return fmt::format("{:.1f} KiB", n / 1024.0);
}

double bits_per_weight(uint64_t bytes, uint64_t elements) {
  return elements == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / static_cast<double>(elements);
}

std::string types_string(const std::vector<quantize::TypeCount>& types) {
  std::string out;
  for (const quantize::TypeCount& c : types) {
    out += fmt::format("{}{} {} ({})", out.empty() ? "" : ", ", type_name(c.type), c.tensors,
                       bytes_string(c.bytes));
  }
  return out;
}

}  // namespace

int run_make_model(const std::vector<std::string>& argv) {
  Args args(
      "make-model", argv, {"help", "dry-run"},
      {"model",          "arch",      "layers",       "hidden",  "heads",       "kv-heads",
       "head-dim",       "ff",        "vocab",        "context", "q-lora-rank", "kv-lora-rank",
       "qk-nope",        "qk-rope",   "v-head",       "kv-b",    "experts",     "experts-used",
       "shared-experts", "expert-ff", "dense-layers", "gating",  "expert-bias", "weights-norm",
       "weights-scale",  "groups",    "groups-used",  "yarn",    "tied",        "type",
       "embd-type",      "preset",    "seed",         "threads", "vocab-from",  "name"});
  if (args.flag("help")) {
    print_help(stdout);
    return 0;
  }
  const std::string out = args.positional({"OUT.gguf"})[0];
  core::refuse_output_path(out, {args.option("vocab-from").value_or("")}, "OUT.gguf");
  const model::RandomModelSpec spec = spec_from(args);

  if (args.flag("dry-run")) {
    const std::vector<model::RandomTensor> tensors = model::random_model_tensors(spec);
    uint64_t bytes = 0, elements = 0;
    for (const model::RandomTensor& t : tensors) {
      fmt::print("{:<32} {:<22} {:<7} {}\n", t.name, shape_string(t.shape), type_name(t.type),
                 t.why);
      bytes += t.n_bytes;
      elements += t.n_elements;
    }
    fmt::print("{} tensors, {} parameters, {} ({:.2f} bits/weight); nothing written\n",
               tensors.size(), count_string(elements), bytes_string(bytes),
               bits_per_weight(bytes, elements));
    return 0;
  }

  model::RandomModelOptions options;
  options.threads = static_cast<int>(args.int_option("threads", 0, 0, 4096));
  const bool terminal = isatty(fileno(stderr)) != 0;
  if (terminal) {
    options.progress = [](const model::RandomModelProgress& p) {
      fmt::print(stderr, "\r\033[K[{}/{}] {:5.1f}% of {}  {} {}", p.done, p.count,
                 p.bytes_total == 0 ? 100.0 : 100.0 * p.bytes_done / p.bytes_total,
                 bytes_string(p.bytes_total), p.tensor->name, type_name(p.tensor->type));
      if (p.done == p.count) fmt::print(stderr, "\n");
    };
  }
  const model::RandomModelSummary s = model::write_random_model(spec, out, options);
  fmt::print(
      "wrote {}: {} tensors, {} parameters, {} ({:.2f} bits/weight), {} fallback(s), in "
      "{:.1f} s\n  types: {}\n",
      out, s.n_tensors, count_string(s.n_elements), bytes_string(s.n_bytes),
      bits_per_weight(s.n_bytes, s.n_elements), s.n_fallback, s.seconds, types_string(s.types));
  return 0;
}

}  // namespace ktx::cli
