// A loaded model: the GGUF mapping (shared, read-only), its configuration and module tree, the
// plan, the operators that run it, and the thread pool they share. Loaded once and shared by any
// number of sessions; forward steps of different sessions are serialised on the model's pool
// (which already uses every core), so sessions on different threads are safe.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "exec/executor.h"
#include "exec/plan.h"
#include "ktx/gguf.h"
#include "model/config.h"
#include "model/module_tree.h"
#include "registry/backend_loader.h"
#include "registry/registry.h"
#include "runtime/kv_cache.h"
#include "runtime/thread_pool.h"

namespace ktx {
class Tokenizer;
}

namespace ktx::runtime {

// The most threads a model's pool may have (the CLI's --threads has the same bound).
inline constexpr int kMaxThreads = 4096;

struct ModelOptions {
  std::string rules_path;  // a rule file (rules/*.yaml); empty: everything on the CPU
  int n_threads = 0;       // 0: every hardware thread; at most kMaxThreads
  // Read every weight page once while loading (so the first tokens do not stall on page faults),
  // reporting the fraction done. Off: pages load lazily on first use.
  bool prefault = false;
  // Called with 0..1 while prefaulting; return false to cancel the load (kCancelled is reported
  // as ktx::Error kInvalidArgument "cancelled").
  std::function<bool(double)> progress;
  // Backend modules (libktx-backend-*.so files, or folders of them) to load besides those found
  // next to ktx (docs/BACKENDS.md). One that cannot be loaded is left out with a warning.
  std::vector<std::string> backend_paths;
};

class Model {
 public:
  // Throws ktx::Error naming the file, key, tensor or rule line on any problem.
  static std::shared_ptr<Model> load(const std::string& path, const ModelOptions& options = {});
  ~Model();

  const gguf::File& file() const { return file_; }
  const model::ModelConfig& config() const { return config_; }
  const std::vector<model::ModuleDesc>& modules() const { return modules_; }
  const exec::Plan& plan() const { return plan_; }
  const registry::OperatorRegistry& registry() const { return registry_; }
  const registry::BackendSet& backends() const { return backends_; }
  int n_threads() const { return pool_.size(); }
  // The NUMA nodes the pool's threads are spread over (ThreadPool::n_nodes).
  int n_numa_nodes() const { return pool_.n_nodes(); }
  // Warnings from loading (a rule that matched no module …), "FILE:LINE: ..." where it applies.
  const std::vector<std::string>& warnings() const { return warnings_; }

  // The tokenizer from the file's metadata; throws ktx::Error (kUnsupported) when the file has
  // none or ktx cannot build it (the message says why).
  const Tokenizer& tokenizer() const;
  bool has_tokenizer() const { return tokenizer_ != nullptr; }

  runtime::KvCache make_kv_cache(int64_t n_ctx) const { return executor_->make_kv_cache(n_ctx); }

  // One forward step (see exec::Executor::forward). Serialised across callers.
  void forward(std::span<const int32_t> tokens, int64_t pos0, KvCache& cache, float* logits,
               bool all_logits);

  // One decode step of several sequences at once (exec::Executor::forward_batch): tokens[i] at
  // positions[i] of caches[i]; logits [n][n_vocab]. Serialised across callers.
  void forward_batch(std::span<const int32_t> tokens, std::span<const int64_t> positions,
                     std::span<KvCache* const> caches, float* logits);

  // Identifies the model file to the session files saved from it (model_fingerprint.cpp):
  // its header and samples of every tensor's data. Computed once, on first use.
  uint64_t fingerprint() const;

  // A session's cache rows to and from host memory (exec::Executor::read_cache_rows …), for
  // saving, restoring and forking sessions. Serialised with forward calls.
  void read_cache_rows(const KvCache& cache, size_t il, int64_t n_rows, float* a, float* b) const;
  void write_cache_rows(KvCache& cache, size_t il, int64_t n_rows, const float* a,
                        const float* b) const;
  void copy_cache_rows(const KvCache& from, KvCache& to, size_t il, int64_t n_rows) const;
  bool cache_on_host(size_t il) const { return executor_->cache_on_host(il); }

  // Per-kind time spent in forward calls so far.
  std::vector<exec::KindTiming> timings() const;
  // Activation bytes copied between the host and accelerators since the last reset_timings().
  exec::TransferStats transfers() const;
  void reset_timings();

 private:
  Model(gguf::File file, const ModelOptions& options);
  // Adds a warning naming the file's tensors that no module reads.
  void warn_unused_tensors();
  // The forward lock when layer il's cache is in an accelerator's memory, else none.
  std::unique_lock<std::mutex> lock_for_cache(size_t il) const;

  gguf::File file_;
  model::ModelConfig config_;
  std::vector<model::ModuleDesc> modules_;
  registry::BackendSet backends_;  // before registry_: its modules must outlive their operators
  registry::OperatorRegistry registry_;
  exec::Plan plan_;
  ThreadPool pool_;
  std::unique_ptr<exec::Executor> executor_;
  std::unique_ptr<Tokenizer> tokenizer_;
  std::string tokenizer_error_;
  std::vector<std::string> warnings_;
  mutable std::mutex forward_mutex_;
  mutable std::once_flag fingerprint_once_;
  mutable uint64_t fingerprint_ = 0;
};

}  // namespace ktx::runtime
