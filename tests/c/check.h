/* Minimal checks for the C API tests (C99, no framework): each failure prints FILE:LINE and the
 * status message, and main() returns the failure count. */
#ifndef KTX_TESTS_C_CHECK_H
#define KTX_TESTS_C_CHECK_H

#include <stdio.h>
#include <string.h>

#include "ktx/ktx.h"

static int g_failures = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                            \
    }                                                                          \
  } while (0)

/* The call must succeed. */
#define EXPECT_OK(call) expect_code((call), KTX_STATUS_OK, #call, __FILE__, __LINE__)
/* The call must fail with `code` and a message. */
#define EXPECT_CODE(call, code) expect_code((call), (code), #call, __FILE__, __LINE__)

/* Whether `message` starts with "f: ", f the function called in `call` ("f(args...)"). */
static int names_function(const char* message, const char* call) {
  const char* paren = strchr(call, '(');
  const size_t n = paren != NULL ? (size_t)(paren - call) : 0;
  return n > 0 && strncmp(message, call, n) == 0 && message[n] == ':' && message[n + 1] == ' ';
}

/* Checks and releases `status`; returns whether it had the expected code. */
static int expect_code(ktx_status* status, ktx_status_code code, const char* call, const char* file,
                       int line) {
  const ktx_status_code got = ktx_status_get_code(status);
  int ok = got == code;
  if (!ok) {
    fprintf(stderr, "%s:%d: %s\n  returned %s (%s), expected %s\n", file, line, call,
            ktx_status_code_name(got), ktx_status_get_message(status), ktx_status_code_name(code));
  } else if (code != KTX_STATUS_OK && ktx_status_get_message(status)[0] == '\0') {
    fprintf(stderr, "%s:%d: %s\n  failed with %s but no message\n", file, line, call,
            ktx_status_code_name(code));
    ok = 0;
  } else if (code != KTX_STATUS_OK && !names_function(ktx_status_get_message(status), call)) {
    /* ktx.h: every message names the function that failed. */
    fprintf(stderr, "%s:%d: %s\n  message does not start with the function's name: %s\n", file,
            line, call, ktx_status_get_message(status));
    ok = 0;
  }
  if (!ok) ++g_failures;
  ktx_status_release(status);
  return ok;
}

/* Whether all `n` bytes at `p` are `byte` (an out-parameter left untouched). */
static int all_bytes(const void* p, size_t n, unsigned char byte) {
  const unsigned char* b = (const unsigned char*)p;
  size_t i;
  for (i = 0; i < n; ++i) {
    if (b[i] != byte) return 0;
  }
  return 1;
}

static int finish(const char* name) {
  if (g_failures == 0) {
    printf("%s: all checks passed\n", name);
    return 0;
  }
  fprintf(stderr, "%s: %d check(s) failed\n", name, g_failures);
  return 1;
}

#endif /* KTX_TESTS_C_CHECK_H */
