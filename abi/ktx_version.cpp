// Version queries of the C ABI: the first functions a host calls, so they cannot fail.
#include "ktx/ktx.h"

extern "C" {

uint32_t ktx_abi_version(void) {
  return (static_cast<uint32_t>(KTX_ABI_VERSION_MAJOR) << 16) | KTX_ABI_VERSION_MINOR;
}

const char* ktx_version_string(void) { return KTX_VERSION_STRING; }

}  // extern "C"
