// libktx-backend-ref.so: the reference backend as a loadable module — the two entry points, its
// one device (the host CPU, "cpu"), plain host buffers, no streams, and the eight ref.*
// operators. It exists to prove the module mechanism end to end and to give every other
// backend an independent yardstick (docs/BACKENDS.md).
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <exception>

#include "ktx/backend.h"
#include "ref.h"
#include "registry/backend_loader.h"

namespace ktx::backends::ref {
namespace {

int device_count(void*) { return 1; }
const char* device_name(void*, int) { return "cpu"; }
const char* device_description(void*, int) { return "host CPU (reference operators, double)"; }

int device_memory(void*, int, uint64_t* free_bytes, uint64_t* total_bytes) {
  const long page = sysconf(_SC_PAGESIZE), total = sysconf(_SC_PHYS_PAGES),
             avail = sysconf(_SC_AVPHYS_PAGES);
  if (page <= 0 || total <= 0 || avail < 0) return 1;
  *free_bytes = static_cast<uint64_t>(avail) * static_cast<uint64_t>(page);
  *total_bytes = static_cast<uint64_t>(total) * static_cast<uint64_t>(page);
  return 0;
}

void* buffer_alloc(void*, int, size_t size) {
  if (size > SIZE_MAX - 64) return nullptr;
  return std::aligned_alloc(64, size == 0 ? 64 : (size + 63) / 64 * 64);
}
void buffer_free(void*, int, void* ptr) { std::free(ptr); }
int copy(void*, int, void* dst, const void* src, size_t size, ktx_copy_kind, ktx_backend_stream) {
  if (size != 0) std::memcpy(dst, src, size);
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
    nullptr,  // last_error: nothing here fails but allocation
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
