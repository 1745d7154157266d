// ThreadPool: every index runs exactly once, the caller works too (in wait() as well), exceptions
// come back, submit() really is asynchronous, parallel_for works while an asynchronous job runs
// (CPU-only decode: shared experts under routed experts), nested calls do not deadlock, idle
// workers sleep, chunks keep to grain multiples, workers are pinned unless KTX_PIN=0;
// parallel_for_streams: contiguous shares, stealing from a blocked thread.
#if defined(__linux__)
#include <sched.h>
#endif

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ktx/error.h"
#include "runtime/thread_pool.h"

using ktx::runtime::ThreadPool;

namespace {

// A one-shot gate a task can block on until the test opens it.
class Gate {
 public:
  void open() {
    {
      std::lock_guard lock(m_);
      open_ = true;
    }
    cv_.notify_all();
  }
  void pass() {
    std::unique_lock lock(m_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace

TEST_CASE("parallel_for runs every index exactly once", "[thread_pool]") {
  const int threads = GENERATE(1, 2, 3, 8);
  ThreadPool pool(threads);
  REQUIRE(pool.size() == threads);
  for (int64_t n : {0, 1, 2, 3, 7, 17, 100, 1000, 4097}) {
    for (int64_t grain : {1, 3, 64, 10000}) {
      INFO("threads " << threads << " n " << n << " grain " << grain);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::atomic<int> calls{0}, empty{0};  // Catch2 assertions are not thread-safe
      pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        if (b >= e) empty.fetch_add(1);
        calls.fetch_add(1);
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
      });
      REQUIRE(empty.load() == 0);
      for (int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == 1);
      if (n > 0) REQUIRE(calls.load() <= (n + grain - 1) / grain);
    }
  }
}

TEST_CASE("parallel_for uses the caller and the workers", "[thread_pool]") {
  SECTION("a pool of one runs inline on the caller") {
    ThreadPool pool(1);
    std::set<std::thread::id> ids;
    pool.parallel_for(100, 1, [&](int64_t, int64_t) { ids.insert(std::this_thread::get_id()); });
    REQUIRE(ids == std::set<std::thread::id>{std::this_thread::get_id()});
  }
  SECTION("with three threads, chunks that wait for each other finish only if all three run") {
    ThreadPool pool(3);
    // Three chunks that each wait until all three have started: completes only when the caller
    // and both workers work at the same time.
    std::atomic<int> started{0};
    std::mutex m;
    std::set<std::thread::id> ids;
    pool.parallel_for(3, 1, [&](int64_t, int64_t) {
      {
        std::lock_guard lock(m);
        ids.insert(std::this_thread::get_id());
      }
      started.fetch_add(1);
      while (started.load() < 3) std::this_thread::yield();
    });
    REQUIRE(ids.size() == 3);
    REQUIRE(ids.count(std::this_thread::get_id()) == 1);
  }
}

TEST_CASE("parallel_for rethrows the first exception and the pool stays usable", "[thread_pool]") {
  const int threads = GENERATE(1, 3);
  ThreadPool pool(threads);
  REQUIRE_THROWS_WITH(pool.parallel_for(50, 1,
                                        [&](int64_t b, int64_t e) {
                                          if (b <= 17 && 17 < e) {
                                            throw std::runtime_error("chunk 17");
                                          }
                                        }),
                      "chunk 17");
  std::atomic<int64_t> sum{0};
  pool.parallel_for(1000, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) sum.fetch_add(i);
  });
  REQUIRE(sum.load() == 999 * 1000 / 2);
}

TEST_CASE("submit returns before the work is done and wait joins it", "[thread_pool]") {
  SECTION("with workers") {
    ThreadPool pool(3);
    Gate gate;
    std::atomic<int> done{0};
    pool.submit(4, 1, [&](int64_t b, int64_t e) {
      gate.pass();  // blocks until the caller has come back from submit()
      done.fetch_add(static_cast<int>(e - b));
    });
    REQUIRE(done.load() == 0);
    gate.open();
    pool.wait();
    REQUIRE(done.load() == 4);
  }
  SECTION("a pool of one runs the job in wait()") {
    ThreadPool pool(1);
    std::atomic<int> done{0};
    pool.submit(10, 1, [&](int64_t b, int64_t e) { done.fetch_add(static_cast<int>(e - b)); });
    REQUIRE(done.load() == 0);
    pool.wait();
    REQUIRE(done.load() == 10);
  }
  SECTION("wait() without submit() does nothing; an empty job is fine") {
    ThreadPool pool(2);
    pool.wait();
    std::atomic<int> calls{0};
    pool.submit(0, 1, [&](int64_t, int64_t) { calls.fetch_add(1); });
    pool.wait();
    REQUIRE(calls.load() == 0);
  }
}

TEST_CASE("submit/wait propagates exceptions; one asynchronous job at a time", "[thread_pool]") {
  const int threads = GENERATE(1, 2, 3);
  ThreadPool pool(threads);
  pool.submit(20, 1, [](int64_t b, int64_t e) {
    if (b <= 5 && 5 < e) throw std::logic_error("async chunk 5");
  });
  REQUIRE_THROWS_WITH(pool.wait(), "async chunk 5");

  pool.submit(1, 1, [](int64_t, int64_t) {});
  REQUIRE_THROWS_AS(pool.submit(1, 1, [](int64_t, int64_t) {}), ktx::Error);
  pool.wait();
  std::atomic<int> n{0};
  pool.submit(8, 1, [&](int64_t b, int64_t e) { n.fetch_add(static_cast<int>(e - b)); });
  pool.wait();
  REQUIRE(n.load() == 8);
}

TEST_CASE("parallel_for while an asynchronous job runs (shared experts under routed ones)",
          "[thread_pool]") {
  const int threads = GENERATE(1, 2, 3, 5);
  ThreadPool pool(threads);
  for (int rep = 0; rep < 50; ++rep) {
    std::vector<int> a(5000, 0), b(3000, 0);
    pool.submit(static_cast<int64_t>(a.size()), 7, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) a[static_cast<size_t>(i)] += 1;
    });
    pool.parallel_for(static_cast<int64_t>(b.size()), 5, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) b[static_cast<size_t>(i)] += 2;
    });
    pool.wait();
    for (int v : a) REQUIRE(v == 1);
    for (int v : b) REQUIRE(v == 2);
  }
}

TEST_CASE("a parallel_for inside a task runs inline instead of deadlocking", "[thread_pool]") {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  pool.parallel_for(6, 1, [&](int64_t, int64_t) {
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  });
  REQUIRE(total.load() == 60);
  pool.submit(4, 1, [&](int64_t, int64_t) {
    pool.parallel_for(10, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  });
  pool.wait();
  REQUIRE(total.load() == 100);
}

TEST_CASE("many small jobs in a row (races between posting and finishing)", "[thread_pool]") {
  ThreadPool pool(4);
  int64_t expected = 0;
  std::atomic<int64_t> sum{0};
  for (int rep = 0; rep < 3000; ++rep) {
    const int64_t n = 1 + rep % 13;
    pool.parallel_for(n, 1, [&](int64_t b, int64_t e) { sum.fetch_add(e - b); });
    expected += n;
  }
  REQUIRE(sum.load() == expected);
}

TEST_CASE("a destroyed pool joins an unwaited job and idle workers do not spin", "[thread_pool]") {
  {
    ThreadPool pool(3);
    pool.submit(100, 1, [](int64_t, int64_t) {
      std::this_thread::sleep_for(std::chrono::microseconds(50));
    });
  }  // must not hang or crash
  ThreadPool pool(4);
  pool.parallel_for(100, 1, [](int64_t, int64_t) {});
  const std::clock_t cpu0 = std::clock();
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const double cpu_s = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;
  INFO("process CPU time while the pool idled 200 ms: " << cpu_s << " s");
  REQUIRE(cpu_s < 0.05);  // three spinning workers would burn ~0.6 s
}

TEST_CASE("a pool needs at least one thread", "[thread_pool]") {
  REQUIRE_THROWS_AS(ThreadPool(0), ktx::Error);
}

TEST_CASE("parallel_for chunks start on grain multiples; only the last may be short",
          "[thread_pool]") {
  const int threads = GENERATE(2, 3);
  ThreadPool pool(threads);
  for (int64_t n : {16, 17, 1000, 102400}) {
    for (int64_t grain : {1, 8, 16}) {
      INFO("threads " << threads << " n " << n << " grain " << grain);
      std::mutex m;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      pool.parallel_for(n, grain, [&](int64_t b, int64_t e) {
        std::lock_guard lock(m);
        chunks.emplace_back(b, e);
      });
      int64_t covered = 0;
      for (const auto& [b, e] : chunks) {
        REQUIRE(b % grain == 0);
        REQUIRE(e > b);
        if (e != n) REQUIRE((e - b) % grain == 0);
        covered += e - b;
      }
      REQUIRE(covered == n);
    }
  }
}

TEST_CASE("wait() works on the job with the workers", "[thread_pool]") {
  // Two tasks that each wait until both have started: with one worker this finishes only if the
  // caller takes the other task while it waits.
  ThreadPool pool(2);
  std::atomic<int> started{0};
  std::mutex m;
  std::set<std::thread::id> ids;
  pool.submit(2, 1, [&](int64_t, int64_t) {
    {
      std::lock_guard lock(m);
      ids.insert(std::this_thread::get_id());
    }
    started.fetch_add(1);
    while (started.load() < 2) std::this_thread::yield();
  });
  pool.wait();
  REQUIRE(ids.size() == 2);
  REQUIRE(ids.count(std::this_thread::get_id()) == 1);
}

#if defined(__linux__)
TEST_CASE("workers are pinned to one CPU each unless KTX_PIN=0", "[thread_pool]") {
  cpu_set_t all;
  REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0);
  const int n_cpus = CPU_COUNT(&all);
  if (n_cpus < 2) {
    WARN("one CPU: the pool does not pin");
    return;
  }
  // A worker's CPUs, from inside a task that only a worker can run (the caller is busy in the
  // other task until the worker's has run).
  auto worker_cpus = [](ThreadPool& pool) {
    std::atomic<int> seen{-1};
    std::atomic<bool> done{false};
    const std::thread::id caller = std::this_thread::get_id();
    pool.parallel_for(2, 1, [&](int64_t, int64_t) {
      if (std::this_thread::get_id() == caller) {
        while (!done.load()) std::this_thread::yield();
        return;
      }
      cpu_set_t set;
      sched_getaffinity(0, sizeof set, &set);
      seen.store(CPU_COUNT(&set));
      done.store(true);
    });
    return seen.load();
  };
  const char* outer = std::getenv("KTX_PIN");
  const std::string saved = outer != nullptr ? outer : "";
  setenv("KTX_PIN", "1", 1);
  {
    ThreadPool pool(2);
    REQUIRE(pool.pinned());
    REQUIRE(worker_cpus(pool) == 1);
  }
  setenv("KTX_PIN", "0", 1);
  {
    ThreadPool pool(2);
    REQUIRE_FALSE(pool.pinned());
    REQUIRE(worker_cpus(pool) == n_cpus);
  }
  if (outer != nullptr) {
    setenv("KTX_PIN", saved.c_str(), 1);
  } else {
    unsetenv("KTX_PIN");
  }
  // More threads than CPUs: nobody is pinned.
  ThreadPool crowded(n_cpus + 1);
  REQUIRE_FALSE(crowded.pinned());
}

TEST_CASE("a caller found on a pinned worker's CPU is moved to its own CPU, its affinity kept",
          "[thread_pool]") {
  cpu_set_t all;
  REQUIRE(sched_getaffinity(0, sizeof all, &all) == 0);
  const int n_cpus = CPU_COUNT(&all);
  const char* outer = std::getenv("KTX_PIN");
  if (n_cpus < 2 || (outer != nullptr && std::string(outer) == "0")) {
    WARN("one CPU, or KTX_PIN=0: the pool does not pin");
    return;
  }
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c) {
    if (CPU_ISSET(c, &all)) cpus.push_back(c);
  }
  ThreadPool pool(n_cpus);  // one thread per CPU: the workers on cpus[1..], cpus[0] left free
  REQUIRE(pool.pinned());
  const int worker_cpu = cpus.back();
  const auto only = [](int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return set;
  };
  // Whatever fails below, the thread gets its whole affinity back for the tests after this one.
  struct Restore {
    cpu_set_t set;
    ~Restore() { sched_setaffinity(0, sizeof set, &set); }
  } restore{all};
  // Onto the worker's CPU, with the whole affinity back: the thread stays there (as one that
  // woke up there would) until a job is posted. The scheduler may also move it at any moment (a
  // busy machine), so each check gets a few tries; without the move a try passes only if the
  // scheduler happens to do the same within microseconds.
  const cpu_set_t on_worker = only(worker_cpu);
  bool moved = false, placed = false;
  for (int attempt = 0; attempt < 5 && !moved; ++attempt) {
    REQUIRE(sched_setaffinity(0, sizeof on_worker, &on_worker) == 0);
    REQUIRE(sched_setaffinity(0, sizeof all, &all) == 0);
    if (sched_getcpu() != worker_cpu) continue;
    placed = true;
    pool.parallel_for(2, 1, [](int64_t, int64_t) {});
    moved = sched_getcpu() == cpus.front();
  }
  if (!placed) {
    WARN("the scheduler kept moving this thread off the worker's CPU; nothing to check");
    return;
  }
  CHECK(moved);
  cpu_set_t now;
  REQUIRE(sched_getaffinity(0, sizeof now, &now) == 0);
  CHECK(CPU_EQUAL(&now, &all));

  // An affinity without the caller's CPU is left as it is, and the thread where it runs (the only
  // CPU it may use).
  REQUIRE(sched_setaffinity(0, sizeof on_worker, &on_worker) == 0);
  pool.parallel_for(2, 1, [](int64_t, int64_t) {});
  CHECK(sched_getcpu() == worker_cpu);
  REQUIRE(sched_getaffinity(0, sizeof now, &now) == 0);
  CHECK(CPU_EQUAL(&now, &on_worker));
}
#endif

TEST_CASE("parallel_for_streams: every index once, contiguous shares, stealing, errors",
          "[thread_pool]") {
  const int threads = GENERATE(1, 2, 3, 8);
  ThreadPool pool(threads);
  for (int64_t n : {0, 1, 2, 3, 7, 17, 100, 1000, 4097}) {
    for (int64_t grain : {1, 3, 64, 10000}) {
      INFO("threads " << threads << " n " << n << " grain " << grain);
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      std::mutex m;
      std::vector<std::pair<int64_t, int64_t>> chunks;
      pool.parallel_for_streams(n, grain, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
        std::lock_guard lock(m);
        chunks.emplace_back(b, e);
      });
      for (int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == 1);
      for (const auto& [b, e] : chunks) REQUIRE(b < e);  // no empty chunks
    }
  }
}

TEST_CASE("parallel_for_streams: a blocked thread's share is stolen by the others",
          "[thread_pool]") {
  ThreadPool pool(3);
  Gate gate;
  std::atomic<int64_t> done{0};
  std::atomic<bool> blocked{false};
  std::atomic<bool> gave_up{false};
  std::thread opener([&] {
    // Opens once the other threads have done everything but the blocked chunk (or, so that a
    // broken pool fails instead of hanging, after 20 s).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (done.load() < 900 - 1) {
      if (std::chrono::steady_clock::now() > deadline) {
        gave_up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    gate.open();
  });
  // 900 items: shares of 300. The first chunk that contains index 0 (the caller's share) blocks
  // until the rest is done, so the workers must steal the rest of the caller's share.
  pool.parallel_for_streams(900, 1, [&](int64_t b, int64_t e) {
    if (b == 0 && !blocked.exchange(true)) {
      done.fetch_add(e - b - 1);
      gate.pass();
      done.fetch_add(1);
      return;
    }
    done.fetch_add(e - b);
  });
  opener.join();
  CHECK_FALSE(gave_up.load());
  CHECK(done.load() == 900);
}

TEST_CASE("parallel_for_streams rethrows the first exception; nested calls run inline",
          "[thread_pool]") {
  ThreadPool pool(3);
  CHECK_THROWS_AS(pool.parallel_for_streams(1000, 1,
                                            [&](int64_t b, int64_t) {
                                              if (b <= 500) throw std::runtime_error("boom");
                                            }),
                  std::runtime_error);
  std::atomic<int64_t> total{0};
  pool.parallel_for_streams(10, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      pool.parallel_for_streams(100, 1, [&](int64_t b2, int64_t e2) { total.fetch_add(e2 - b2); });
    }
  });
  CHECK(total.load() == 1000);
  // Past 32-bit indices it is parallel_for (the packed shares hold 32-bit indices).
  std::atomic<int64_t> covered{0};
  pool.parallel_for_streams(int64_t{1} << 33, int64_t{1} << 31,
                            [&](int64_t b, int64_t e) { covered.fetch_add(e - b); });
  CHECK(covered.load() == (int64_t{1} << 33));
}
