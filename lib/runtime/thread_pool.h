// A persistent pool of worker threads for CPU operators: parallel_for over index ranges, and
// asynchronous submit/wait so that CPU work (the routed experts) can run while the caller does
// something else. Workers sleep on a condition variable when idle: no busy spinning.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ktx::runtime {

class ThreadPool {
 public:
  // n_threads counts the calling thread: a pool of 1 runs everything inline.
  explicit ThreadPool(int n_threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return n_threads_; }

  // Runs fn(begin, end) over [0, n) split into chunks of at least `grain`; returns when all are
  // done. The calling thread works too. Exceptions from fn are rethrown here (the first one).
  void parallel_for(int64_t n, int64_t grain, const std::function<void(int64_t, int64_t)>& fn);

  // Starts fn(begin, end) over [0, n) on the workers and returns at once; wait() joins (the
  // caller helps while it waits). One asynchronous job at a time. parallel_for may run while it
  // is in flight: idle workers help with both, the caller's own job first. A parallel_for called
  // from inside a task runs inline, so nesting cannot deadlock.
  void submit(int64_t n, int64_t grain, std::function<void(int64_t, int64_t)> fn);
  void wait();

 private:
  struct Job;
  void worker_loop(int index);
  void run_chunks(Job& job);

  int n_threads_;
  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  Job* job_ = nullptr;
  uint64_t generation_ = 0;
  bool stopping_ = false;
};

}  // namespace ktx::runtime
