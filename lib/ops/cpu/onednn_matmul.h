// Batches of tokens times F32 or BF16 weights through oneDNN's matmul, where it is faster than
// ktx's own float GEMM (kernels/cpu/gemm.h): oneDNN keeps one output per accumulator and blocks
// far more of them in registers, which ktx's kernel cannot while it reproduces the one-row dot
// product bit for bit (docs/PERF.md, Prefill: 2.1x for BF16, 2.8x for F32 on Zen 4). The results
// differ from decode's one-token dots by float summation order only.
//
// The weights are read where they lie (the memory-mapped file, one row of `cols` per output: a
// column-major [cols × rows] matrix to oneDNN), never reordered or copied. ktx's pool threads run
// oneDNN on slices of rows (two per thread) with OpenMP limited to one thread, so oneDNN's threads
// never compete with ktx's. F16 is not offered: oneDNN 2.6 has no f16 matmul without
// AVX512_FP16.
#pragma once

#include <cstdint>

#include "ops/cpu/linear.h"
#include "runtime/thread_pool.h"

namespace ktx::ops::cpu {

// True when this build has oneDNN, KTX_ONEDNN is not "0" in the environment and KTX_CPU_ISA does
// not cap the kernels to scalar (read once).
bool onednn_enabled();

// Whether onednn_matmul takes this product: oneDNN enabled, F32 weights, or BF16 ones where the
// kernel tier is AVX-512 (oneDNN's bf16 code needs it), x in the weights' type, at least 8 tokens
// and 2^20 weights.
bool onednn_takes(const WeightMatrix& w, const QuantizedRows& x, int64_t n);

// y[t * ldy + r] = w.row(r) · x.row(t) for t < n, r < w.rows through oneDNN, returning true; or
// false, having written nothing, when onednn_takes() says no or oneDNN cannot make the product on
// this CPU: the caller then uses ktx's kernels. Throws ktx::Error (kInternal) naming the tensor
// if oneDNN fails while running.
bool onednn_matmul(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                   int64_t n, float* y, int64_t ldy);

}  // namespace ktx::ops::cpu
