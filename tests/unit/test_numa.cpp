// NUMA: the topology read from sysfs (a made-up tree here), binding memory to a node, the pool's
// per-node jobs (submit_nodes) on a pool with made-up nodes, and the routed experts giving the
// same numbers bit for bit when their decode is split across nodes.
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "ktx/error.h"
#include "runtime/numa.h"
#include "runtime/thread_pool.h"

namespace fs = std::filesystem;
using ktx::runtime::ThreadPool;

TEST_CASE("numa: cpu lists", "[numa]") {
  using ktx::runtime::parse_cpu_list;
  CHECK(parse_cpu_list("0-3,8,10-11\n") == std::vector<int>{0, 1, 2, 3, 8, 10, 11});
  CHECK(parse_cpu_list("5") == std::vector<int>{5});
  CHECK(parse_cpu_list("3,1-2,2") == std::vector<int>{1, 2, 3});
  CHECK(parse_cpu_list("").empty());
  CHECK(parse_cpu_list("4-2").empty());
  CHECK(parse_cpu_list("a-b").empty());
  CHECK(parse_cpu_list("1,,2").empty());
  CHECK(parse_cpu_list("1-2x").empty());
}

TEST_CASE("numa: nodes from a sysfs tree, limited to the allowed CPUs", "[numa]") {
  const fs::path root = fs::temp_directory_path() / ("ktx-numa-" + std::to_string(::getpid()));
  fs::remove_all(root);
  auto node = [&](const std::string& name, const std::string& cpulist) {
    fs::create_directories(root / name);
    if (!cpulist.empty()) std::ofstream(root / name / "cpulist") << cpulist << "\n";
  };
  node("node0", "0-3");
  node("node1", "4-7");
  node("node2", "8-9");      // none allowed: dropped
  node("node10", "10");      // ids sort as numbers
  node("nodeX", "11");       // not a node
  node("possible", "0-11");  // not a node
  node("node3", "");         // no cpulist: skipped
  const std::vector<int> allowed = {1, 2, 5, 10};
  const auto nodes = ktx::runtime::numa_nodes(allowed, root.string());
  REQUIRE(nodes.size() == 3);
  CHECK(nodes[0].id == 0);
  CHECK(nodes[0].cpus == std::vector<int>{1, 2});
  CHECK(nodes[1].id == 1);
  CHECK(nodes[1].cpus == std::vector<int>{5});
  CHECK(nodes[2].id == 10);
  CHECK(nodes[2].cpus == std::vector<int>{10});
  CHECK(ktx::runtime::numa_nodes(allowed, (root / "missing").string()).empty());
  fs::remove_all(root);
}

TEST_CASE("numa: binding memory to a node", "[numa]") {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  void* p = mmap(nullptr, 4 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(p != MAP_FAILED);
  std::string error;
  CHECK_FALSE(ktx::runtime::bind_to_node(p, 4 * page, 5000, &error));
  CHECK(error.find("5000") != std::string::npos);
  // Less than a whole page: nothing to bind, nothing refused.
  CHECK(ktx::runtime::bind_to_node(static_cast<char*>(p) + 1, page - 2, 0, &error));
  std::vector<int> all;
  for (int c = 0; c < 4096; ++c) all.push_back(c);
  const auto nodes = ktx::runtime::numa_nodes(all);
  if (nodes.empty()) {
    WARN("this system shows no NUMA nodes: binding to a real node is not tested");
  } else {
    error.clear();
    const bool ok = ktx::runtime::bind_to_node(p, 4 * page, nodes[0].id, &error);
    if (!ok) WARN("binding to node " << nodes[0].id << " was refused: " << error);
    CHECK((ok || !error.empty()));
  }
  munmap(p, 4 * page);
}

TEST_CASE("numa: submit_nodes runs every item once, each node's threads on their own first",
          "[numa]") {
  CHECK_THROWS_AS(ThreadPool(2, {0}), ktx::Error);
  CHECK_THROWS_AS(ThreadPool(2, {0, 2}), ktx::Error);
  CHECK_THROWS_AS(ThreadPool(3, {0, 0, 2}), ktx::Error);  // node 1 without a thread
  ThreadPool pool(4, {0, 0, 1, 1});
  REQUIRE(pool.n_nodes() == 2);
  CHECK(pool.node_id(0) == -1);  // made up: nothing to bind
  const int64_t n = 400;
  std::vector<std::atomic<int>> hits(n);
  std::mutex m;
  std::vector<std::pair<std::thread::id, int64_t>> first;  // each thread's first item
  std::atomic<bool> node1_started{false}, gave_up{false};
  pool.submit_nodes({0, 150, n}, 1, 1, [&](int64_t b, int64_t e) {
    {
      std::lock_guard lock(m);
      bool seen = false;
      for (const auto& f : first) seen = seen || f.first == std::this_thread::get_id();
      if (!seen) first.emplace_back(std::this_thread::get_id(), b);
    }
    if (b >= 150) node1_started = true;
    // Node 0's items wait until a node-1 item has run (at most 10 s), so node 0's threads cannot
    // use up their range and steal before node 1's threads start: those must start on their own.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (b < 150 && !node1_started) {
      if (std::chrono::steady_clock::now() > deadline) {
        gave_up = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(100));
    }
    for (int64_t i = b; i < e; ++i) hits[static_cast<size_t>(i)].fetch_add(1);
  });
  pool.wait();
  CHECK_FALSE(gave_up.load());
  for (int64_t i = 0; i < n; ++i) REQUIRE(hits[static_cast<size_t>(i)].load() == 1);
  // Threads start on their node's range: a first item in [150, 400) came from node 1's threads,
  // and no thread's first item is one node 0 could only have reached by stealing.
  int in_node1 = 0;
  for (const auto& f : first) in_node1 += f.second >= 150;
  CHECK(in_node1 >= 1);
  // One node: plain submit.
  ThreadPool one(3, {0, 0, 0});
  CHECK(one.n_nodes() == 1);
  std::atomic<int64_t> total{0};
  one.submit_nodes({0, 100}, 1, 1, [&](int64_t b, int64_t e) { total.fetch_add(e - b); });
  one.wait();
  CHECK(total.load() == 100);
}

TEST_CASE("numa: submit_nodes takes a phase everywhere before the next; bad bounds refused",
          "[numa]") {
  ThreadPool pool(4, {0, 0, 1, 1});
  auto noop = [](int64_t, int64_t) {};
  CHECK_THROWS_AS(pool.submit_nodes({0, 10, 20}, 2, 1, noop), ktx::Error);          // too few
  CHECK_THROWS_AS(pool.submit_nodes({0, 10, 5, 20, 30}, 2, 1, noop), ktx::Error);   // decreasing
  CHECK_THROWS_AS(pool.submit_nodes({1, 10, 15, 20, 30}, 2, 1, noop), ktx::Error);  // not from 0
  // Phase 0: node 0 has 10 items, node 1 has 200 slow ones; phase 1 (40 items) waits until every
  // phase-0 item is done, as cpu.experts' down tasks wait for the up tasks. Node 0's threads must
  // help with node 1's phase 0 before they take (and wait in) phase 1.
  const int64_t p0 = 10 + 200, n = p0 + 40;
  std::atomic<int64_t> p0_done{0}, stolen{0};
  std::atomic<bool> gave_up{false};
  std::mutex m;
  std::vector<std::thread::id> node0;  // the threads that ran node 0's phase-0 items
  pool.submit_nodes({0, 10, p0, p0 + 20, n}, 2, 1, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      if (i < 10) {
        std::lock_guard lock(m);
        node0.push_back(std::this_thread::get_id());
      } else if (i < p0) {
        std::this_thread::sleep_for(std::chrono::microseconds(200));
        std::lock_guard lock(m);
        for (const auto& id : node0) {
          if (id == std::this_thread::get_id()) {
            stolen.fetch_add(1);
            break;
          }
        }
      } else {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (p0_done.load() < p0) {
          if (std::chrono::steady_clock::now() > deadline) {
            gave_up = true;
            break;
          }
          std::this_thread::sleep_for(std::chrono::microseconds(50));
        }
        continue;
      }
      p0_done.fetch_add(1);
    }
  });
  pool.wait();
  CHECK_FALSE(gave_up.load());
  CHECK(p0_done.load() == p0);
  CHECK(stolen.load() > 0);
}

TEST_CASE("numa: room for more memory maps", "[numa]") {
  std::string why;
  CHECK(ktx::runtime::map_count_room(10, &why));
  if (std::ifstream("/proc/sys/vm/max_map_count")) {
    CHECK_FALSE(ktx::runtime::map_count_room(size_t{1} << 40, &why));
    CHECK(why.find("vm.max_map_count") != std::string::npos);
  }
}
