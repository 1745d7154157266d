// cpu.experts: the routed experts from the merged 3-D GGUF tensors, run asynchronously on the
// pool (submit returns at once; wait joins) so the caller can compute the shared experts
// meanwhile. As KTransformers' CPUInfer does, tokens are grouped by expert and only experts that
// received tokens get work. One pool job holds two kinds of tasks:
//   up tasks    (active expert × block of n_ff_exp rows): gate and up rows dotted with the
//               expert's tokens, SiLU·mul fused; the last block of an expert to finish quantizes
//               that expert's hidden rows for the down pass;
//   down tasks  (block of n_embd output rows): for each active expert in id order, down rows
//               dotted with its hidden rows, weighted and accumulated into out.
// Down tasks come after every up task in claim order; before it reads an expert's hidden rows, a
// down task blocks (std::atomic::wait, no spinning) until that expert's up tasks are done, not
// all of them: the first down tasks need the first experts, finished long before, so a thread
// that runs out of up tasks starts on the down pass while the other finishes the last ones.
// Splitting the down pass by output rows rather than by expert lets each task own its slice of
// `out`: no locks, and a sum order that does not depend on threads. Decode (one token) is one flat
// list of such tasks over all selected experts, so both threads stream weights the whole time; its
// tasks are larger and each row block is one multi-row kernel call (long streams for the
// prefetchers), with the same results as the batched loop. Its down tasks are (active expert ×
// block of n_embd rows) instead, each expert's result in a row of its own that wait() sums into out
// in expert order (the batch loop's sums in its order): a task then reads one run of one matrix,
// not a short run of each expert's.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <mutex>
#include <vector>

#include "ktx/error.h"
#include "ops/cpu/batch_matmul.h"
#include "ops/cpu/common.h"
#include "ops/cpu/impls.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/repacked.h"
#include "runtime/numa.h"

namespace ktx::ops::cpu {
namespace {

constexpr std::string_view kName = "cpu.experts";
constexpr int64_t kUpBlock = 64;    // n_ff_exp rows per up task
constexpr int64_t kDownBlock = 64;  // n_embd rows per down task
// One token: at least 128 gate + 128 up rows per task (2 × 147 KB of Q4_K at V2-Lite's width),
// more with few threads (decode_block); on several NUMA nodes exactly 128, the unit in which
// place_on_nodes binds rows.
constexpr int64_t kDecodeUpBlock = 128;
// One token's down tasks: at least 256 rows of one expert (248 KB of Q5_0 at V2-Lite's width);
// likewise. Blocks of 64 rows across all experts, as the batch takes them, ran 8-9% slower.
constexpr int64_t kDecodeDownBlock = 256;

// One token, threads not split by NUMA node: rows per task of a matrix of `rows` rows for
// `n_active` experts, about 4 tasks per thread and at least `min_rows`, each expert's rows cut
// evenly, whole row tiles. Long runs matter once the kernels outrun memory: on one Zen 4 core,
// runs of 128 rows of Q4_K tiles at random places read memory at 70-90% of the speed of whole
// matrices, runs of 704 rows at ~100%.
int64_t decode_block(int64_t rows, int64_t n_active, int threads, int64_t min_rows) {
  const int64_t target = std::max<int64_t>(min_rows, rows * n_active / (4 * std::max(1, threads)));
  const int64_t per_expert = std::max<int64_t>(1, (rows + target - 1) / target);
  const int64_t block = (rows + per_expert - 1) / per_expert;
  return (block + quant::kTileRows - 1) / quant::kTileRows * quant::kTileRows;
}

class Experts final : public ExpertsOp {
 public:
  Experts(const model::ModuleDesc& m, const model::ModelConfig& c, bool repack)
      : k_(c.n_expert_used) {
    const gguf::TensorInfo& g = m.weight("gate_exps");
    const gguf::TensorInfo& u = m.weight("up_exps");
    const gguf::TensorInfo& d = m.weight("down_exps");
    n_embd_ = g.shape[0];
    n_ff_ = g.shape[1];
    n_expert_ = g.shape[2];
    for (int64_t e = 0; e < n_expert_; ++e) {
      gate_.push_back(weight_slab(g, e));
      up_.push_back(weight_slab(u, e));
      down_.push_back(weight_slab(d, e));
    }
    if (repack) repacked_ = repack_module(m, {gate_, up_, down_});
  }

  ~Experts() override {
    // Destroyed with work in flight: join it so that no task reads freed state.
    if (run_ && pool_ != nullptr) {
      try {
        pool_->wait();
      } catch (...) {  // the error belonged to a wait() that never came
      }
    }
  }

  std::string impl_name() const override { return std::string(kName); }

  void submit(ExecContext& ctx, int64_t n, const float* x, const int32_t* ids, const float* weights,
              float* out) override;
  void wait(ExecContext& ctx) override;

 private:
  // Everything one submit() needs until wait(): the grouping of tokens by expert and buffers.
  struct Run {
    int64_t n = 0;
    float* out = nullptr;
    std::vector<int64_t> active;  // experts with tokens, ascending
    std::vector<int64_t> first;   // active.size() + 1 offsets into the assignment arrays
    std::vector<int32_t> token;   // per assignment (expert-major, then token order)
    std::vector<float> weight;
    QuantizedRows x_gate, x_up;  // x quantized for gate / up (x_up unused when types agree)
    bool x_shared = false;
    // [n_assign][n_ff]: silu(gate x) * up x. Not zeroed (make_unique_for_overwrite): the up tasks
    // write every element before it is read (zeroing was a pass over 17 MB per MoE layer at 512
    // tokens).
    std::unique_ptr<float[]> hidden;
    std::vector<float> up_x;  // one token: [n_active][n_ff], up x before SiLU·mul
    QuantizedRows hidden_q;   // the same, quantized for down
    int64_t up_block = 0;     // n_ff_exp rows per up task
    int64_t up_blocks = 0;    // up tasks per active expert
    int64_t n_up_tasks = 0;
    std::unique_ptr<std::atomic<int64_t>[]> blocks_left;  // per active expert
    // Per active expert: 1 once its hidden rows are quantized (and packed) for the down pass, or
    // once a task failed (then `failed` is set first).
    std::unique_ptr<std::atomic<int32_t>[]> ready;
    std::atomic<bool> failed{false};
    // A batch whose gate, up and down all have GEMM kernels (batch_matmul.h: over their row
    // tiles when repacked): each active expert's tokens as one GEMM per matrix. Its tokens'
    // activations are packed into panels once (x_panels; xu_panels when up reads other panels),
    // its hidden rows once they are quantized.
    bool gemm = false;
    bool xu_panels_own = false;  // up reads xu_panels, not x_panels
    BatchKernel gate_gemm, up_gemm, down_gemm;
    std::vector<GemmPanels> x_panels, xu_panels, hidden_panels;  // per active expert
    // Decode on several NUMA nodes (empty otherwise): node k owns up blocks [up_lo[k],
    // up_lo[k + 1]) and down blocks [down_lo[k], down_lo[k + 1]) of every expert; the job's
    // items are the up tasks node by node, then the down tasks node by node (two phases of
    // ThreadPool::submit_nodes): item ranges from node_start (2 · nodes + 1 bounds).
    std::vector<int64_t> up_lo, down_lo, node_start;
    // Decode: down tasks per (active expert, block of down_block rows), each expert's
    // result in its own row of expert_out ([n_active][n_embd]), summed into out by wait().
    std::vector<float> expert_out;
    int64_t down_block = 0;   // n_embd rows per down task
    int64_t down_blocks = 0;  // per active expert
  };

  // The rows of node k of `nodes` (blocks of `block` rows out of `rows`, split evenly).
  static std::pair<int64_t, int64_t> node_rows(int64_t rows, int64_t block, int k, int nodes) {
    const int64_t blocks = (rows + block - 1) / block;
    return {std::min(rows, blocks * k / nodes * block),
            std::min(rows, blocks * (k + 1) / nodes * block)};
  }
  // Binds each expert's rows of each node to that node, once (decode's split: up blocks of
  // kDecodeUpBlock rows, down blocks of kDecodeDownBlock).
  void place_on_nodes(const runtime::ThreadPool& pool);
  // Job item i of a decode on several nodes: the up or down task it stands for.
  void node_task(Run& run, int64_t i) const;

  // Whether active expert a's products go through the GEMMs: a batch whose matrices all have
  // GEMM kernels, and enough of its tokens routed to the expert (fewer take the GEMV kernels
  // token by token: a GEMM computes whole panels of 8 tokens; batch_matmul.h, small_batch).
  static bool expert_gemm(const Run& run, int64_t a) {
    const auto i = static_cast<size_t>(a);
    const int64_t count = run.first[i + 1] - run.first[i];
    return run.gemm && count > small_batch(run.gate_gemm) && count > small_batch(run.up_gemm) &&
           count > small_batch(run.down_gemm);
  }
  void up_task_gemm(Run& run, int64_t a, int64_t r0, int64_t r1) const;

  void up_task(Run& run, int64_t task) const;
  void down_task(Run& run, int64_t task) const;
  void decode_down_task(Run& run, int64_t task) const;
  // Blocks until active expert a's hidden rows are ready; false when a task failed (then do
  // nothing).
  static bool wait_for_expert(Run& run, size_t a);
  static void mark_ready(Run& run, int64_t a);
  // The last up task of active expert a: its hidden rows quantized (and packed, for the GEMMs),
  // then marked ready.
  void finish_expert(Run& run, int64_t a) const;
  static void fail(Run& run);

  int64_t k_;
  int64_t n_expert_ = 0, n_embd_ = 0, n_ff_ = 0;
  std::vector<WeightMatrix> gate_, up_, down_;
  std::vector<std::unique_ptr<RepackedTensor>> repacked_;  // the tiles gate_/up_/down_ point at
  std::unique_ptr<Run> run_;
  runtime::ThreadPool* pool_ = nullptr;
  std::once_flag placed_;
};

// Where decode reads rows [r, …) of w: its row tiles when repacked (the blocks are whole tiles,
// and a tile's rows take the same bytes as in the file), else the file's rows.
const uint8_t* decode_rows(const WeightMatrix& w, int64_t r) {
  return w.tiles != nullptr ? w.tiles + static_cast<size_t>(r) * w.row_bytes : w.row(r);
}

void Experts::place_on_nodes(const runtime::ThreadPool& pool) {
  const int nodes = pool.n_nodes();
  std::string error;
  if (pool.node_id(0) < 0) return;  // a test pool's made-up nodes: nothing to bind to
  // Each node's rows of each matrix become a map of their own (neighbours have other nodes):
  // DeepSeek-V3 on two nodes needs ~90k, past Linux's default limit of 65530.
  if (!runtime::map_count_room(static_cast<size_t>(n_expert_) * 3 * static_cast<size_t>(nodes),
                               &error)) {
    fmt::print(stderr, "ktx: {}: the expert weights' rows are not bound to their NUMA nodes: {}\n",
               kName, error);
    return;
  }
  for (int k = 0; k < nodes && error.empty(); ++k) {
    const int id = pool.node_id(k);
    const auto [u0, u1] = node_rows(n_ff_, kDecodeUpBlock, k, nodes);
    const auto [d0, d1] = node_rows(n_embd_, kDecodeDownBlock, k, nodes);
    for (int64_t e = 0; e < n_expert_ && error.empty(); ++e) {
      const auto e_ = static_cast<size_t>(e);
      for (const WeightMatrix* w : {&gate_[e_], &up_[e_]}) {
        if (!runtime::bind_to_node(decode_rows(*w, u0), static_cast<size_t>(u1 - u0) * w->row_bytes,
                                   id, &error)) {
          break;
        }
      }
      if (error.empty()) {
        runtime::bind_to_node(decode_rows(down_[e_], d0),
                              static_cast<size_t>(d1 - d0) * down_[e_].row_bytes, id, &error);
      }
    }
  }
  if (!error.empty()) {
    // Only speed is at stake: say so once and go on with the pages where they are.
    fmt::print(stderr,
               "ktx: {}: could not bind the expert weights' rows to their NUMA nodes ({}); "
               "they stay where the kernel put them\n",
               kName, error);
  }
}

void Experts::node_task(Run& run, int64_t i) const {
  const int nodes = static_cast<int>(run.up_lo.size()) - 1;
  int r = 0;  // range: p · nodes + k
  while (r + 1 < 2 * nodes && i >= run.node_start[static_cast<size_t>(r) + 1]) ++r;
  const auto k = static_cast<size_t>(r % nodes);
  const int64_t j = i - run.node_start[static_cast<size_t>(r)];
  if (r < nodes) {
    const int64_t width = run.up_lo[k + 1] - run.up_lo[k];
    up_task(run, (j / width) * run.up_blocks + run.up_lo[k] + j % width);
  } else {
    const int64_t width = run.down_lo[k + 1] - run.down_lo[k];
    decode_down_task(run, (j / width) * run.down_blocks + run.down_lo[k] + j % width);
  }
}

void Experts::submit(ExecContext& ctx, int64_t n, const float* x, const int32_t* ids,
                     const float* weights, float* out) {
  if (run_) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: submit() called again before wait()", kName));
  }
  if (n <= 0) return;
  auto run = std::make_unique<Run>();
  run->n = n;
  run->out = out;

  // Group the (token, weight) assignments by expert: a counting sort, token order kept. Routes
  // marked kNoExpert (served by another device's part of this module) are skipped.
  std::vector<int64_t> count(static_cast<size_t>(n_expert_) + 1, 0);
  int64_t n_assign = 0;
  for (int64_t i = 0; i < n * k_; ++i) {
    if (ids[i] == kNoExpert) continue;
    ++n_assign;
    if (ids[i] < 0 || ids[i] >= n_expert_) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{}: token {} is routed to expert {}, outside [0, {})", kName, i / k_,
                              ids[i], n_expert_));
    }
    ++count[static_cast<size_t>(ids[i]) + 1];
  }
  if (n_assign == 0) {
    // No route for this part (every one kNoExpert: another device serves them): zeros, no job.
    std::fill(out, out + n * n_embd_, 0.0f);
    return;
  }
  std::vector<int64_t> slot(static_cast<size_t>(n_expert_), -1);
  run->first.push_back(0);
  for (int64_t e = 0; e < n_expert_; ++e) {
    const int64_t c = count[static_cast<size_t>(e) + 1];
    if (c == 0) continue;
    slot[static_cast<size_t>(e)] = run->first.back();
    run->active.push_back(e);
    run->first.push_back(run->first.back() + c);
  }
  run->token.resize(static_cast<size_t>(n_assign));
  run->weight.resize(static_cast<size_t>(n_assign));
  for (int64_t i = 0; i < n * k_; ++i) {
    if (ids[i] == kNoExpert) continue;
    const int64_t at = slot[static_cast<size_t>(ids[i])]++;
    run->token[static_cast<size_t>(at)] = static_cast<int32_t>(i / k_);
    run->weight[static_cast<size_t>(at)] = weights[i];
  }

  runtime::ThreadPool& pool = *ctx.pool;
  const WeightMatrix& g0 = gate_[0];
  const WeightMatrix& u0 = up_[0];
  run->x_gate.quantize(&pool, g0.dot_type, n, n_embd_, x, n_embd_);
  run->x_shared = u0.dot_type == g0.dot_type;
  if (!run->x_shared) run->x_up.quantize(&pool, u0.dot_type, n, n_embd_, x, n_embd_);
  run->hidden = std::make_unique_for_overwrite<float[]>(static_cast<size_t>(n_assign * n_ff_));
  run->hidden_q.resize(down_[0].dot_type, n_assign, n_ff_);

  const auto n_active = static_cast<int64_t>(run->active.size());
  const bool numa = n == 1 && pool.n_nodes() > 1;
  run->up_block = n > 1  ? kUpBlock
                  : numa ? kDecodeUpBlock
                         : decode_block(n_ff_, n_active, pool.size(), kDecodeUpBlock);
  run->up_blocks = (n_ff_ + run->up_block - 1) / run->up_block;
  run->n_up_tasks = n_active * run->up_blocks;
  run->blocks_left = std::make_unique<std::atomic<int64_t>[]>(static_cast<size_t>(n_active));
  run->ready = std::make_unique<std::atomic<int32_t>[]>(static_cast<size_t>(n_active));
  for (int64_t a = 0; a < n_active; ++a) {
    run->blocks_left[a].store(run->up_blocks);
    run->ready[a].store(0);
  }
  if (n == 1) {
    run->up_x.resize(static_cast<size_t>(n_active * n_ff_));
    run->down_block =
        numa ? kDecodeDownBlock : decode_block(n_embd_, n_active, pool.size(), kDecodeDownBlock);
    run->down_blocks = (n_embd_ + run->down_block - 1) / run->down_block;
    run->expert_out.resize(static_cast<size_t>(n_active * n_embd_));
  }
  const int64_t n_down_tasks =
      n == 1 ? n_active * run->down_blocks : (n_embd_ + kDownBlock - 1) / kDownBlock;

  if (n > 1) {
    run->gate_gemm = batch_kernel(g0);
    run->up_gemm = batch_kernel(u0);
    run->down_gemm = batch_kernel(down_[0]);
    run->gemm = run->gate_gemm && run->up_gemm && run->down_gemm;
    run->xu_panels_own = !run->x_shared || !run->gate_gemm.same_panels(run->up_gemm);
  }
  bool any_gemm = false;  // an expert with enough tokens for the GEMMs (expert_gemm)
  for (int64_t a = 0; a < n_active && run->gemm; ++a) any_gemm = any_gemm || expert_gemm(*run, a);
  if (any_gemm) {
    run->x_panels.resize(static_cast<size_t>(n_active));
    if (run->xu_panels_own) run->xu_panels.resize(static_cast<size_t>(n_active));
    run->hidden_panels.resize(static_cast<size_t>(n_active));
    Run& rr = *run;
    pool.parallel_for(n_active, 1, [&](int64_t a0, int64_t a1) {
      for (int64_t a = a0; a < a1; ++a) {
        const auto i = static_cast<size_t>(a);
        const int64_t n_tokens = rr.first[i + 1] - rr.first[i];
        if (!expert_gemm(rr, a)) continue;  // through the GEMV kernels
        const int32_t* tokens = rr.token.data() + rr.first[i];
        rr.x_panels[i].pack(nullptr, rr.gate_gemm, rr.x_gate, n_tokens, 0, tokens);
        if (rr.xu_panels_own) {
          rr.xu_panels[i].pack(nullptr, rr.up_gemm, rr.x_shared ? rr.x_gate : rr.x_up, n_tokens, 0,
                               tokens);
        }
      }
    });
  }

  Run* r = run.get();
  if (n == 1 && pool.n_nodes() > 1) {
    // Each node's threads take the rows that live on their node first (place_on_nodes).
    std::call_once(placed_, [&] { place_on_nodes(pool); });
    const int nodes = pool.n_nodes();
    for (int k = 0; k <= nodes; ++k) {
      r->up_lo.push_back(r->up_blocks * k / nodes);
      r->down_lo.push_back(r->down_blocks * k / nodes);
    }
    r->node_start.push_back(0);
    for (int k = 0; k < nodes; ++k) {  // phase 0: up tasks
      const auto kk = static_cast<size_t>(k);
      r->node_start.push_back(r->node_start.back() + n_active * (r->up_lo[kk + 1] - r->up_lo[kk]));
    }
    for (int k = 0; k < nodes; ++k) {  // phase 1: down tasks (each waits for its expert)
      const auto kk = static_cast<size_t>(k);
      r->node_start.push_back(r->node_start.back() +
                              n_active * (r->down_lo[kk + 1] - r->down_lo[kk]));
    }
    pool.submit_nodes(r->node_start, 2, 1, [this, r](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) node_task(*r, i);
    });
    run_ = std::move(run);
    pool_ = &pool;
    return;
  }
  pool.submit(r->n_up_tasks + n_down_tasks, 1, [this, r](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) {
      if (i >= r->n_up_tasks) {
        r->n == 1 ? decode_down_task(*r, i - r->n_up_tasks) : down_task(*r, i - r->n_up_tasks);
      } else {
        up_task(*r, i);
      }
    }
  });
  run_ = std::move(run);  // only once the pool has the job (submit throws if one is running)
  pool_ = &pool;
}

void Experts::fail(Run& run) {
  // Release the down tasks waiting for any expert; they see `failed` and do nothing.
  run.failed.store(true);
  for (size_t a = 0; a < run.active.size(); ++a) mark_ready(run, static_cast<int64_t>(a));
}

void Experts::mark_ready(Run& run, int64_t a) {
  run.ready[a].store(1, std::memory_order_release);
  run.ready[a].notify_all();
}

bool Experts::wait_for_expert(Run& run, size_t a) {
  while (run.ready[a].load(std::memory_order_acquire) == 0) {
    run.ready[a].wait(0, std::memory_order_acquire);
  }
  return !run.failed.load();
}

void Experts::up_task(Run& run, int64_t task) const {
  const int64_t a = task / run.up_blocks;  // index into run.active
  const int64_t e = run.active[static_cast<size_t>(a)];
  const int64_t r0 = (task % run.up_blocks) * run.up_block;
  const int64_t r1 = std::min(n_ff_, r0 + run.up_block);
  const int64_t j0 = run.first[static_cast<size_t>(a)], j1 = run.first[static_cast<size_t>(a) + 1];
  const WeightMatrix& g = gate_[static_cast<size_t>(e)];
  const WeightMatrix& u = up_[static_cast<size_t>(e)];
  const QuantizedRows& xu = run.x_shared ? run.x_gate : run.x_up;
  if (run.failed.load(std::memory_order_relaxed)) return;
  try {
    if (run.n == 1) {
      // One token: the block's gate rows, then its up rows, each in one kernel call.
      float* h = run.hidden.get() + j0 * n_ff_;
      float* uv = run.up_x.data() + a * n_ff_;
      g.dot(r0, r1 - r0, run.x_gate.row(0), h + r0);
      u.dot(r0, r1 - r0, xu.row(0), uv + r0);
      silu_mul(h + r0, uv + r0, h + r0, r1 - r0);
    } else if (expert_gemm(run, a)) {
      up_task_gemm(run, a, r0, r1);
    } else {
      // Token by token over the block's rows (whole row tiles when repacked), which stay in
      // cache from one token to the next.
      float uv[kUpBlock];
      for (int64_t j = j0; j < j1; ++j) {
        const int32_t t = run.token[static_cast<size_t>(j)];
        float* h = run.hidden.get() + j * n_ff_ + r0;
        g.dot(r0, r1 - r0, run.x_gate.row(t), h);
        u.dot(r0, r1 - r0, xu.row(t), uv);
        silu_mul(h, uv, h, r1 - r0);
      }
    }
    // The expert's last block prepares its hidden rows for the down pass (acq_rel: it sees every
    // other block's writes).
    if (run.blocks_left[a].fetch_sub(1, std::memory_order_acq_rel) == 1) finish_expert(run, a);
  } catch (...) {
    fail(run);
    throw;
  }
}

void Experts::finish_expert(Run& run, int64_t a) const {
  const auto i = static_cast<size_t>(a);
  const int64_t j0 = run.first[i];
  // One token routed to an expert more than once still has one hidden row (decode_down_task
  // reads it; wait() weights it once per route).
  const int64_t j1 = run.n == 1 ? j0 + 1 : run.first[i + 1];
  for (int64_t j = j0; j < j1; ++j) run.hidden_q.quantize_row(j, run.hidden.get() + j * n_ff_);
  if (expert_gemm(run, a)) {
    run.hidden_panels[i].pack(nullptr, run.down_gemm, run.hidden_q, j1 - j0, j0);
  }
  mark_ready(run, a);
}

void Experts::down_task(Run& run, int64_t task) const {
  const int64_t r0 = task * kDownBlock;
  const int64_t r1 = std::min(n_embd_, r0 + kDownBlock);
  float* out = run.out;
  for (int64_t t = 0; t < run.n; ++t)
    std::fill(out + t * n_embd_ + r0, out + t * n_embd_ + r1, 0.0f);
  // Each expert's rows of the block times its tokens, added in expert order: for every output
  // the same sums in the same order whichever way an expert's product is computed.
  float y[kDownBlock];
  std::vector<float> ys;
  for (size_t a = 0; a < run.active.size(); ++a) {
    if (!wait_for_expert(run, a)) return;
    const WeightMatrix& d = down_[static_cast<size_t>(run.active[a])];
    const int64_t j0 = run.first[a], count = run.first[a + 1] - j0;
    const bool gemm = expert_gemm(run, static_cast<int64_t>(a));
    if (gemm) {
      ys.resize(static_cast<size_t>(count * (r1 - r0)));
      gemm_rows(run.down_gemm, d, r0, r1, run.hidden_panels[a], 0, count, ys.data(), r1 - r0);
    }
    for (int64_t j = 0; j < count; ++j) {
      const float* yj = y;
      if (gemm) {
        yj = ys.data() + j * (r1 - r0);
      } else {
        d.dot(r0, r1 - r0, run.hidden_q.row(j0 + j), y);  // the block's rows in one call
      }
      float* o = out + run.token[static_cast<size_t>(j0 + j)] * n_embd_ + r0;
      axpy_f32(run.weight[static_cast<size_t>(j0 + j)], yj, o, r1 - r0);
    }
  }
}

void Experts::up_task_gemm(Run& run, int64_t a, int64_t r0, int64_t r1) const {
  const auto i = static_cast<size_t>(a);
  const int64_t e = run.active[i];
  const int64_t j0 = run.first[i], count = run.first[i + 1] - j0;
  const GemmPanels& xu = run.xu_panels_own ? run.xu_panels[i] : run.x_panels[i];
  // Gate straight into the expert's hidden rows, up beside it, then SiLU·mul in place.
  float* h = run.hidden.get() + j0 * n_ff_;
  const int64_t rows = r1 - r0;
  std::vector<float> u(static_cast<size_t>(count * rows));
  gemm_rows(run.gate_gemm, gate_[static_cast<size_t>(e)], r0, r1, run.x_panels[i], 0, count, h + r0,
            n_ff_);
  gemm_rows(run.up_gemm, up_[static_cast<size_t>(e)], r0, r1, xu, 0, count, u.data(), rows);
  for (int64_t j = 0; j < count; ++j) {
    float* hj = h + j * n_ff_ + r0;
    const float* uj = u.data() + j * rows;
    silu_mul(hj, uj, hj, rows);
  }
}

void Experts::wait(ExecContext& ctx) {
  if (!run_) return;
  std::unique_ptr<Run> run = std::move(run_);  // freed on every path out of here
  pool_ = nullptr;
  ctx.pool->wait();
  // One token: the experts' rows summed in expert order, each weighted as often as it was routed
  // (a route given twice to one expert counts twice, as in the batch path).
  if (run->n == 1 && !run->failed.load()) {
    float* out = run->out;
    std::fill(out, out + n_embd_, 0.0f);
    for (size_t a = 0; a < run->active.size(); ++a) {
      const float* y = run->expert_out.data() + a * static_cast<size_t>(n_embd_);
      for (int64_t jj = run->first[a]; jj < run->first[a + 1]; ++jj) {
        const float wj = run->weight[static_cast<size_t>(jj)];
        axpy_f32(wj, y, out, n_embd_);
      }
    }
  }
}

// One token: rows [r0, r1) of one active expert's down matrix into its row of expert_out, in one
// multi-row kernel call.
void Experts::decode_down_task(Run& run, int64_t task) const {
  const int64_t a = task / run.down_blocks;
  const int64_t r0 = (task % run.down_blocks) * run.down_block;
  const int64_t r1 = std::min(n_embd_, r0 + run.down_block);
  const auto i = static_cast<size_t>(a);
  if (!wait_for_expert(run, i)) return;
  down_[static_cast<size_t>(run.active[i])].dot(
      r0, r1 - r0, run.hidden_q.row(run.first[i]),
      run.expert_out.data() + i * static_cast<size_t>(n_embd_) + r0);
}

std::optional<std::string> check(const registry::OpCreateArgs& a) {
  const model::ModelConfig& c = a.config;
  Checker ch(a, kName);
  ch.options({"repack"}).require(repack_option_error(a.options));
  ch.matmul("gate_exps").matmul("up_exps").matmul("down_exps");
  if (ch.result()) return ch.result();
  const gguf::TensorInfo& g = a.module.weight("gate_exps");
  ch.require(g.shape.size() == 3, "gate_exps is not a 3-D [n_embd, n_ff_exp, n_expert] tensor");
  if (ch.result()) return ch.result();
  const int64_t n_embd = g.shape[0], n_ff = g.shape[1], n_expert = g.shape[2];
  ch.shape("up_exps", {n_embd, n_ff, n_expert}).shape("down_exps", {n_ff, n_embd, n_expert});
  ch.require(c.n_expert_used > 0 && c.n_expert_used <= n_expert,
             fmt::format("n_expert_used = {} of {} experts", c.n_expert_used, n_expert));
  return ch.result();
}

}  // namespace

registry::OpImpl experts_impl() {
  return {std::string(kName),
          model::ModuleKind::kExperts,
          registry::DeviceKind::kCpu,
          "routed experts on the CPU thread pool, asynchronous (tokens grouped by expert)",
          check,
          [](const registry::OpCreateArgs& a) -> std::unique_ptr<Operator> {
            throw_if(check(a), kName);
            return std::make_unique<Experts>(a.module, a.config, *parse_repack(a.options));
          }};
}

}  // namespace ktx::ops::cpu
