// The machine's NUMA nodes as this process may use them, and binding memory to one of them.
// On a machine with several nodes, ktx splits each routed expert's rows across the nodes (never a
// copy per node): the pool's threads know their node, each node's threads take the expert rows
// that live there first (ThreadPool::submit_nodes), and those rows' pages are bound to that node
// (cpu.experts). One node (or an unknown topology) changes nothing.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::runtime {

struct NumaNode {
  int id = 0;             // the kernel's node number
  std::vector<int> cpus;  // the CPUs of the node this process may run on, ascending
};

// "0-3,8,10-11" -> {0, 1, 2, 3, 8, 10, 11}; an empty or malformed list gives {}.
std::vector<int> parse_cpu_list(std::string_view list);

// The nodes under `sysfs` (default /sys/devices/system/node: one nodeN/cpulist each) that hold a
// CPU of `allowed`, by id. Empty when the folder is missing (no NUMA support, not Linux).
std::vector<NumaNode> numa_nodes(const std::vector<int>& allowed,
                                 const std::string& sysfs = "/sys/devices/system/node");

// Whether the process can take `more` memory maps (each bound range of a mapping becomes one)
// under /proc/sys/vm/max_map_count, keeping some for later; if not, `why` says what to raise.
bool map_count_room(size_t more, std::string* why);

// Binds the whole pages inside [data, data + size) to `node` (MPOL_BIND) and moves those already
// in memory there (MPOL_MF_MOVE; pages other processes also map stay). Returns false with the
// reason in `error` when the kernel refuses (no NUMA support, a container without the right,
// node >= 1024).
bool bind_to_node(const void* data, size_t size, int node, std::string* error);

}  // namespace ktx::runtime
