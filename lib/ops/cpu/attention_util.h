// Small f32 kernels shared by the CPU attention operators.
#pragma once

#include <cstddef>
#include <cstdint>

#include "ops/cpu/common.h"
#include "runtime/kv_cache.h"

namespace ktx::ops::cpu {

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
