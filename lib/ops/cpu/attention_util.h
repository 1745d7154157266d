// Small f32 kernels shared by the CPU attention operators.
#pragma once

#include <cstddef>
#include <cstdint>

#include "runtime/kv_cache.h"

namespace ktx::ops::cpu {

// Four floats in one vector register of the baseline ISA (SSE2 on x86-64, NEON on arm64). These
// loops are written with explicit vectors because -O2 leaves axpy_f32 scalar (GCC's cheap
// vectorizer adds no remainder loop or aliasing check): MLA decode took 21 ms per token with it
// scalar, 17 ms with these vectors (8-layer V2-Lite-width model, 576 positions, 2 threads, same
// load). Each lane does exactly what the scalar code did, so results are unchanged. The products
// over the cache have since moved to the tier kernels of kernels/cpu/attention.h (MLA prefill's
// last per-query loops on 2026-11-29); what is left here is MLA decode's merging of split-KV runs.
using F32x4 = float __attribute__((vector_size(16)));

inline F32x4 load4(const float* p) {
  F32x4 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, F32x4 v) { __builtin_memcpy(p, &v, sizeof v); }

// y += a·x over n values.
inline void axpy_f32(float a, const float* x, float* y, int64_t n) {
  const F32x4 av = {a, a, a, a};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4(y + i, load4(y + i) + av * load4(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

// y = y·s + x over n values (a running sum rescaled to a new maximum, then a run's sum added).
inline void scale_add_f32(float s, const float* x, float* y, int64_t n) {
  const F32x4 sv = {s, s, s, s};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4(y + i, load4(y + i) * sv + load4(x + i));
  for (; i < n; ++i) y[i] = y[i] * s + x[i];
}

// The causal softmax and weighted sum of one block of `rows` queries whose first sees `first`
// keys and each next one key more: p holds their scores (row i at p + i · ldp, at least
// first + rows - 1 wide), the values are rows of v (ldv apart, `width` wide). Overwrites o's rows
// (ldo apart) with Σ_s softmax(p_i)[s] · v[s] over the keys row i sees, and p with the
// probabilities. The keys every row sees go through one call of the tier's weighted-sum kernel
// for the block; each row's later keys (the triangle) through a call of its own that continues
// that row's sums. So no row reads a value it must not see (weighted by 0 instead, a NaN there
// would still reach it), and each row's numbers are those of one call over exactly its keys,
// whatever block it is in.
void causal_block(int64_t rows, int64_t first, float* p, size_t ldp, const float* v, size_t ldv,
                  int64_t width, float* o, size_t ldo);

// Throws ktx::Error (kInvalidArgument) unless `cache` has widths (width_a, width_b) and room for
// positions [0, end): the session sizes caches, an operator only fills them.
void check_cache(const runtime::LayerKvCache& cache, int64_t width_a, int64_t width_b, int64_t end,
                 const char* impl);

}  // namespace ktx::ops::cpu
