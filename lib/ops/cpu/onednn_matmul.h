// Batches of tokens times F32 or BF16 weights through oneDNN's matmul, where it is faster than
// ktx's own float GEMM (kernels/cpu/gemm.h): oneDNN keeps one output per accumulator and blocks
// far more of them in registers, which ktx's kernel cannot while it reproduces the one-row dot
// product bit for bit (docs/PERF.md, Prefill: 2.1x for BF16, 2.8x for F32 on Zen 4). The results
// differ from decode's one-token dots by float summation order only.
//
// The weights are read where they lie (the memory-mapped file, one row of `cols` per output: a
// column-major [cols × rows] matrix to oneDNN), never reordered or copied. Each of ktx's pool
// threads runs oneDNN on its own slice of rows with OpenMP limited to one thread, so oneDNN's
// threads never compete with ktx's. F16 is not offered: oneDNN 2.6 has no f16 matmul without
// AVX512_FP16.
#pragma once

#include <cstdint>

#include "ops/cpu/linear.h"
#include "runtime/thread_pool.h"

namespace ktx::ops::cpu {

// True when this build has oneDNN and KTX_ONEDNN is not "0" in the environment (read once).
bool onednn_enabled();

// y[t * ldy + r] = w.row(r) · x.row(t) for t < n, r < w.rows through oneDNN, returning true; or
// false, having written nothing, when oneDNN is not enabled, w is not F32 or BF16 (with x in the
// same type), or the batch or the matrix (under 2^20 weights) is smaller than it pays for: the
// caller then uses ktx's kernels.
// Throws ktx::Error (kInternal) naming the tensor if oneDNN fails.
bool onednn_matmul(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                   int64_t n, float* y, int64_t ldy);

}  // namespace ktx::ops::cpu
