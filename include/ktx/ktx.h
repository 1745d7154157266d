/* ktx — the stable C ABI (C99). This first version carries only the version queries; the model,
 * session and tokenizer API is added in later releases, append-only. */
#ifndef KTX_KTX_H
#define KTX_KTX_H

#include <stdint.h>

#if defined(KTX_BUILDING_LIBRARY)
#define KTX_API __attribute__((visibility("default")))
#else
#define KTX_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header declares. A host compares it with ktx_abi_version() at run time:
 * the library is usable when the two majors are equal and the library's minor is >= the
 * header's (functions are only ever appended). */
#define KTX_ABI_VERSION_MAJOR 0
#define KTX_ABI_VERSION_MINOR 1

/* Returns (major << 16) | minor of the loaded library's ABI. Never fails. */
KTX_API uint32_t ktx_abi_version(void);

/* Returns the library's release as "MAJOR.MINOR.PATCH" (static storage, UTF-8; do not free).
 * Never fails. */
KTX_API const char* ktx_version_string(void);

#ifdef __cplusplus
}
#endif

#endif /* KTX_KTX_H */
