/* The smallest host program: links libktx through the C header alone and checks that the
 * library it loaded speaks the ABI it was compiled against. */
#include <stdio.h>

#include "ktx/ktx.h"

int main(void) {
  const uint32_t abi = ktx_abi_version();
  printf("ktx %s, ABI %u.%u\n", ktx_version_string(), (unsigned)(abi >> 16),
         (unsigned)(abi & 0xffffu));
  if ((abi >> 16) != KTX_ABI_VERSION_MAJOR || (abi & 0xffffu) < KTX_ABI_VERSION_MINOR) {
    fprintf(stderr, "incompatible libktx: ABI %u.%u, need %d.%d or a later minor\n",
            (unsigned)(abi >> 16), (unsigned)(abi & 0xffffu), KTX_ABI_VERSION_MAJOR,
            KTX_ABI_VERSION_MINOR);
    return 1;
  }
  return 0;
}
