// One activation tensor as the executor hands it from module to module when consecutive modules
// run on different devices: a host copy plus one buffer on each accelerator that has used it,
// and which of them hold the current values. A module reads its inputs on its own device
// (copied there only when stale) and writes its output there (every other copy goes stale), so
// a run of modules on one device passes activations without any copy, and a plan that keeps
// everything on the CPU never copies at all.
//
// Copies go through the owning backend's table (buffer_alloc, copy) and are synchronous; two
// accelerators exchange data through the host.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "registry/backend_loader.h"
#include "registry/device.h"

namespace ktx::exec {

// Bytes moved between devices, for `ktx bench` and tests.
struct TransferStats {
  uint64_t to_device_bytes = 0, to_host_bytes = 0;
  uint64_t to_device_copies = 0, to_host_copies = 0;
};

class Activation {
 public:
  Activation(const registry::BackendSet* backends, TransferStats* stats)
      : backends_(backends), stats_(stats) {}
  ~Activation();
  Activation(const Activation&) = delete;
  Activation& operator=(const Activation&) = delete;

  // Room for `bytes` on `device`, whose contents become the current value when the caller has
  // written them; every other copy goes stale.
  void* write(const registry::Device& device, size_t bytes);
  // The current value's first `bytes` on `device`, copied there first when that copy is stale.
  // Throws ktx::Error (kInternal) when fewer bytes than that were ever written.
  const void* read(const registry::Device& device, size_t bytes);
  // read() then write() on one device: for an update in place (the residual add).
  void* update(const registry::Device& device, size_t bytes);
  // Copies the current value's first `bytes` into host memory `out` (which is not this
  // activation's host copy), straight from wherever it is current.
  void read_into(void* out, size_t bytes);

  template <class T>
  T* write_as(const registry::Device& d, size_t count) {
    return static_cast<T*>(write(d, count * sizeof(T)));
  }
  template <class T>
  const T* read_as(const registry::Device& d, size_t count) {
    return static_cast<const T*>(read(d, count * sizeof(T)));
  }
  template <class T>
  T* update_as(const registry::Device& d, size_t count) {
    return static_cast<T*>(update(d, count * sizeof(T)));
  }

 private:
  struct Copy {
    registry::Device device;
    registry::DeviceHandle where;  // backend; unused for the host
    void* data = nullptr;
    size_t capacity = 0;
    bool current = false;
  };
  Copy& copy_on(const registry::Device& device, size_t bytes);  // grown to `bytes`
  Copy* current_copy();
  void host_to_device(Copy& dst, const void* src, size_t bytes);
  void device_to_host(void* dst, const Copy& src, size_t bytes);

  const registry::BackendSet* backends_;
  TransferStats* stats_;
  std::vector<uint8_t> host_;  // the host copy's storage
  std::vector<Copy> copies_;   // copies_[0] is the host once used
  size_t valid_bytes_ = 0;     // how much of the current value was written
};

}  // namespace ktx::exec
