// ThreadPool: persistent workers that claim chunks of the active jobs through an atomic counter.
// Jobs form a short list (job_ is its head): the asynchronous one from submit() and, while it
// runs, the caller's parallel_for jobs, which are put in front so that a waiting caller is served
// first. So CPU-only decode can run the shared experts (parallel_for) while the routed experts
// (submit) are in flight, and idle workers help with both.
//
// Waking costs: a worker that has just finished spins (pause loop) for spin_us_ before it sleeps
// on a futex (std::atomic::wait), so during decode, where jobs follow each other within
// microseconds, posting a job is a counter increment and no system call; a sleeping worker takes
// a futex wake (tens of microseconds in a VM).
#include "runtime/thread_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <memory>

#include "ktx/error.h"

#if defined(__linux__)
#include <sched.h>
#endif

namespace ktx::runtime {

namespace {
// Set on the pool's own workers: a parallel_for issued from inside a task runs inline instead of
// waiting on workers that may all be busy with the enclosing job (which would deadlock).
thread_local const ThreadPool* t_worker_of = nullptr;
// A worker's place among the pool's threads (1 .. threads - 1; the caller of a job is 0): which
// share of a parallel_for_streams job it starts on.
thread_local int t_worker_slot = 0;

constexpr uint64_t pack_range(int64_t lo, int64_t hi) {
  return static_cast<uint64_t>(lo) | (static_cast<uint64_t>(hi) << 32);
}
constexpr int64_t range_lo(uint64_t v) { return static_cast<int64_t>(v & 0xFFFFFFFFu); }
constexpr int64_t range_hi(uint64_t v) { return static_cast<int64_t>(v >> 32); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  char* end = nullptr;
  const long n = std::strtol(v, &end, 10);
  return (*end == '\0' && n >= 0 && n <= 1000000) ? static_cast<int>(n) : fallback;
}

// The CPUs this process may run on, in order (empty where that cannot be known).
std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    for (int c = 0; c < CPU_SETSIZE; ++c) {
      if (CPU_ISSET(c, &set)) cpus.push_back(c);
    }
  }
#endif
  return cpus;
}

void pin_to(int cpu) {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  sched_setaffinity(0, sizeof set, &set);  // best effort: a refusal leaves the thread unpinned
#else
  (void)cpu;
#endif
}

}  // namespace

struct ThreadPool::Job {
  const std::function<void(int64_t, int64_t)>* fn = nullptr;
  std::function<void(int64_t, int64_t)> owned;  // submit(): the job keeps its callable
  int64_t n = 0;
  int64_t grain = 1;
  int64_t split = 4;                // chunks are (what is left) / split, at least grain
  std::atomic<int64_t> next{0};     // first unclaimed index
  std::atomic<bool> failed{false};  // after the first exception, remaining chunks are skipped
  std::exception_ptr error;         // the first exception (written once, guarded by `failed`)
  int active = 0;                   // workers inside run_chunks (guarded by the pool mutex)
  bool async = false;               // from submit(): owned by the list, freed by wait()
  Job* next_job = nullptr;          // the list of running jobs (guarded by the pool mutex)
  // parallel_for_streams: one range [lo, hi) per thread; submit_nodes: one per NUMA node and
  // phase (range p · owners + k), the thread in slot s owning ranges slot_range[s] of each phase.
  // Packed lo | hi << 32 (n < 2^32). Empty: the shared counter `next`. An owner's chunk is its
  // range's rest / split[k] (threads sharing the range: 4 claims each before the rest shrinks).
  std::vector<std::atomic<uint64_t>> ranges;
  std::vector<int> slot_range;
  std::vector<int64_t> split_of;  // per owner index; empty: 4
  int phases = 1;

  bool has_unclaimed() const {
    if (ranges.empty()) return next.load(std::memory_order_relaxed) < n;
    for (const std::atomic<uint64_t>& r : ranges) {
      const uint64_t v = r.load(std::memory_order_relaxed);
      if (range_lo(v) < range_hi(v)) return true;
    }
    return false;
  }

  // Claims nothing more (the pool is going away).
  void stop() {
    next.store(n);
    for (std::atomic<uint64_t>& r : ranges) r.store(0);
  }

  // Claims [begin, end) for the thread in `slot`: phase by phase, its own range from the front,
  // then the back of the others'.
  bool claim(int slot, int64_t& begin, int64_t& end) {
    if (ranges.empty()) return claim_shared(begin, end);
    const int k = static_cast<int>(ranges.size()) / phases;
    const int own =
        slot_range.empty() ? slot % k : slot_range[static_cast<size_t>(slot) % slot_range.size()];
    const int64_t own_split = split_of.empty() ? 4 : split_of[static_cast<size_t>(own)];
    for (int p = 0; p < phases; ++p) {
      std::atomic<uint64_t>* phase =
          ranges.data() + static_cast<size_t>(p) * static_cast<size_t>(k);
      if (claim_front(phase[own], own_split, begin, end)) return true;
      for (int i = 1; i < k; ++i) {
        if (steal_back(phase[(own + i) % k], begin, end)) return true;
      }
    }
    return false;
  }

  // An owner's next chunk: its range's rest / parts (whole grains, at least one), from the front,
  // so that its chunks follow each other in memory.
  bool claim_front(std::atomic<uint64_t>& r, int64_t parts, int64_t& begin, int64_t& end) const {
    uint64_t v = r.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t lo = range_lo(v), hi = range_hi(v);
      if (lo >= hi) return false;
      const int64_t size = std::min(hi - lo, std::max(grain, (hi - lo) / parts / grain * grain));
      if (r.compare_exchange_weak(v, pack_range(lo + size, hi), std::memory_order_relaxed)) {
        begin = lo;
        end = lo + size;
        return true;
      }
    }
  }

  // Another thread's work: the back half of what its range has left (all of it below two grains).
  bool steal_back(std::atomic<uint64_t>& r, int64_t& begin, int64_t& end) const {
    uint64_t v = r.load(std::memory_order_relaxed);
    for (;;) {
      const int64_t lo = range_lo(v), hi = range_hi(v);
      if (lo >= hi) return false;
      const int64_t size =
          hi - lo < 2 * grain ? hi - lo : std::max(grain, (hi - lo) / 2 / grain * grain);
      if (r.compare_exchange_weak(v, pack_range(lo, hi - size), std::memory_order_relaxed)) {
        begin = hi - size;
        end = hi;
        return true;
      }
    }
  }

  // Claims [begin, end): a share of what is left, rounded down to whole grains (but at least
  // one), so chunk edges stay on grain multiples and only the last chunk is short.
  bool claim_shared(int64_t& begin, int64_t& end) {
    int64_t c = next.load(std::memory_order_relaxed);
    for (;;) {
      if (c >= n) return false;
      const int64_t left = n - c;
      const int64_t size = std::min(left, std::max(grain, left / split / grain * grain));
      if (next.compare_exchange_weak(c, c + size, std::memory_order_relaxed)) {
        begin = c;
        end = c + size;
        return true;
      }
    }
  }
};

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("ThreadPool: n_threads = {}, expected at least 1 (the caller counts)",
                            n_threads));
  }
  spin_us_ = env_int("KTX_SPIN_US", 200);
  // Pinned workers keep their caches and their NUMA node. Only a pool with one thread per allowed
  // CPU pins: with more threads pinning would stack them on one CPU, and a smaller pool pinned to
  // the first CPUs would stack on any other pool of the process (two models, a quantizer) while
  // the remaining CPUs idle — the scheduler places those better.
  const std::vector<int> cpus = allowed_cpus();
  pinned_ =
      n_threads > 1 && env_int("KTX_PIN", 1) != 0 && static_cast<size_t>(n_threads) == cpus.size();
  // The nodes of the pinned threads' CPUs (slot 0, the caller, counted on the first CPU: where a
  // pool of one thread per CPU leaves it room).
  if (pinned_ && env_int("KTX_NUMA", 1) != 0) {
    const std::vector<NumaNode> nodes = numa_nodes(cpus);
    if (nodes.size() > 1) {
      n_nodes_ = static_cast<int>(nodes.size());
      for (const NumaNode& node : nodes) node_ids_.push_back(node.id);
      for (int s = 0; s < n_threads; ++s) {
        int k = 0;
        for (size_t i = 0; i < nodes.size(); ++i) {
          const std::vector<int>& c = nodes[i].cpus;
          if (std::find(c.begin(), c.end(), cpus[static_cast<size_t>(s)]) != c.end()) {
            k = static_cast<int>(i);
          }
        }
        slot_node_.push_back(k);
      }
    }
  }
  start_workers(cpus);
}

ThreadPool::ThreadPool(int n_threads, std::vector<int> slot_nodes) : n_threads_(n_threads) {
  if (n_threads < 1 || slot_nodes.size() != static_cast<size_t>(n_threads)) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("ThreadPool: n_threads = {} with {} slot nodes, expected at least 1 "
                            "thread and one node per thread",
                            n_threads, slot_nodes.size()));
  }
  spin_us_ = env_int("KTX_SPIN_US", 200);
  for (int k : slot_nodes) {
    if (k < 0 || k >= n_threads) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("ThreadPool: slot node {} is not in [0, {})", k, n_threads));
    }
    n_nodes_ = std::max(n_nodes_, k + 1);
  }
  for (int k = 0; k < n_nodes_; ++k) {
    if (std::find(slot_nodes.begin(), slot_nodes.end(), k) == slot_nodes.end()) {
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("ThreadPool: node {} has no thread (every node below the highest "
                              "needs one)",
                              k));
    }
  }
  slot_node_ = std::move(slot_nodes);
  start_workers({});
}

void ThreadPool::start_workers(const std::vector<int>& cpus) {
  if (pinned_) {
    caller_cpu_ = cpus[0];
    worker_cpu_.assign(static_cast<size_t>(*std::max_element(cpus.begin(), cpus.end()) + 1), 0);
    for (size_t i = 1; i < cpus.size(); ++i) worker_cpu_[static_cast<size_t>(cpus[i])] = 1;
  }
  workers_.reserve(static_cast<size_t>(n_threads_ - 1));
  try {
    for (int i = 0; i + 1 < n_threads_; ++i) {
      const int cpu = pinned_ ? cpus[static_cast<size_t>(i + 1)] : -1;
      workers_.emplace_back([this, cpu, i] { worker_loop(cpu, i + 1); });
    }
  } catch (const std::system_error& e) {
    // No destructor runs for a half-built pool: stop and join the workers that did start.
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    posted_.fetch_add(1);
    posted_.notify_all();
    for (std::thread& t : workers_) t.join();
    throw Error(ErrorCode::kOutOfMemory,
                fmt::format("ThreadPool: could not start thread {} of {}: {}", workers_.size() + 2,
                            n_threads_, e.what()));
  }
}

int default_thread_count() {
  // The CPUs this process may run on (taskset, a container's cpuset), not all the machine's.
  const size_t allowed = allowed_cpus().size();
  if (allowed > 0) return static_cast<int>(allowed);
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard lock(mutex_);
    // An asynchronous job nobody waited for: start no more of its chunks; the running ones
    // finish before the workers go (they leave the job before they look at stopping_).
    for (Job* j = job_; j != nullptr; j = j->next_job) j->stop();
  }
  for (;;) {
    uint32_t seen;
    {
      std::lock_guard lock(mutex_);
      bool busy = false;
      for (Job* j = job_; j != nullptr; j = j->next_job) busy = busy || j->active > 0;
      if (!busy) {
        stopping_ = true;
        break;
      }
      seen = left_.load();
    }
    idle(left_, seen, left_sleepers_);
  }
  posted_.fetch_add(1);
  posted_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (Job* j = job_; j != nullptr;) {  // only an asynchronous job can be left
    Job* next = j->next_job;
    delete j;
    j = next;
  }
}

// Spins until `word` moves off `seen` or spin_us_ passes, then sleeps until it moves. Callers
// read `seen` before they last looked for their condition, so a change in between is never lost;
// `sleepers` (seq_cst on both sides, as the posters' increment of `word`) tells the posters
// whether a wake-up call is needed.
void ThreadPool::idle(std::atomic<uint32_t>& word, uint32_t seen,
                      std::atomic<int>& sleepers) const {
  if (spin_us_ > 0) {
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(spin_us_);
    for (int i = 1;; ++i) {
      if (word.load(std::memory_order_acquire) != seen) return;
      cpu_relax();
      if (i % 64 == 0) {
        if (std::chrono::steady_clock::now() >= until) break;
        // Every few microseconds: a thread that shares this CPU (the caller, when the system put
        // it here, or another process) gets it back at once instead of after a time slice.
        std::this_thread::yield();
      }
    }
  }
  sleepers.fetch_add(1);
  word.wait(seen);
  sleepers.fetch_sub(1);
}

void ThreadPool::run_chunks(Job& job, int slot) {
  int64_t begin, end;
  while (job.claim(slot, begin, end)) {
    if (job.failed.load(std::memory_order_relaxed)) continue;
    try {
      (*job.fn)(begin, end);
    } catch (...) {
      bool expected = false;
      if (job.failed.compare_exchange_strong(expected, true)) job.error = std::current_exception();
    }
  }
}

ThreadPool::Job* ThreadPool::find_job() {
  for (Job* j = job_; j != nullptr; j = j->next_job) {
    if (j->has_unclaimed()) return j;
  }
  return nullptr;
}

void ThreadPool::worker_loop(int cpu, int slot) {
  if (cpu >= 0) pin_to(cpu);
  t_worker_of = this;
  t_worker_slot = slot;
  for (;;) {
    const uint32_t seen = posted_.load();
    Job* job = nullptr;
    {
      std::lock_guard lock(mutex_);
      job = find_job();
      if (job == nullptr && stopping_) return;
      if (job != nullptr) ++job->active;
    }
    if (job == nullptr) {
      idle(posted_, seen, posted_sleepers_);
      continue;
    }
    run_chunks(*job, t_worker_slot);
    {
      std::lock_guard lock(mutex_);
      --job->active;
    }
    // After the unlock the job may be gone; only the pool's own counter is touched.
    left_.fetch_add(1);
    if (left_sleepers_.load() > 0) left_.notify_all();
  }
}

// The workers of a pinned pool each own a CPU and leave the first allowed one to the caller, whom
// the pool does not pin (the thread is the application's). But a caller that slept (between
// requests, in a GPU wait) may wake on a worker's CPU, idle while its worker slept; then the two
// share that CPU for as long as the scheduler leaves them there, while the caller's CPU idles
// (bench_thread_pool after 5 ms pauses: the worker ran 21-28% of a job's grains instead of half,
// and a 26 µs job took 5-15 µs longer than its share of the work). So a caller found on a
// worker's CPU is moved to its own: pinned there for a moment, then given its own affinity back,
// which leaves it where it now runs. Not where the caller's affinity excludes that CPU (it would
// be moved back at once); the check costs one sched_getcpu per job otherwise.
void ThreadPool::step_off_workers() const {
#if defined(__linux__)
  const int cpu = sched_getcpu();
  if (cpu < 0 || static_cast<size_t>(cpu) >= worker_cpu_.size() ||
      worker_cpu_[static_cast<size_t>(cpu)] == 0) {
    return;
  }
  cpu_set_t own;
  CPU_ZERO(&own);
  if (sched_getaffinity(0, sizeof own, &own) != 0 || !CPU_ISSET(caller_cpu_, &own)) return;
  cpu_set_t to;
  CPU_ZERO(&to);
  CPU_SET(caller_cpu_, &to);
  if (sched_setaffinity(0, sizeof to, &to) == 0) sched_setaffinity(0, sizeof own, &own);
#endif
}

void ThreadPool::post(Job* job, bool front) {
  if (pinned_ && t_worker_of != this) step_off_workers();
  {
    std::lock_guard lock(mutex_);
    Job** link = &job_;
    if (!front) {
      for (; *link != nullptr; link = &(*link)->next_job) {
        if ((*link)->async) {
          throw Error(ErrorCode::kInvalidArgument,
                      "ThreadPool::submit: an asynchronous job is already running; call wait() "
                      "first");
        }
      }
    }
    job->next_job = *link;
    *link = job;
  }
  posted_.fetch_add(1);
  if (posted_sleepers_.load() > 0) posted_.notify_all();
}

void ThreadPool::finish(Job& job) {
  for (;;) {
    uint32_t seen;
    {
      std::lock_guard lock(mutex_);
      if (!job.has_unclaimed() && job.active == 0) {
        Job** link = &job_;
        while (*link != &job) link = &(*link)->next_job;
        *link = job.next_job;
        return;
      }
      seen = left_.load();
    }
    idle(left_, seen, left_sleepers_);
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  grain = std::max<int64_t>(grain, 1);
  if (ran_inline(n, grain, fn)) return;
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.split = 4 * static_cast<int64_t>(n_threads_);
  run_here(job);
}

// Nothing to share out: no items, one thread, one grain, or a call from inside a task of this
// pool (whose workers may all be busy with the enclosing job). Runs it here and says so.
bool ThreadPool::ran_inline(int64_t n, int64_t grain,
                            const std::function<void(int64_t, int64_t)>& fn) const {
  if (n <= 0) return true;
  if (n_threads_ == 1 || grain >= n || t_worker_of == this) {
    fn(0, n);
    return true;
  }
  return false;
}

// A caller's job: in front of a running asynchronous one, worked on by the caller too, joined.
void ThreadPool::run_here(Job& job) {
  post(&job, /*front=*/true);
  run_chunks(job, 0);
  finish(job);
  if (job.error) std::rethrow_exception(job.error);
}

void ThreadPool::parallel_for_streams(int64_t n, int64_t grain,
                                      const std::function<void(int64_t, int64_t)>& fn) {
  if (n >= (int64_t{1} << 32)) {  // the packed ranges hold 32-bit indices
    parallel_for(n, grain, fn);
    return;
  }
  grain = std::max<int64_t>(grain, 1);
  if (ran_inline(n, grain, fn)) return;
  Job job;
  job.fn = &fn;
  job.n = n;
  job.grain = grain;
  job.ranges = std::vector<std::atomic<uint64_t>>(static_cast<size_t>(n_threads_));
  // Thread t starts at t/threads of the way, on a grain boundary.
  for (int t = 0; t < n_threads_; ++t) {
    const auto edge = [&](int i) {
      return i == n_threads_ ? n : n * i / n_threads_ / grain * grain;
    };
    job.ranges[static_cast<size_t>(t)].store(pack_range(edge(t), edge(t + 1)));
  }
  run_here(job);
}

void ThreadPool::submit(int64_t n, int64_t grain, std::function<void(int64_t, int64_t)> fn) {
  auto job = std::make_unique<Job>();
  job->owned = std::move(fn);
  job->fn = &job->owned;
  job->n = std::max<int64_t>(n, 0);
  job->grain = std::max<int64_t>(grain, 1);
  job->split = 4 * static_cast<int64_t>(n_threads_);
  job->async = true;
  // Behind any parallel_for job, so that a waiting caller keeps priority. Without workers (a
  // pool of 1) the job just waits in the list until wait() runs it.
  post(job.get(), /*front=*/false);
  job.release();  // the list owns it now
}

void ThreadPool::submit_nodes(std::vector<int64_t> bounds, int phases, int64_t grain,
                              std::function<void(int64_t, int64_t)> fn) {
  const size_t want = static_cast<size_t>(std::max(phases, 1) * std::max(n_nodes_, 1)) + 1;
  bool ordered = phases >= 1 && bounds.size() == want && bounds.front() == 0;
  for (size_t i = 1; ordered && i < bounds.size(); ++i) ordered = bounds[i - 1] <= bounds[i];
  if (!ordered) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("ThreadPool::submit_nodes: {} bounds for {} phase(s) of {} node(s); "
                            "expected {} non-decreasing ones from 0",
                            bounds.size(), phases, n_nodes_, want));
  }
  const int64_t n = bounds.back();
  if (n_nodes_ <= 1 || n >= (int64_t{1} << 32)) {
    submit(n, grain, std::move(fn));
    return;
  }
  auto job = std::make_unique<Job>();
  job->owned = std::move(fn);
  job->fn = &job->owned;
  job->n = n;
  job->grain = std::max<int64_t>(grain, 1);
  job->async = true;
  job->phases = phases;
  job->ranges = std::vector<std::atomic<uint64_t>>(want - 1);
  for (size_t r = 0; r + 1 < want; ++r) job->ranges[r].store(pack_range(bounds[r], bounds[r + 1]));
  job->slot_range = slot_node_;
  // A node's range is shared by its threads: each takes a quarter's share of the rest at a time.
  job->split_of.assign(static_cast<size_t>(n_nodes_), 0);
  for (int k : slot_node_) job->split_of[static_cast<size_t>(k)] += 4;
  post(job.get(), /*front=*/false);
  job.release();  // the list owns it now
}

void ThreadPool::wait() {
  Job* found = nullptr;
  {
    std::lock_guard lock(mutex_);
    for (Job* j = job_; j != nullptr; j = j->next_job) {
      if (j->async) found = j;
    }
  }
  if (found == nullptr) return;  // nothing submitted: nothing to wait for
  std::unique_ptr<Job> job(found);
  // The caller works on the job too (its tasks may call parallel_for, which then runs inline as
  // on a worker: the workers may all be inside this job).
  const ThreadPool* outer = t_worker_of;
  t_worker_of = this;
  run_chunks(*job, 0);  // the caller's slot (it may be another pool's worker)
  t_worker_of = outer;
  finish(*job);
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace ktx::runtime
