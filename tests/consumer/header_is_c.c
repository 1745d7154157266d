/* Compiles the public C header as plain C99 (no C++ may leak into it). */
#include "ktx/ktx.h"

uint32_t consumer_abi_from_c(void) { return ktx_abi_version(); }
