// ThreadPool: persistent workers that sleep on a condition variable and claim chunks of the
// active jobs through an atomic counter. Jobs form a short list (job_ is its head): the
// asynchronous one from submit() and, while it runs, the caller's parallel_for jobs, which are
// put in front so that a waiting caller is served first. So CPU-only decode can run the shared
// experts (parallel_for) while the routed experts (submit) are in flight, and idle workers help
// with both.
#include "runtime/thread_pool.h"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <exception>
#include <memory>

#include "ktx/error.h"

namespace ktx::runtime {

namespace {
// Set on the pool's own workers: a parallel_for issued from inside a task runs inline instead of
// waiting on workers that may all be busy with the enclosing job (which would deadlock).
thread_local const ThreadPool* t_worker_of = nullptr;
}  // namespace

struct ThreadPool::Job {
  std::function<void(int64_t, int64_t)> fn;
  int64_t n = 0;
  int64_t chunk = 1;
  int64_t n_chunks = 0;
  std::atomic<int64_t> next{0};     // next chunk to claim; may overshoot n_chunks
  std::atomic<bool> failed{false};  // after the first exception, remaining chunks are skipped
  std::exception_ptr error;         // the first exception (written once, guarded by `failed`)
  int active = 0;                   // workers inside run_chunks (guarded by the pool mutex)
  bool async = false;               // from submit(): owned by the list, freed by wait()
  Job* next_job = nullptr;          // the list of running jobs (guarded by the pool mutex)

  bool has_unclaimed() const { return next.load(std::memory_order_relaxed) < n_chunks; }
};

namespace {

// Chunks of at least `grain` items, and about four per thread so that uneven chunks balance out.
int64_t chunk_size(int64_t n, int64_t grain, int threads) {
  const int64_t target = (n + 4 * threads - 1) / (4 * static_cast<int64_t>(threads));
  return std::max<int64_t>({grain, target, 1});
}

}  // namespace

ThreadPool::ThreadPool(int n_threads) : n_threads_(n_threads) {
  if (n_threads < 1) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("ThreadPool: n_threads = {}, expected at least 1 (the caller counts)",
                            n_threads));
  }
  workers_.reserve(static_cast<size_t>(n_threads - 1));
  for (int i = 0; i + 1 < n_threads; ++i) workers_.emplace_back([this, i] { worker_loop(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::unique_lock lock(mutex_);
    // An asynchronous job nobody waited for: start no more of its chunks, and let the ones
    // running finish before the workers go.
    for (Job* j = job_; j != nullptr; j = j->next_job) j->next.store(j->n_chunks);
    done_.wait(lock, [this] {
      for (Job* j = job_; j != nullptr; j = j->next_job) {
        if (j->active > 0) return false;
      }
      return true;
    });
    stopping_ = true;
  }
  wake_.notify_all();
  for (std::thread& t : workers_) t.join();
  for (Job* j = job_; j != nullptr;) {  // only an asynchronous job can be left
    Job* next = j->next_job;
    delete j;
    j = next;
  }
}

void ThreadPool::run_chunks(Job& job) {
  for (;;) {
    const int64_t c = job.next.fetch_add(1, std::memory_order_relaxed);
    if (c >= job.n_chunks) return;
    if (job.failed.load(std::memory_order_relaxed)) continue;
    const int64_t begin = c * job.chunk;
    const int64_t end = std::min(job.n, begin + job.chunk);
    try {
      job.fn(begin, end);
    } catch (...) {
      bool expected = false;
      if (job.failed.compare_exchange_strong(expected, true)) job.error = std::current_exception();
    }
  }
}

void ThreadPool::worker_loop(int /*index*/) {
  t_worker_of = this;
  std::unique_lock lock(mutex_);
  for (;;) {
    Job* job = nullptr;
    wake_.wait(lock, [&] {
      for (Job* j = job_; j != nullptr; j = j->next_job) {
        if (j->has_unclaimed()) {
          job = j;
          return true;
        }
      }
      return stopping_;
    });
    if (job == nullptr) return;  // stopping, nothing left
    ++job->active;
    lock.unlock();
    run_chunks(*job);
    lock.lock();
    if (--job->active == 0) done_.notify_all();
  }
}

void ThreadPool::parallel_for(int64_t n, int64_t grain,
                              const std::function<void(int64_t, int64_t)>& fn) {
  if (n <= 0) return;
  const int64_t chunk = chunk_size(n, grain, n_threads_);
  if (n_threads_ == 1 || chunk >= n || t_worker_of == this) {
    fn(0, n);
    return;
  }
  Job job;
  job.fn = fn;  // a copy of the callable wrapper only; what it captures is shared
  job.n = n;
  job.chunk = chunk;
  job.n_chunks = (n + chunk - 1) / chunk;
  {
    std::lock_guard lock(mutex_);
    job.next_job = job_;  // in front of a running asynchronous job
    job_ = &job;
    ++generation_;
  }
  wake_.notify_all();
  run_chunks(job);
  {
    std::unique_lock lock(mutex_);
    // Every chunk is claimed once run_chunks returns; wait for the workers still inside one.
    done_.wait(lock, [&] { return job.active == 0; });
    Job** link = &job_;
    while (*link != &job) link = &(*link)->next_job;
    *link = job.next_job;
  }
  if (job.error) std::rethrow_exception(job.error);
}

void ThreadPool::submit(int64_t n, int64_t grain, std::function<void(int64_t, int64_t)> fn) {
  auto job = std::make_unique<Job>();
  job->fn = std::move(fn);
  job->n = std::max<int64_t>(n, 0);
  job->async = true;
  if (job->n > 0) {
    job->chunk = chunk_size(job->n, grain, std::max(1, n_threads_ - 1));
    job->n_chunks = (job->n + job->chunk - 1) / job->chunk;
  }
  {
    std::lock_guard lock(mutex_);
    // Behind any parallel_for job, so that a waiting caller keeps priority. Without workers
    // (a pool of 1) the job just waits in the list until wait() runs it.
    Job** link = &job_;
    for (; *link != nullptr; link = &(*link)->next_job) {
      if ((*link)->async) {
        throw Error(ErrorCode::kInvalidArgument,
                    "ThreadPool::submit: an asynchronous job is already running; call wait() "
                    "first");
      }
    }
    *link = job.release();
    ++generation_;
  }
  wake_.notify_all();
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
  if (workers_.empty()) run_chunks(*job);  // no workers: the work happens here
  {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [&] { return !job->has_unclaimed() && job->active == 0; });
    Job** link = &job_;
    while (*link != job.get()) link = &(*link)->next_job;
    *link = job->next_job;
  }
  if (job->error) std::rethrow_exception(job->error);
}

}  // namespace ktx::runtime
