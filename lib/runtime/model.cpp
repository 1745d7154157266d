// Loading a model: file -> config -> module tree -> plan (rules or default) -> operators.
#include "runtime/model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <set>
#include <string_view>
#include <thread>
#include <vector>

#include "exec/default_plan.h"
#include "ktx/error.h"
#include "ktx/tokenizer.h"
#include "rules/rules.h"

namespace ktx::runtime {
namespace {

int resolve_threads(int n) {
  // A mistyped count (a million) would start threads until the system refuses one.
  if (n < 0 || n > kMaxThreads) {
    throw Error(
        ErrorCode::kInvalidArgument,
        fmt::format("n_threads must be 0 (every hardware thread) to {}, not {}", kMaxThreads, n));
  }
  return n > 0 ? n : default_thread_count();
}

// Touches one byte per page of every tensor so the weights are resident before the first token.
void prefault(const gguf::File& file, const std::function<bool(double)>& progress) {
  uint64_t total = 0, done = 0;
  for (const gguf::TensorInfo& t : file.tensors()) total += t.n_bytes;
  volatile uint8_t sink = 0;
  constexpr uint64_t kPage = 4096;
  constexpr uint64_t kReportEvery = uint64_t{64} << 20;
  uint64_t next_report = 0;
  for (const gguf::TensorInfo& t : file.tensors()) {
    for (uint64_t off = 0; off < t.n_bytes; off += kPage) sink = sink + t.data[off];
    done += t.n_bytes;
    if (progress && (done >= next_report || done == total)) {
      next_report = done + kReportEvery;
      if (!progress(total ? static_cast<double>(done) / static_cast<double>(total) : 1.0)) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("{}: loading cancelled", file.paths().front()));
      }
    }
  }
}

}  // namespace

Model::Model(gguf::File file, const ModelOptions& options)
    : file_(std::move(file)),
      config_(model::ModelConfig::from_gguf(file_)),
      modules_(model::build_module_tree(config_, file_)),
      pool_(resolve_threads(options.n_threads)) {
  warn_unused_tensors();
  backends_ = registry::load_backends(registry_, {options.backend_paths, true});
  for (std::string& w : backends_.warnings()) warnings_.push_back(std::move(w));
  if (options.rules_path.empty()) {
    plan_ = exec::default_cpu_plan(modules_, registry_);
  } else {
    // The devices rule files may name: the CPU and those of the backend modules loaded.
    plan_ = rules::apply_rules(rules::load_rules(options.rules_path), modules_, config_, registry_,
                               backends_.devices(), &warnings_);
  }
  if (options.prefault) prefault(file_, options.progress);
  executor_ = std::make_unique<exec::Executor>(config_, modules_, plan_, registry_, &backends_);
  try {
    tokenizer_ = std::make_unique<Tokenizer>(Tokenizer::from_gguf(file_));
  } catch (const Error& e) {
    // A model without a usable tokenizer still evaluates token ids (ktx logits, tests).
    tokenizer_error_ = e.what();
  }
  if (tokenizer_ && tokenizer_->n_vocab() != config_.n_vocab) {
    // Text would then map to ids the model has no rows for, or the model would choose ids that
    // have no text: refused at load (as llama.cpp does), not halfway through a generation.
    tokenizer_error_ = fmt::format(
        "{}: the tokenizer has {} tokens (tokenizer.ggml.tokens) but the model's vocabulary is "
        "{} (rows of token_embd.weight); the two must agree",
        file_.paths().front(), tokenizer_->n_vocab(), config_.n_vocab);
    tokenizer_.reset();
    warnings_.push_back(tokenizer_error_);
  }
}

Model::~Model() = default;

void Model::warn_unused_tensors() {
  // A tensor no module reads means the metadata describes another model than the tensors do
  // (shared experts in a file whose metadata says there are none) or a file made wrongly: the
  // model still runs as the metadata says, but not silently.
  std::set<std::string_view> used;
  for (const model::ModuleDesc& m : modules_) {
    for (const auto& [role, tensor] : m.weights) used.insert(tensor->name);
  }
  std::vector<std::string_view> unused;
  for (const gguf::TensorInfo& t : file_.tensors()) {
    if (!used.contains(t.name)) unused.push_back(t.name);
  }
  if (unused.empty()) return;
  constexpr size_t kNamed = 5;
  const std::vector<std::string_view> named(unused.begin(),
                                            unused.begin() + std::min(unused.size(), kNamed));
  warnings_.push_back(fmt::format(
      "{}: {} tensor{} not read by the model as its metadata describes it ({}: {}{}); check the "
      "architecture's keys",
      file_.paths().front(), unused.size(), unused.size() == 1 ? " is" : "s are", config_.arch_name,
      fmt::join(named, ", "), unused.size() > kNamed ? ", …" : ""));
}

std::shared_ptr<Model> Model::load(const std::string& path, const ModelOptions& options) {
  return std::shared_ptr<Model>(new Model(gguf::File::open(path), options));
}

const Tokenizer& Model::tokenizer() const {
  if (!tokenizer_) {
    // tokenizer_error_ names the file.
    throw Error(ErrorCode::kUnsupported, fmt::format("no usable tokenizer: {}", tokenizer_error_));
  }
  return *tokenizer_;
}

void Model::forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, float* logits,
                    bool all_logits) {
  std::lock_guard<std::mutex> lock(forward_mutex_);
  ops::ExecContext ctx{&pool_};
  executor_->forward(ctx, tokens, pos0, cache, logits, all_logits);
}

void Model::forward_batch(std::span<const int32_t> tokens, std::span<const int64_t> positions,
                          std::span<KvCache* const> caches, float* logits) {
  if (positions.size() != caches.size()) {
    throw Error(ErrorCode::kInternal, fmt::format("forward_batch: {} positions for {} caches",
                                                  positions.size(), caches.size()));
  }
  std::vector<exec::Executor::Sequence> sequences(caches.size());
  for (size_t i = 0; i < sequences.size(); ++i) sequences[i] = {caches[i], positions[i]};
  std::lock_guard<std::mutex> lock(forward_mutex_);
  ops::ExecContext ctx{&pool_};
  executor_->forward_batch(ctx, tokens, sequences, logits);
}

// Copies in host memory touch only the session's own cache and need no lock: a load or fork
// does not wait behind another session's prefill. An accelerator's copies go through its backend,
// which forward calls use too: those are serialised with them.
std::unique_lock<std::mutex> Model::lock_for_cache(size_t il) const {
  return cache_on_host(il) ? std::unique_lock<std::mutex>()
                           : std::unique_lock<std::mutex>(forward_mutex_);
}

void Model::read_cache_rows(const KvCache& cache, size_t il, int64_t n_rows, float* a,
                            float* b) const {
  const auto lock = lock_for_cache(il);
  executor_->read_cache_rows(cache, il, n_rows, a, b);
}

void Model::write_cache_rows(KvCache& cache, size_t il, int64_t n_rows, const float* a,
                             const float* b) const {
  const auto lock = lock_for_cache(il);
  executor_->write_cache_rows(cache, il, n_rows, a, b);
}

void Model::copy_cache_rows(const KvCache& from, KvCache& to, size_t il, int64_t n_rows) const {
  const auto lock = lock_for_cache(il);
  executor_->copy_cache_rows(from, to, il, n_rows);
}

std::vector<exec::KindTiming> Model::timings() const {
  std::lock_guard<std::mutex> lock(forward_mutex_);
  return executor_->timings();
}

exec::TransferStats Model::transfers() const {
  std::lock_guard<std::mutex> lock(forward_mutex_);
  return executor_->transfers();
}

void Model::reset_timings() {
  std::lock_guard<std::mutex> lock(forward_mutex_);
  executor_->reset_timings();
}

}  // namespace ktx::runtime
