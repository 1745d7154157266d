// A persistent pool of worker threads for CPU operators: parallel_for over index ranges, and
// asynchronous submit/wait so that CPU work (the routed experts) can run while the caller does
// something else. Workers are pinned one per allowed CPU, claim chunks dynamically (large first,
// smaller towards the end, so a slow or preempted thread does not hold up the rest), spin for a
// short while after their last chunk — decode posts the next job within microseconds — and then
// sleep on a futex: a pool idle for long costs no CPU.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "runtime/numa.h"

namespace ktx::runtime {

// Threads to use when the user gives none: the CPUs this process may run on (its affinity
// mask), which is less than std::thread::hardware_concurrency() under taskset or a cpuset.
int default_thread_count();

class ThreadPool {
 public:
  // n_threads counts the calling thread: a pool of 1 runs everything inline.
  //
  // Environment: KTX_PIN=0 leaves the workers unpinned (default: worker i runs on the (i+1)-th
  // CPU this process may use, the first being left to the caller; no pinning when there are
  // more threads than CPUs; the caller is not pinned, but one found on a worker's CPU when it
  // posts a job is moved to the first CPU, its affinity unchanged). KTX_SPIN_US=N: how long an
  // idle thread spins before it sleeps (default 200; 0 sleeps at once).
  explicit ThreadPool(int n_threads);
  // For tests: a pool whose thread in slot s (0: the caller, s: worker s) counts as being on
  // node slot_nodes[s] (0 .. nodes - 1), whatever the machine has. No memory is bound for it
  // (node_id() is -1).
  ThreadPool(int n_threads, std::vector<int> slot_nodes);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(begin, end) over [0, n) in chunks of at least `grain` items (multiples of it, but the
  // last); returns when all are done. The calling thread works too. Chunks are claimed one at a
  // time from a shared counter, each about 1/(4·threads) of what is left, so early chunks are
  // long streams and the last ones short enough to even out, also when another process slows
  // one thread (it then holds at most a small chunk when the others run out of work).
  // Exceptions from fn are rethrown here (the first one).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // parallel_for for memory streams (decode's matrix-vector products): thread t starts on its own
  // contiguous share [t·n/threads, (t+1)·n/threads) (on grain boundaries) and works through it
  // front to back in shrinking chunks, so each thread reads one sequential stream that the
  // hardware prefetchers follow; a thread that runs out steals the back half of what another has
  // left, so a thread slowed by another process holds up no one for long.
  void parallel_for_streams(int64_t n, int64_t grain,
                            const std::function<void(int64_t, int64_t)>& fn);

  // Starts fn(begin, end) over [0, n) on the workers and returns at once; wait() joins, and the
  // caller works on the job while it waits. One asynchronous job at a time. parallel_for may run
  // while it is in flight: idle workers help with both, the caller's own job first. A
  // parallel_for called from inside a task runs inline, so nesting cannot deadlock.
  void submit(int64_t n, int64_t grain, std::function<void(int64_t, int64_t)> fn);
  void wait();

  // Like submit, over [0, bounds.back()) split into one range per phase and NUMA node: range
  // r = p · n_nodes() + k, [bounds[r], bounds[r + 1]), holds node k's items of phase p (bounds:
  // phases · n_nodes() + 1 non-decreasing entries from 0, else ktx::Error kInvalidArgument). A
  // thread takes phase 0 first — its own node's range front to back (the node's threads share
  // it), then the back half of another node's rest — and only then phase 1 …, so work a later
  // phase waits for is never left behind. With one node it is submit().
  void submit_nodes(std::vector<int64_t> bounds, int phases, int64_t grain,
                    std::function<void(int64_t, int64_t)> fn);

  // The NUMA nodes the threads are spread over: more than one only when the workers are pinned
  // (one per allowed CPU) on a machine with several nodes, and KTX_NUMA is not "0".
  int n_nodes() const { return n_nodes_; }
  // The kernel's number of node k (for binding memory), or -1 for a test pool's made-up nodes.
  int node_id(int k) const {
    return k >= 0 && k < static_cast<int>(node_ids_.size()) ? node_ids_[static_cast<size_t>(k)]
                                                            : -1;
  }

  // Whether the workers were pinned to CPUs (bench_thread_pool reports it).
  bool pinned() const { return pinned_; }

 private:
  struct Job;
  void worker_loop(int cpu, int slot);
  void run_chunks(Job& job, int slot);  // slot: the thread's place (0: a caller)
  void run_here(Job& job);              // post, work on it, join, rethrow
  bool ran_inline(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn) const;
  Job* find_job();                  // under mutex_: the first job with unclaimed chunks
  void post(Job* job, bool front);  // links the job in and wakes the workers
  void finish(Job& job);            // waits until every chunk is done, unlinks the job
  void idle(std::atomic<uint32_t>& word, uint32_t seen, std::atomic<int>& sleepers) const;

  void start_workers(const std::vector<int>& cpus);
  void step_off_workers() const;  // a caller on a pinned worker's CPU moves to the caller's CPU

  int n_threads_;
  int n_nodes_ = 1;
  std::vector<int> slot_node_;  // node index of each slot (empty: one node)
  std::vector<int> node_ids_;   // the kernel's id of each node index (empty: made up or one node)
  int spin_us_ = 200;
  bool pinned_ = false;
  int caller_cpu_ = -1;           // pinned: the CPU the workers leave to the caller
  std::vector<char> worker_cpu_;  // pinned: whether CPU c has a worker (indexed by CPU number)
  std::vector<std::thread> workers_;
  std::mutex mutex_;  // guards the job list and each job's `active`
  Job* job_ = nullptr;
  bool stopping_ = false;
  // Bumped when work is posted (workers wait on it) and when a thread leaves a job (a caller in
  // finish() waits on it); the counts say whether anyone sleeps, so that posting and finishing
  // make no system call while everybody spins.
  std::atomic<uint32_t> posted_{0};
  std::atomic<uint32_t> left_{0};
  std::atomic<int> posted_sleepers_{0};
  std::atomic<int> left_sleepers_{0};
};

}  // namespace ktx::runtime
