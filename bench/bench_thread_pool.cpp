// bench_thread_pool: what runtime::ThreadPool costs per job — an empty parallel_for (one chunk
// per thread), an empty submit + wait, and an empty parallel_for_streams over decode's grains (a
// 2048-row matrix in blocks of 16: every claim of every thread, the cost a decode GEMV pays
// besides its kernel) — with the workers still spinning from the last job
// (back to back, as inside a decode step) and with them asleep (after a pause longer than the
// spin, as between requests). Also the CPU time an idle pool burns. An empty job can end before a
// worker joins it (the caller claims every grain itself), which times the caller alone; so a job
// with work is timed too: 128 grains of 200 ns each, after 20 µs of the caller's own work (as
// decode's jobs follow its serial steps), reported as the time beyond the work's share per
// thread, beside the share of the grains the workers ran (1 - 1/threads when they all join).
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "runtime/thread_pool.h"

namespace {

constexpr const char* kUsage =
    "usage: bench_thread_pool [-t N] [--repeats N] [--json]\n"
    "  microseconds per empty parallel_for, per empty submit + wait and per empty\n"
    "  parallel_for_streams of 128 grains, with 1..N threads\n"
    "  (default: every CPU): back to back (workers spinning) and after a 5 ms pause (workers\n"
    "  asleep); and a parallel_for_streams of 128 grains of 200 ns each after 20 us of the\n"
    "  caller's own work: microseconds beyond the work's share per thread, and the share of\n"
    "  grains the workers ran; median of N rounds (5). KTX_PIN and KTX_SPIN_US apply\n"
    "  (runtime/thread_pool.h).\n";

using Clock = std::chrono::steady_clock;

struct Row {
  int threads;
  double pfor_hot_us, submit_hot_us, streams_hot_us, pfor_cold_us, submit_cold_us, idle_cpu_pct;
  double busy_over_us, busy_worker_pct;
  bool pinned;
};

// Spins on the clock for `ns` nanoseconds: work that takes the same time on any thread.
void busy_for(std::chrono::nanoseconds ns) {
  const auto until = Clock::now() + ns;
  while (Clock::now() < until) {
  }
}

// One measured job with work: the caller's 20 µs first, then 128 grains of 200 ns. Returns the
// job's microseconds beyond 128 · 200 ns / threads, and counts the grains that ran off the
// calling thread.
double busy_job(ktx::runtime::ThreadPool& pool, int threads, int64_t& worker_grains) {
  constexpr int64_t kGrains = 128;
  constexpr auto kGrain = std::chrono::nanoseconds(200);
  busy_for(std::chrono::microseconds(20));
  // The caller's own count, on a line no other thread writes (a shared counter would bounce
  // between the cores at every grain and measure itself).
  struct alignas(64) Count {
    std::thread::id thread;
    int64_t grains = 0;
  } caller{std::this_thread::get_id()};
  const auto t0 = Clock::now();
  pool.parallel_for_streams(kGrains, 1, [&caller, kGrain](int64_t begin, int64_t end) {
    busy_for(kGrain * (end - begin));
    if (std::this_thread::get_id() == caller.thread) caller.grains += end - begin;
  });
  const double us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
  worker_grains += kGrains - caller.grains;
  const double share_us = std::chrono::duration<double, std::micro>(kGrain).count() *
                          static_cast<double>(kGrains) / threads;
  return us - share_us;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ktx::bench;
  BenchArgs args(argc, argv, kUsage);
  std::vector<Row> rows;
  if (!args.json) {
    std::printf("bench_thread_pool: %s; median of %d rounds\n", cpu_model_name().c_str(),
                args.repeats);
    std::printf("%3s %6s %16s %16s %16s %16s %16s %12s %16s %10s\n", "thr", "pinned", "pfor hot us",
                "submit hot us", "streams hot us", "pfor asleep us", "submit asleep us",
                "idle CPU %", "busy over us", "workers %");
  }
  for (const int threads : thread_sweep(args.threads)) {
    ktx::runtime::ThreadPool pool(threads);
    // One chunk per thread: the job reaches every worker.
    const int64_t n = threads;
    auto empty = [](int64_t, int64_t) {};
    std::vector<double> pfor_hot, submit_hot, streams_hot, pfor_cold, submit_cold, busy_over;
    int64_t worker_grains = 0, busy_jobs = 0;
    for (int round = 0; round < args.repeats; ++round) {
      constexpr int kCalls = 2000;
      auto t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) pool.parallel_for(n, 1, empty);
      pfor_hot.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                         kCalls);
      t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) {
        pool.submit(n, 1, empty);
        pool.wait();
      }
      submit_hot.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                           kCalls);
      t0 = Clock::now();
      for (int i = 0; i < kCalls; ++i) pool.parallel_for_streams(2048, 16, empty);
      streams_hot.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count() /
                            kCalls);
      constexpr int kBusyJobs = 500;
      std::vector<double> over;
      for (int i = 0; i < kBusyJobs; ++i) over.push_back(busy_job(pool, threads, worker_grains));
      busy_over.push_back(median(over));
      busy_jobs += kBusyJobs;
      // Asleep: pause past the spin first (a few calls, each timed alone).
      constexpr int kColdCalls = 20;
      double pf = 0, sw = 0;
      for (int i = 0; i < kColdCalls; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        t0 = Clock::now();
        pool.parallel_for(n, 1, empty);
        pf += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
        t0 = Clock::now();
        pool.submit(n, 1, empty);
        pool.wait();
        sw += std::chrono::duration<double, std::micro>(Clock::now() - t0).count();
      }
      pfor_cold.push_back(pf / kColdCalls);
      submit_cold.push_back(sw / kColdCalls);
    }
    // Idle: process CPU time over 100 ms after the last job, the spin included.
    pool.parallel_for(n, 1, empty);
    const std::clock_t cpu0 = std::clock();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const double idle_pct = 100.0 * static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC / 0.1;
    const Row r{threads,
                median(pfor_hot),
                median(submit_hot),
                median(streams_hot),
                median(pfor_cold),
                median(submit_cold),
                idle_pct,
                median(busy_over),
                100.0 * static_cast<double>(worker_grains) / static_cast<double>(busy_jobs * 128),
                pool.pinned()};
    rows.push_back(r);
    if (!args.json) {
      std::printf("%3d %6s %16.2f %16.2f %16.2f %16.2f %16.2f %12.2f %16.2f %10.1f\n", r.threads,
                  r.pinned ? "yes" : "no", r.pfor_hot_us, r.submit_hot_us, r.streams_hot_us,
                  r.pfor_cold_us, r.submit_cold_us, r.idle_cpu_pct, r.busy_over_us,
                  r.busy_worker_pct);
    }
  }
  if (args.json) {
    std::printf("{\"bench\":\"thread_pool\",\"cpu\":%s,\"repeats\":%d,\"results\":[",
                json_string(cpu_model_name()).c_str(), args.repeats);
    for (size_t i = 0; i < rows.size(); ++i) {
      const Row& r = rows[i];
      std::printf(
          "%s{\"threads\":%d,\"pinned\":%s,\"parallel_for_hot_us\":%.3f,"
          "\"submit_wait_hot_us\":%.3f,\"streams_hot_us\":%.3f,\"parallel_for_asleep_us\":%.3f,"
          "\"submit_wait_asleep_us\":%.3f,\"idle_cpu_percent\":%.3f,"
          "\"streams_busy_over_us\":%.3f,\"streams_busy_worker_percent\":%.3f}",
          i ? "," : "", r.threads, r.pinned ? "true" : "false", r.pfor_hot_us, r.submit_hot_us,
          r.streams_hot_us, r.pfor_cold_us, r.submit_cold_us, r.idle_cpu_pct, r.busy_over_us,
          r.busy_worker_pct);
    }
    std::printf("]}\n");
  }
  return 0;
}
