// What the C ABI's implementation files share: the handle structs behind ktx.h's opaque types,
// the status helpers, and KTX_API_BEGIN / KTX_API_END, which keep every C++ exception on this
// side of the boundary. Never installed.
#pragma once

#include <cstddef>
#include <cstdio>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ktx/ktx.h"
#include "registry/backend_loader.h"
#include "registry/registry.h"
#include "runtime/model.h"
#include "runtime/sampler.h"
#include "runtime/session.h"

struct ktx_status {
  ktx_status_code code;
  std::string message;
};

struct ktx_model_options {
  int32_t n_threads = 0;
  std::string rules_path;
  std::vector<std::string> backend_paths;
  bool prefault = false;
  ktx_progress_callback progress = nullptr;
  void* progress_user_data = nullptr;
};

// A backend list: either owning (ktx_backend_list_load) or a view of a model's backends. The
// strings handed out are kept here, snapshotted when the list is made.
struct ktx_backend_list {
  struct Entry {
    std::string description;
    std::vector<ktx::registry::BackendDeviceInfo> devices;  // names as of creation
  };
  // Owned only by a standalone list; declared so that the registry goes before the backends.
  std::unique_ptr<ktx::registry::BackendSet> owned_set;
  std::unique_ptr<ktx::registry::OperatorRegistry> owned_registry;
  const ktx::registry::BackendSet* set = nullptr;
  std::vector<Entry> entries;
  std::vector<std::string> refused;

  ktx_backend_list(const ktx::registry::BackendSet& backends);  // fills entries and refused
};

struct ktx_model {
  std::shared_ptr<ktx::runtime::Model> model;
  std::string name;
  uint64_t kv_bytes_per_token = 0;
  struct PlacementText {
    std::string generate_device, prefill_device, options_json;
  };
  std::vector<PlacementText> placements;
  std::string plan_json;
  std::unique_ptr<ktx_backend_list> backends;
};

struct ktx_session {
  ktx::runtime::Session session;
};

struct ktx_sampling_options {
  ktx::runtime::SamplingParams params;
};

struct ktx_sampler {
  ktx::runtime::Sampler sampler;
};

namespace ktx::abi {

// A new status; never throws (a status that cannot be allocated becomes a shared static
// "out of memory" status, which ktx_status_release knows not to free).
ktx_status* make_status(ktx_status_code code, const std::string& message) noexcept;
// The status for the exception being handled: ktx::Error codes map one to one,
// std::bad_alloc to KTX_STATUS_OUT_OF_MEMORY, anything else to KTX_STATUS_INTERNAL. The message
// starts with `function` (ktx.h promises that every message names its function) unless the
// exception's own message already does.
ktx_status* status_from_exception(const char* function) noexcept;

// The helpers below may throw std::bad_alloc: call them between KTX_API_BEGIN and KTX_API_END.
inline ktx_status* invalid_argument(const char* function, const std::string& what) {
  return make_status(KTX_STATUS_INVALID_ARGUMENT, std::string(function) + ": " + what);
}
inline ktx_status* null_argument(const char* function, const char* argument) {
  return make_status(KTX_STATUS_INVALID_ARGUMENT,
                     std::string(function) + ": " + argument + " is NULL");
}

// Thrown inside the ABI for codes that ktx::Error has no counterpart for.
struct AbiFailure {
  ktx_status_code code;
  std::string message;
};

// The buffer protocol of ktx.h ("Buffers"): size query, fill, or KTX_STATUS_BUFFER_TOO_SMALL
// with only *len written. Text gets a terminating NUL.
ktx_status* write_text(const char* function, const std::string& text, char* buf, size_t capacity,
                       size_t* len);
ktx_status* write_tokens(const char* function, const std::vector<int32_t>& tokens, int32_t* buf,
                         size_t capacity, size_t* n);

// The growable-struct protocol: `out->struct_size` says how much the caller has; at least
// `min_size` (the first released version's size) is required. Copies what fits from `full`,
// keeping the caller's struct_size.
template <class T>
ktx_status* write_sized(const char* function, const T& full, T* out, size_t min_size) {
  if (out == nullptr) return null_argument(function, "the output struct");
  const size_t have = out->struct_size;
  if (have < min_size) {
    return invalid_argument(function, "struct_size is " + std::to_string(have) + ", at least " +
                                          std::to_string(min_size) +
                                          " expected (set it to sizeof the struct)");
  }
  const size_t n = have < sizeof(T) ? have : sizeof(T);
  std::memcpy(static_cast<void*>(out), &full, n);
  out->struct_size = have;
  return nullptr;
}

std::string json_quote(std::string_view text);

// Checks the flags argument against the bits this version knows.
inline ktx_status* check_flags(const char* function, uint32_t flags, uint32_t known) {
  if ((flags & ~known) == 0) return nullptr;
  char hex[16];
  std::snprintf(hex, sizeof hex, "%x", flags & ~known);
  return invalid_argument(function, std::string("unknown flag bits 0x") + hex);
}

// The first released size of each growable struct (ABI 0.2); abi/layouts.cpp pins them.
inline constexpr size_t kModelInfoSizeV1 = 96;
inline constexpr size_t kPlacementSizeV1 = 56;
inline constexpr size_t kGenerateStatsSizeV1 = 48;
inline constexpr size_t kBackendInfoSizeV1 = 48;
inline constexpr size_t kDeviceInfoSizeV1 = 40;

}  // namespace ktx::abi

// Every fallible entry point's body sits between these: no exception leaves the library.
// KTX_API_END_AS names the entry point in a helper that serves several of them.
#define KTX_API_BEGIN try {
#define KTX_API_END_AS(function)                        \
  }                                                     \
  catch (...) {                                         \
    return ::ktx::abi::status_from_exception(function); \
  }
#define KTX_API_END KTX_API_END_AS(__func__)
