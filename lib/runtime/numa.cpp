#include "runtime/numa.h"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

namespace ktx::runtime {

namespace {
constexpr int kMaxCpu = 1 << 20;
}  // namespace

std::vector<int> parse_cpu_list(std::string_view list) {
  std::vector<int> cpus;
  while (!list.empty() && (list.back() == '\n' || list.back() == ' ')) list.remove_suffix(1);
  size_t pos = 0;
  while (pos < list.size()) {
    const size_t comma = std::min(list.find(',', pos), list.size());
    const std::string item(list.substr(pos, comma - pos));
    int lo = 0, hi = 0;
    char dash = 0;
    std::istringstream in(item);
    if (!(in >> lo) || lo < 0) return {};
    hi = lo;
    if (in >> dash) {
      if (dash != '-' || !(in >> hi) || hi < lo) return {};
    }
    if (hi >= kMaxCpu) return {};  // no such machine: a corrupt list
    std::string rest;
    if (in >> rest) return {};
    for (int c = lo; c <= hi; ++c) cpus.push_back(c);
    pos = comma + 1;
  }
  std::sort(cpus.begin(), cpus.end());
  cpus.erase(std::unique(cpus.begin(), cpus.end()), cpus.end());
  return cpus;
}

std::vector<NumaNode> numa_nodes(const std::vector<int>& allowed, const std::string& sysfs) {
  std::vector<NumaNode> nodes;
  std::error_code ec;
  std::filesystem::directory_iterator it(sysfs, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::filesystem::directory_entry& entry = *it;
    const std::string name = entry.path().filename().string();
    if (name.size() <= 4 || name.size() > 10 || name.compare(0, 4, "node") != 0 ||
        !std::all_of(name.begin() + 4, name.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      continue;
    }
    std::ifstream f(entry.path() / "cpulist");
    std::string line;
    if (!f || !std::getline(f, line)) continue;
    NumaNode node;
    node.id = std::stoi(name.substr(4));
    for (int c : parse_cpu_list(line)) {
      if (std::find(allowed.begin(), allowed.end(), c) != allowed.end()) node.cpus.push_back(c);
    }
    if (!node.cpus.empty()) nodes.push_back(std::move(node));
  }
  std::sort(nodes.begin(), nodes.end(),
            [](const NumaNode& a, const NumaNode& b) { return a.id < b.id; });
  return nodes;
}

bool map_count_room(size_t more, std::string* why) {
#if defined(__linux__)
  std::ifstream limit_file("/proc/sys/vm/max_map_count");
  size_t limit = 0;
  if (!(limit_file >> limit)) return true;  // unknown: let the kernel say
  std::ifstream maps("/proc/self/maps");
  size_t used = 0;
  for (std::string line; std::getline(maps, line);) ++used;
  constexpr size_t kReserve = 4096;  // for everything else the process maps later
  if (used + more + kReserve <= limit) return true;
  if (why) {
    *why = "binding would split the mapping into about " + std::to_string(more) +
           " more memory maps, and " + std::to_string(used) +
           " of vm.max_map_count = " + std::to_string(limit) +
           " are in use; raise it (sysctl vm.max_map_count=" +
           std::to_string(used + more + 2 * kReserve) + ")";
  }
  return false;
#else
  (void)more;
  (void)why;
  return true;
#endif
}

bool bind_to_node(const void* data, size_t size, int node, std::string* error) {
#if defined(__linux__) && defined(SYS_mbind)
  constexpr int kMaxNodes = 1024;
  if (node < 0 || node >= kMaxNodes) {
    if (error)
      *error = "node " + std::to_string(node) + " is past the " + std::to_string(kMaxNodes) +
               " nodes ktx can bind to";
    return false;
  }
  const auto page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  const auto begin = (reinterpret_cast<uintptr_t>(data) + page - 1) / page * page;
  const auto end = (reinterpret_cast<uintptr_t>(data) + size) / page * page;
  if (end <= begin) return true;  // no whole page
  unsigned long mask[kMaxNodes / (8 * sizeof(unsigned long))] = {};
  mask[static_cast<size_t>(node) / (8 * sizeof(unsigned long))] |=
      1ul << (static_cast<size_t>(node) % (8 * sizeof(unsigned long)));
  constexpr int kMpolBind = 2;         // <linux/mempolicy.h>, without libnuma
  constexpr unsigned kMpolMfMove = 2;  // MPOL_MF_MOVE
  if (syscall(SYS_mbind, begin, end - begin, kMpolBind, mask, kMaxNodes + 1, kMpolMfMove) != 0) {
    if (error) *error = std::string("mbind: ") + std::strerror(errno);
    return false;
  }
  return true;
#else
  (void)data;
  (void)size;
  (void)node;
  if (error) *error = "binding memory to a NUMA node is not supported on this system";
  return false;
#endif
}

}  // namespace ktx::runtime
