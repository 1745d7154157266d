// Small helpers shared by the ceiling benchmarks in bench/: argument parsing, running one kernel on
// N threads at once, and the machine description their JSON carries.
#pragma once

#include <sys/mman.h>

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace ktx::bench {

// Anonymous memory in 2 MiB pages where the kernel gives them (as the bandwidth probe asks, and
// as ktx's repacked copies get them), page-aligned: a benchmark's weights then sit in memory the
// way decode's do. (From a plain vector, 16 bytes past a page, every 64-byte load of a row tile
// split across two cache lines.)
struct HugeBuffer {
  uint8_t* data = nullptr;
  size_t bytes = 0;
  explicit HugeBuffer(size_t n) : bytes(n) {
    void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    madvise(p, n, MADV_HUGEPAGE);
    data = static_cast<uint8_t*>(p);
  }
  ~HugeBuffer() { munmap(data, bytes); }
  HugeBuffer(const HugeBuffer&) = delete;
  HugeBuffer& operator=(const HugeBuffer&) = delete;
};

// The `model name` line of /proc/cpuinfo ("" elsewhere).
inline std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "";
}

inline int hardware_threads() {
  return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
}

// 1, 2, 4, … up to n, and n itself.
inline std::vector<int> thread_sweep(int n) {
  std::vector<int> out;
  for (int t = 1; t < n; t *= 2) out.push_back(t);
  out.push_back(n);
  return out;
}

// Runs body(thread_index) on `threads` threads released together and returns the wall seconds
// from the release to the slowest thread's end.
inline double run_on_threads(int threads, const std::function<void(int)>& body) {
  using clock = std::chrono::steady_clock;
  clock::time_point start, end;
  std::barrier go(threads, [&]() noexcept { start = clock::now(); });
  std::barrier done(threads, [&]() noexcept { end = clock::now(); });
  auto worker = [&](int t) {
    go.arrive_and_wait();
    body(t);
    done.arrive_and_wait();
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads; ++t) pool.emplace_back(worker, t);
  worker(0);
  for (std::thread& th : pool) th.join();
  return std::chrono::duration<double>(end - start).count();
}

// The command lines of the ceiling programs: --json, -t/--threads N, --repeats N, and for some a
// list option. Exits with a message naming the argument on anything else.
struct BenchArgs {
  bool json = false;
  int threads = 0;  // 0: every hardware thread
  int repeats = 5;
  std::string list;  // the value of `list_option`, when given

  BenchArgs(int argc, char** argv, const char* usage, const char* list_option = nullptr) {
    for (int i = 1; i < argc; ++i) {
      const std::string_view a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) fail(usage, std::string(a) + " needs a value");
        return argv[++i];
      };
      auto number = [&](int min) {
        const std::string v = value();
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (v.empty() || *end != '\0' || n < min || n > 1 << 20) {
          fail(usage, std::string(a) + " must be a whole number >= " + std::to_string(min) +
                          ", not '" + v + "'");
        }
        return static_cast<int>(n);
      };
      if (a == "--json") {
        json = true;
      } else if (a == "-t" || a == "--threads") {
        threads = number(1);
      } else if (a == "--repeats") {
        repeats = number(1);
      } else if (list_option != nullptr && a == list_option) {
        list = value();
      } else if (a == "-h" || a == "--help") {
        std::fputs(usage, stdout);
        std::exit(0);
      } else {
        fail(usage, "unknown argument '" + std::string(a) + "'");
      }
    }
    if (threads == 0) threads = hardware_threads();
  }

  [[noreturn]] static void fail(const char* usage, const std::string& what) {
    std::fprintf(stderr, "error: %s\n%s", what.c_str(), usage);
    std::exit(2);
  }
};

// A JSON string literal (the values here are CPU names and ISA labels: quotes and backslashes
// are the only characters that need escaping in practice; control characters become spaces).
inline std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out + "\"";
}

// The middle value of `v` (the upper one of the two for an even count).
inline double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace ktx::bench
