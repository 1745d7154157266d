// Small f32 kernels shared by the CPU attention operators.
#pragma once

#include <cstdint>

#include "runtime/kv_cache.h"

namespace ktx::ops::cpu {

// Sum of a[i]·b[i] in f32 with eight independent partial sums (better rounding and pipelining
// than one running sum).
inline float dot_f32(const float* a, const float* b, int64_t n) {
  float s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int k = 0; k < 8; ++k) s[k] += a[i + k] * b[i + k];
  }
  for (; i < n; ++i) s[i & 7] += a[i] * b[i];
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

// y += a·x over n values.
inline void axpy_f32(float a, const float* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

// Throws ktx::Error (kInvalidArgument) unless `cache` has widths (width_a, width_b) and room for
// positions [0, end): the session sizes caches, an operator only fills them.
void check_cache(const runtime::LayerKvCache& cache, int64_t width_a, int64_t width_b, int64_t end,
                 const char* impl);

}  // namespace ktx::ops::cpu
