// Session files: a session's tokens, logits and filled cache rows as a GGUF file of its own kind
// (general.type "ktx.session"), so that a long prompt is evaluated once and restored later, in
// another process. The layout is in docs/SESSIONS.md ("The file"); everything read back is
// checked before the session is touched.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include "core/checksum.h"
#include "core/output_path.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "runtime/session.h"

namespace ktx::runtime {
namespace {

constexpr std::string_view kType = "ktx.session";
constexpr uint32_t kVersion = 1;
constexpr std::string_view kKeyVersion = "ktx.session.version";
constexpr std::string_view kKeyModelName = "ktx.session.model.name";
constexpr std::string_view kKeyModelArch = "ktx.session.model.architecture";
constexpr std::string_view kKeyModelFingerprint = "ktx.session.model.fingerprint";
constexpr std::string_view kKeyNCtx = "ktx.session.n_ctx";
constexpr std::string_view kKeyChecksums = "ktx.session.checksums";
constexpr std::string_view kTokens = "tokens";
constexpr std::string_view kLogits = "logits";

std::string model_name(const gguf::File& file) {
  if (const gguf::Value* v = file.find("general.name");
      v && v->as_string() && !v->as_string()->empty()) {
    return *v->as_string();
  }
  return std::filesystem::path(file.paths().front()).filename().string();
}

// The cache tensors of layer il, in the model's vocabulary: MLA keeps the compressed latent and
// the rotary key part, GQA keys and values.
std::pair<std::string, std::string> cache_names(const model::ModelConfig& config, size_t il) {
  if (config.arch == model::Architecture::kDeepseek2) {
    return {fmt::format("blk.{}.cache_kv_latent", il), fmt::format("blk.{}.cache_k_pe", il)};
  }
  return {fmt::format("blk.{}.cache_k", il), fmt::format("blk.{}.cache_v", il)};
}

std::string hex(uint64_t v) { return fmt::format("{:016x}", v); }

[[noreturn]] void refuse(ErrorCode code, const std::string& path, const std::string& what) {
  throw Error(code, fmt::format("{}: {}", path, what));
}

}  // namespace

void Session::save(const std::string& path) const {
  const gguf::File& model_file = model_->file();
  core::refuse_output_path(path, model_file.paths(), "the session file");
  const model::ModelConfig& config = model_->config();
  const int64_t n = position();

  gguf::Writer writer;
  writer.set_metadata("general.type", gguf::Value::string(std::string(kType)));
  writer.set_metadata(std::string(kKeyVersion), gguf::Value::uint32(kVersion));
  writer.set_metadata(std::string(kKeyModelName), gguf::Value::string(model_name(model_file)));
  writer.set_metadata(std::string(kKeyModelArch), gguf::Value::string(config.arch_name));
  writer.set_metadata(std::string(kKeyModelFingerprint),
                      gguf::Value::uint64(model_->fingerprint()));
  writer.set_metadata(std::string(kKeyNCtx), gguf::Value::uint64(static_cast<uint64_t>(n_ctx())));

  std::vector<uint64_t> checksums;
  auto add = [&](std::string name, TensorType type, std::vector<int64_t> shape, const void* data,
                 uint64_t n_bytes) {
    checksums.push_back(core::checksum(data, n_bytes));
    writer.add_tensor(std::move(name), type, std::move(shape), data, n_bytes, /*borrow=*/true);
  };
  add(std::string(kTokens), TensorType::I32, {n}, tokens_.data(), tokens_.size() * sizeof(int32_t));
  if (!logits_.empty()) {
    add(std::string(kLogits), TensorType::F32, {static_cast<int64_t>(logits_.size())},
        logits_.data(), logits_.size() * sizeof(float));
  }
  // Rows [0, n) of each cache, read in place from host memory or copied out of an
  // accelerator's (kept alive here until the file is written).
  std::vector<std::vector<float>> copies;
  copies.reserve(2 * cache_.layers.size());  // the writer borrows them: never reallocated
  for (size_t il = 0; il < cache_.layers.size(); ++il) {
    const LayerKvCache& l = cache_.layers[il];
    const float* a = l.a.data();
    const float* b = l.b.data();
    if (!model_->cache_on_host(il)) {
      std::vector<float>& ca = copies.emplace_back(static_cast<size_t>(n * l.width_a));
      std::vector<float>& cb = copies.emplace_back(static_cast<size_t>(n * l.width_b));
      model_->read_cache_rows(cache_, il, n, ca.data(), cb.data());
      a = ca.data();
      b = cb.data();
    }
    auto [name_a, name_b] = cache_names(config, il);
    add(std::move(name_a), TensorType::F32, {l.width_a, n}, a,
        static_cast<uint64_t>(n * l.width_a) * sizeof(float));
    add(std::move(name_b), TensorType::F32, {l.width_b, n}, b,
        static_cast<uint64_t>(n * l.width_b) * sizeof(float));
  }
  writer.set_metadata(std::string(kKeyChecksums), gguf::Value::uint64_array(checksums));
  writer.write(path);
}

void Session::load(const std::string& path) {
  const gguf::File file = gguf::File::open(path);
  const gguf::Value* type = file.find("general.type");
  if (type == nullptr || type->as_string() == nullptr || *type->as_string() != kType) {
    const bool model = file.find("general.architecture") != nullptr;
    refuse(ErrorCode::kInvalidFile, path,
           fmt::format("not a ktx session file (general.type is {}, not \"{}\"){}",
                       type ? type->to_display_string() : "absent", kType,
                       model ? ": it looks like a model; a session file is what "
                               "ktx_session_save (Session.save, ktx generate --prompt-cache) writes"
                             : ""));
  }
  if (file.alignment() % alignof(float) != 0) {
    // ktx writes 32; a smaller alignment could place the cache's floats at odd addresses.
    refuse(ErrorCode::kInvalidFile, path,
           fmt::format("general.alignment is {}; a session file's is a multiple of {}",
                       file.alignment(), alignof(float)));
  }
  const int64_t version = file.get_int(kKeyVersion);
  if (version != kVersion) {
    refuse(ErrorCode::kUnsupported, path,
           fmt::format("session file version {} ({}); this ktx reads version {}", version,
                       kKeyVersion, kVersion));
  }

  const gguf::File& model_file = model_->file();
  const model::ModelConfig& config = model_->config();
  const auto saved_fingerprint = file.find(kKeyModelFingerprint);
  if (saved_fingerprint == nullptr || !saved_fingerprint->as_uint()) {
    refuse(ErrorCode::kInvalidFile, path,
           fmt::format("{} is missing or not an unsigned integer", kKeyModelFingerprint));
  }
  const uint64_t ours = model_->fingerprint();
  if (*saved_fingerprint->as_uint() != ours) {
    const gguf::Value* name = file.find(kKeyModelName);
    const gguf::Value* arch = file.find(kKeyModelArch);
    refuse(ErrorCode::kInvalidArgument, path,
           fmt::format("saved from another model: {} ({}, fingerprint {}); this session's model "
                       "is {} ({}, fingerprint {}, {})",
                       name && name->as_string() ? *name->as_string() : "?",
                       arch && arch->as_string() ? *arch->as_string() : "?",
                       hex(*saved_fingerprint->as_uint()), model_name(model_file), config.arch_name,
                       hex(ours), model_file.paths().front()));
  }

  // Every tensor: expected, of its type and shape, and matching its checksum.
  const gguf::TensorInfo* tokens = file.find_tensor(kTokens);
  if (tokens == nullptr) refuse(ErrorCode::kInvalidFile, path, "no tensor \"tokens\"");
  if (tokens->type != TensorType::I32 || tokens->shape.size() != 1) {
    refuse(ErrorCode::kInvalidFile, path,
           fmt::format("tensor \"tokens\" must be I32 with one dimension, not {} {}",
                       type_name(tokens->type), fmt::join(tokens->shape, "x")));
  }
  const int64_t n = tokens->shape[0];
  if (n > n_ctx()) {
    refuse(ErrorCode::kInvalidArgument, path,
           fmt::format("holds {} tokens, more than this session's context of {}: it needs a "
                       "session with n_ctx (ktx's --ctx) of at least {}",
                       n, n_ctx(), n));
  }
  const gguf::Value* sums = file.find(kKeyChecksums);
  if (sums == nullptr || !sums->is_array() || sums->array_type() != gguf::ValueType::UINT64 ||
      sums->array_size() != file.tensors().size()) {
    refuse(ErrorCode::kInvalidFile, path,
           fmt::format("{} must be an array of UINT64, one per tensor ({})", kKeyChecksums,
                       file.tensors().size()));
  }
  // The cache tensors this model's layers need, in layer order (a then b), with their widths.
  std::vector<std::pair<std::string, int64_t>> cache_specs;
  for (size_t il = 0; il < cache_.layers.size(); ++il) {
    auto [a, b] = cache_names(config, il);
    cache_specs.emplace_back(std::move(a), cache_.layers[il].width_a);
    cache_specs.emplace_back(std::move(b), cache_.layers[il].width_b);
  }
  const gguf::TensorInfo* logits = file.find_tensor(kLogits);
  for (size_t i = 0; i < file.tensors().size(); ++i) {
    const gguf::TensorInfo& t = file.tensors()[i];
    const bool expected = t.name == kTokens || t.name == kLogits ||
                          std::any_of(cache_specs.begin(), cache_specs.end(),
                                      [&](const auto& spec) { return spec.first == t.name; });
    if (!expected) {
      refuse(ErrorCode::kInvalidFile, path,
             fmt::format("unexpected tensor \"{}\" (a session of this {}-layer {} model holds "
                         "tokens, logits and blk.N cache tensors)",
                         t.name, config.n_layer, config.arch_name));
    }
    if (core::checksum(t.data, t.n_bytes) != *sums->uint_at(i)) {
      refuse(ErrorCode::kInvalidFile, path,
             fmt::format("tensor \"{}\" does not match its checksum ({}, entry {}): the file is "
                         "damaged",
                         t.name, kKeyChecksums, i));
    }
  }
  std::vector<const gguf::TensorInfo*> cache_tensors;
  for (size_t k = 0; k < cache_specs.size(); ++k) {
    const auto& [name, width] = cache_specs[k];
    const gguf::TensorInfo* t = file.find_tensor(name);
    if (t == nullptr) {
      refuse(ErrorCode::kInvalidFile, path,
             fmt::format("no tensor \"{}\" (layer {} of {})", name, k / 2, config.n_layer));
    }
    if (t->type != TensorType::F32 || t->shape != std::vector<int64_t>{width, n}) {
      refuse(ErrorCode::kInvalidFile, path,
             fmt::format("tensor \"{}\" must be F32 {}x{} ({} values a position, {} "
                         "positions), not {} {}",
                         name, width, n, width, n, type_name(t->type), fmt::join(t->shape, "x")));
    }
    // A cache value that is not finite makes every later logit NaN: refused here, where the
    // file is to blame, not at the next token as if the model were.
    const float* values = reinterpret_cast<const float*>(t->data);
    for (uint64_t i = 0; i < t->n_elements; ++i) {
      if (!std::isfinite(values[i])) {
        refuse(ErrorCode::kInvalidFile, path,
               fmt::format("tensor \"{}\" holds {} at position {}, element {}", name, values[i],
                           i / static_cast<uint64_t>(width), i % static_cast<uint64_t>(width)));
      }
    }
    cache_tensors.push_back(t);
  }
  std::vector<int32_t> new_tokens(static_cast<size_t>(n));
  if (n > 0) std::memcpy(new_tokens.data(), tokens->data, tokens->n_bytes);
  for (size_t i = 0; i < new_tokens.size(); ++i) {
    if (new_tokens[i] < 0 || new_tokens[i] >= config.n_vocab) {
      refuse(ErrorCode::kInvalidFile, path,
             fmt::format("token #{} is {}, outside this model's vocabulary [0, {})", i,
                         new_tokens[i], config.n_vocab));
    }
  }
  std::vector<float> new_logits;
  if (logits != nullptr) {
    if (logits->type != TensorType::F32 || logits->shape != std::vector<int64_t>{config.n_vocab} ||
        n == 0) {
      refuse(
          ErrorCode::kInvalidFile, path,
          fmt::format("tensor \"logits\" must be F32 {} (the vocabulary) after at least one "
                      "token, not {} {} after {}",
                      config.n_vocab, type_name(logits->type), fmt::join(logits->shape, "x"), n));
    }
    new_logits.resize(static_cast<size_t>(config.n_vocab));
    std::memcpy(new_logits.data(), logits->data, logits->n_bytes);
    for (size_t i = 0; i < new_logits.size(); ++i) {
      if (!std::isfinite(new_logits[i])) {
        refuse(ErrorCode::kInvalidFile, path,
               fmt::format("logit of token {} is {}", i, new_logits[i]));
      }
    }
  }

  // Checked: now the session changes.
  try {
    for (size_t il = 0; il < cache_.layers.size() && n > 0; ++il) {
      model_->write_cache_rows(cache_, il, n,
                               reinterpret_cast<const float*>(cache_tensors[2 * il]->data),
                               reinterpret_cast<const float*>(cache_tensors[2 * il + 1]->data));
    }
  } catch (const Error& e) {
    reset();
    throw Error(e.code(), fmt::format("{}: restoring the cache failed, the session is now "
                                      "empty: {}",
                                      path, e.what()));
  } catch (...) {
    reset();  // never the file's tokens over half-written cache rows
    throw;
  }
  tokens_ = std::move(new_tokens);
  logits_ = std::move(new_logits);
}

}  // namespace ktx::runtime
