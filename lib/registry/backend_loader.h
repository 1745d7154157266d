// Backends at run time: the built-in CPU backend and the modules (libktx-backend-*.so) found next
// to ktx or named by the user, each checked (entry points, api_version, struct_size, score, its
// operators) before anything of it is registered. A module that fails any check is left out
// with a message naming the file; ktx carries on without it. docs/BACKENDS.md is the guide.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ktx/backend.h"
#include "ktx/error.h"
#include "registry/device.h"
#include "registry/registry.h"

namespace ktx::registry {

// For module authors: offers one implementation through the registrar (moves from `impl`).
// Returns the registrar's answer (0: accepted for now).
inline int add_operator(ktx_op_registrar* registrar, OpImpl impl) {
  return registrar->add(registrar, &impl);
}

struct BackendDeviceInfo {
  std::string name;         // "cpu", "cuda:0"
  std::string description;  // may be empty
  std::optional<uint64_t> free_bytes, total_bytes;
};

// One backend in use: its table (a thin dispatcher that fills in the optional slots), where it
// came from, and the operators it registered. Destroying it calls release() and drops its
// reference to the module; accepted modules stay mapped until the process ends, so a registry
// or operator that outlives it never runs unmapped code — but release() may free what the
// backend's operators use, so destroy operators first (runtime::Model does).
class Backend {
 public:
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  const std::string& name() const { return name_; }
  const std::string& path() const { return path_; }  // empty for a built-in backend
  bool builtin() const { return path_.empty(); }
  int score() const { return score_; }
  const ktx_backend_v1& table() const { return *table_; }
  std::string description() const;
  const std::vector<std::string>& operators() const { return operators_; }  // sorted

  int device_count() const;
  BackendDeviceInfo device(int index) const;

  // Throw ktx::Error naming the backend and device, with last_error() when it has one:
  // kOutOfMemory for allocations, kInternal for failed copies and stream calls.
  void* alloc(int device, size_t size) const;
  void free(int device, void* ptr) const;
  void copy(int device, void* dst, const void* src, size_t size, ktx_copy_kind kind,
            ktx_backend_stream stream = nullptr) const;
  // Pinned memory when the backend has it, else ordinary 64-byte-aligned host memory.
  void* alloc_host_pinned(size_t size) const;
  void free_host_pinned(void* ptr) const;
  bool has_streams() const { return table_->stream_create != nullptr; }
  // Without streams: nullptr (synchronous); synchronize / record / wait are then no-ops.
  ktx_backend_stream create_stream(int device) const;
  void destroy_stream(ktx_backend_stream stream) const;
  void synchronize(ktx_backend_stream stream) const;
  // nullptr when the backend has no such extra.
  void* proc_address(const char* name) const;

 private:
  friend class BackendLoader;
  Backend() = default;
  [[noreturn]] void fail_call(ErrorCode code, const std::string& what, int device) const;

  std::string name_;
  std::string path_;
  int score_ = 0;
  const ktx_backend_v1* table_ = nullptr;
  void* handle_ = nullptr;  // dlopen handle; null for built-ins
  std::vector<std::string> operators_;
};

// A file considered and left out: `message` starts with the file's path. Expected misses on
// this machine (a module whose score() is 0, or whose libraries are missing, found by the
// directory search) are notes; everything else is a warning.
struct BackendRefusal {
  std::string path;
  std::string message;
  bool warning = true;
};

struct BackendLoadOptions {
  // Module files, or folders searched for libktx-backend-*.so, loaded in this order before the
  // default folders. Each failure here is a warning.
  std::vector<std::string> paths;
  // Also load what the KTX_BACKEND_PATH environment variable (':'-separated files or folders)
  // and default_backend_dirs() hold.
  bool search_default_dirs = true;
};

// An accelerator as its backend's table knows it: the backend and its device index there.
struct DeviceHandle {
  const Backend* backend = nullptr;
  int index = 0;
};

// The backends of one registry, built-in CPU first. Keep it alive as long as the operators
// created from it.
struct BackendSet {
  std::vector<std::unique_ptr<Backend>> backends;
  std::vector<BackendRefusal> refused;

  const Backend* find(std::string_view name) const;
  // Every device of every backend, "cpu" first, each once: what rule files may name here.
  std::vector<Device> devices() const;
  // The backend and table index serving an accelerator; nullopt for the CPU or an unknown device.
  std::optional<DeviceHandle> locate(const Device& device) const;
  std::vector<std::string> warnings() const;  // the refusals that are warnings, in order
};

// The entries of a ':'-separated list of module files or folders (KTX_BACKEND_PATH, `ktx
// --backend`), empty ones skipped; none for NULL.
std::vector<std::string> split_path_list(const char* text);

// Registers the built-in CPU backend (ktx::Error if that fails: a bug) and every module the
// options lead to into `registry`. A module is accepted whole or not at all.
BackendSet load_backends(OperatorRegistry& registry, const BackendLoadOptions& options = {});

// Loads one module file into `registry` (next to those in `set`): adds it to set.backends, or a
// refusal to set.refused, and returns whether it was accepted.
bool load_backend_module(OperatorRegistry& registry, BackendSet& set, const std::string& path);

// The folders searched for modules, existing or not, relative to the executable and to the
// library that holds ktx's code: backends/ and ../backends/ (the build tree),
// ../lib/ktx/backends/, ../lib64/ktx/backends/ and ../$KTX_INSTALL_LIBDIR/ktx/backends/ when that
// was defined at build time (an installed tool), ktx/backends/ (an installed library).
std::vector<std::string> default_backend_dirs();

// The built-in CPU backend's table: device "cpu", host memory, synchronous, cpu.* operators.
const ktx_backend_v1& cpu_backend_table();

}  // namespace ktx::registry
