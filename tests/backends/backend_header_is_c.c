/* include/ktx/backend.h compiles as plain C99, and a backend written in C can fill the table. */
#include <stddef.h>

#include "ktx/backend.h"

static int device_count(void* ctx) {
  (void)ctx;
  return 0;
}

static void register_operators(void* ctx, ktx_op_registrar* registrar) {
  (void)ctx;
  registrar->fail(registrar, "a C backend offers no operators");
}

const ktx_backend_v1 ktx_test_c_table = {KTX_BACKEND_API_VERSION,
                                         sizeof(ktx_backend_v1),
                                         "c",
                                         NULL,
                                         device_count,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         NULL,
                                         register_operators,
                                         NULL,
                                         NULL,
                                         NULL};
