/* ktx backend modules: the versioned table through which a backend — the built-in CPU one, or a
 * module such as libktx-backend-cuda.so that ktx loads at run time — offers its devices,
 * buffers, streams and operator implementations. docs/BACKENDS.md is the guide.
 *
 * A module is a shared object named libktx-backend-<name>.so that exports exactly two symbols:
 *
 *   extern "C" int ktx_backend_score(void);
 *       0: this module cannot run on this machine (no GPU, no driver, missing CPU features);
 *       otherwise a preference, higher is better (between variants of one backend).
 *       Must be cheap and touch no ktx type: it is called before the version check.
 *   extern "C" const ktx_backend_v1* ktx_backend_init(uint32_t api_version);
 *       `api_version` is the host's KTX_BACKEND_API_VERSION. Return the module's own table even
 *       when the numbers differ (the host refuses it and prints both); NULL only when the
 *       backend failed to start. The table must stay valid until release() returns.
 *
 * This header is plain C99 so that the table's layout is fixed by C rules; the operators
 * themselves cross as C++ objects (ktx::registry::OpImpl), which is safe only because the host
 * refuses any api_version but its own: a module is built against the very ktx headers it runs
 * with. Every change to a C++ type that crosses the boundary (lib/ops/operator.h,
 * lib/registry/registry.h, lib/registry/device.h, lib/model/config.h, lib/model/module_tree.h,
 * ktx::gguf::TensorInfo, lib/runtime/kv_cache.h, lib/runtime/thread_pool.h) bumps
 * KTX_BACKEND_API_VERSION.
 *
 * Conventions: slots marked "(optional, NULL = …)" may be NULL; every other slot is required.
 * Functions returning int return 0 on success and nonzero on failure, after which last_error()
 * may say why. Strings are UTF-8 and owned by the backend (valid until release()). Device
 * indices run 0 .. device_count()-1. No slot may throw or longjmp. */
#ifndef KTX_BACKEND_H
#define KTX_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The table version this header declares; a module's table must carry exactly this number. */
#define KTX_BACKEND_API_VERSION 2u

/* The entry points a module exports, and their names for dlsym. */
typedef int (*ktx_backend_score_fn)(void);
typedef const struct ktx_backend_v1* (*ktx_backend_init_fn)(uint32_t api_version);
#define KTX_BACKEND_SCORE_SYMBOL "ktx_backend_score"
#define KTX_BACKEND_INIT_SYMBOL "ktx_backend_init"

/* Marks the two entry points as exported when the module hides everything else. */
#if defined(__GNUC__)
#define KTX_BACKEND_EXPORT __attribute__((visibility("default")))
#else
#define KTX_BACKEND_EXPORT
#endif

/* Backend-defined handles; the host only passes them back. */
typedef struct ktx_backend_stream_s* ktx_backend_stream;
typedef struct ktx_backend_event_s* ktx_backend_event;

typedef enum ktx_copy_kind {
  KTX_COPY_HOST_TO_DEVICE = 0,
  KTX_COPY_DEVICE_TO_HOST = 1,
  KTX_COPY_DEVICE_TO_DEVICE = 2 /* within the one device given */
} ktx_copy_kind;

/* Given by the host to register_operators(); valid only during that call. */
typedef struct ktx_op_registrar ktx_op_registrar;
struct ktx_op_registrar {
  uint32_t struct_size; /* sizeof(ktx_op_registrar) as the host knows it */
  void* host;           /* the loader's state: opaque to the backend */
  /* Offers one operator implementation. `op_impl` points to a ktx::registry::OpImpl (C++), which
   * the call moves from. Returns 0; nonzero when the host already knows it will refuse it (empty
   * name, no create function, a name outside "<backend name>."): the backend is then refused as
   * a whole after register_operators returns. Use ktx::registry::add_operator() from C++. */
  int (*add)(ktx_op_registrar* self, void* op_impl);
  /* Refuses the whole backend, `message` (copied) saying why: for a backend that finds out only
   * now that it cannot work. Operators already offered are dropped. */
  void (*fail)(ktx_op_registrar* self, const char* message);
};

typedef struct ktx_backend_v1 {
  uint32_t api_version;    /* KTX_BACKEND_API_VERSION the module was built with. Never moves. */
  uint32_t struct_size;    /* sizeof(ktx_backend_v1) as the module knows it. Never moves. */
  const char* name;        /* "cuda": lowercase; its operators are named "<name>.<impl>" */
  const char* description; /* one line for `ktx backends` (optional, NULL = none) */

  /* --- devices --- */
  int (*device_count)(void* ctx);
  /* As rule files spell it: "cpu", "cuda:0". */
  const char* (*device_name)(void* ctx, int device);
  /* "NVIDIA H200 (sm_90)" (optional, NULL = none) */
  const char* (*device_description)(void* ctx, int device);
  /* Free and total bytes of the device's memory. (optional, NULL = unknown) */
  int (*device_memory)(void* ctx, int device, uint64_t* free_bytes, uint64_t* total_bytes);

  /* --- buffers --- */
  /* `size` bytes of device memory, aligned for any kernel of the backend; NULL on failure. */
  void* (*buffer_alloc)(void* ctx, int device, size_t size);
  /* Frees what buffer_alloc returned; accepts NULL. */
  void (*buffer_free)(void* ctx, int device, void* ptr);
  /* Copies `size` bytes. With a stream the copy may still run on return (ordered on it);
   * with stream NULL it has finished. */
  int (*copy)(void* ctx, int device, void* dst, const void* src, size_t size, ktx_copy_kind kind,
              ktx_backend_stream stream);
  /* Page-locked host memory for fast asynchronous copies.
   * (optional, NULL = the host allocates ordinary 64-byte-aligned memory itself) */
  void* (*host_alloc_pinned)(void* ctx, size_t size);
  /* Frees what host_alloc_pinned returned; accepts NULL. (optional, NULL only when
   * host_alloc_pinned is NULL) */
  void (*host_free_pinned)(void* ctx, void* ptr);

  /* --- streams and events (optional, all seven NULL = a synchronous backend: every call has
   * finished when it returns) --- */
  ktx_backend_stream (*stream_create)(void* ctx, int device);   /* NULL on failure */
  void (*stream_destroy)(void* ctx, ktx_backend_stream stream); /* accepts NULL */
  int (*stream_synchronize)(void* ctx, ktx_backend_stream stream);
  ktx_backend_event (*event_create)(void* ctx, int device);  /* NULL on failure */
  void (*event_destroy)(void* ctx, ktx_backend_event event); /* accepts NULL */
  int (*event_record)(void* ctx, ktx_backend_event event, ktx_backend_stream stream);
  /* Work queued on `stream` after this call waits for `event`. */
  int (*stream_wait_event)(void* ctx, ktx_backend_stream stream, ktx_backend_event event);

  /* Why this thread's last failed call failed. (optional, NULL = no detail) */
  const char* (*last_error)(void* ctx);

  /* --- operators --- */
  /* Offers every operator implementation through registrar->add. Called once per load. */
  void (*register_operators)(void* ctx, ktx_op_registrar* registrar);
  /* Backend-specific extras by name ("cuda_graph_capture_begin"), so the table stays small.
   * (optional, NULL = none; a known slot may also return NULL for an unknown name) */
  void* (*get_proc_address)(void* ctx, const char* name);
  /* Called once when the host unloads the backend, after every operator it created is gone.
   * (optional, NULL = nothing to free) */
  void (*release)(void* ctx);
  void* ctx; /* passed to every slot above */
} ktx_backend_v1;

#ifdef __cplusplus
}
#endif

#endif /* KTX_BACKEND_H */
