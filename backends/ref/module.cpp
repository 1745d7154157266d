// libktx-backend-ref.so: the reference backend as a loadable module — the two entry points, its
// one device "ref:0" with memory of its own (host memory underneath, but reachable by ktx only
// through this table's buffers and copies, which device_memory.cpp enforces), no streams, and
// the eight ref.* operators. It exists to prove the module mechanism end to end — a plan that
// mixes cpu and ref:0 moves activations between two memories exactly as one mixing cpu and
// cuda:0 does — and to give every other backend an independent yardstick (docs/BACKENDS.md).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <string>

#include "ktx/backend.h"
#include "ref.h"
#include "registry/backend_loader.h"

namespace ktx::backends::ref {
namespace {

int device_count(void*) { return 1; }
const char* device_name(void*, int) { return "ref:0"; }
const char* device_description(void*, int) {
  return "reference device: host CPU, memory of its own, operators in double";
}

int device_memory(void*, int, uint64_t* free_bytes, uint64_t* total_bytes) {
  const long page = sysconf(_SC_PAGESIZE), total = sysconf(_SC_PHYS_PAGES),
             avail = sysconf(_SC_AVPHYS_PAGES);
  if (page <= 0 || total <= 0 || avail < 0) return 1;
  *free_bytes = static_cast<uint64_t>(avail) * static_cast<uint64_t>(page);
  *total_bytes = static_cast<uint64_t>(total) * static_cast<uint64_t>(page);
  return 0;
}

void* buffer_alloc(void*, int, size_t size) { return device_alloc(size); }
void buffer_free(void*, int, void* ptr) { device_free(ptr); }

thread_local std::string last_error_text;
const char* last_error(void*) { return last_error_text.c_str(); }

// Copies check that the device side is device memory, like a real device's copy would fail on
// a host pointer.
int copy(void*, int, void* dst, const void* src, size_t size, ktx_copy_kind kind,
         ktx_backend_stream) {
  if (size == 0) return 0;
  const bool ok = kind == KTX_COPY_HOST_TO_DEVICE ? is_device_memory(dst, size)
                  : kind == KTX_COPY_DEVICE_TO_HOST
                      ? is_device_memory(src, size)
                      : is_device_memory(dst, size) && is_device_memory(src, size);
  if (!ok) {
    last_error_text = "the device side of the copy is not ref:0 memory";
    return 1;
  }
  std::memcpy(dst, src, size);
  return 0;
}

// The one extra, to show get_proc_address: the precision every ref.* operator computes in.
int accumulator_bits() { return 64; }

void* get_proc_address(void*, const char* name) {
  if (name != nullptr && std::strcmp(name, "ref_accumulator_bits") == 0) {
    return reinterpret_cast<void*>(&accumulator_bits);
  }
  return nullptr;
}

void register_operators(void*, ktx_op_registrar* registrar) {
  try {  // no exception may leave a table slot
    for (registry::OpImpl (*make)() :
         {embedding_impl, rms_norm_impl, lm_head_impl, mlp_impl, moe_gate_impl, experts_impl,
          mla_attention_impl, gqa_attention_impl}) {
      registry::add_operator(registrar, make());
    }
  } catch (const std::exception& e) {
    registrar->fail(registrar, e.what());
  }
}

const ktx_backend_v1 kTable = {
    KTX_BACKEND_API_VERSION,
    sizeof(ktx_backend_v1),
    "ref",
    "reference operators for every module kind, in double, from dequantized weights",
    device_count,
    device_name,
    device_description,
    device_memory,
    buffer_alloc,
    buffer_free,
    copy,
    nullptr,  // host_alloc_pinned: ordinary memory
    nullptr,
    nullptr,  // streams and events: synchronous
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    last_error,
    register_operators,
    get_proc_address,
    nullptr,  // release: no state
    nullptr,  // ctx
};

}  // namespace
}  // namespace ktx::backends::ref

extern "C" KTX_BACKEND_EXPORT int ktx_backend_score(void) { return 1; }

extern "C" KTX_BACKEND_EXPORT const ktx_backend_v1* ktx_backend_init(uint32_t) {
  return &ktx::backends::ref::kTable;
}
