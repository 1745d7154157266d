// Matrix products for batches of tokens (prefill) through the GEMM kernels of kernels/cpu/gemm.h:
// the activations, quantized once (QuantizedRows), are packed into panels of 8 tokens, then each
// task multiplies a block of weight rows with every token. A matrix repacked into row tiles (the
// `repack` option) goes through the tile GEMMs where the tier has one for its type, and its
// panels are packed for them; otherwise the file's rows through the row GEMMs. One token (decode)
// and weight types without a GEMM kernel keep the GEMV path of linear.h, as do the smallest
// batches (small_batch, below). Every way gives the same numbers as decode reads the same matrix
// (gemm.h).
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/gemm.h"
#include "ops/cpu/linear.h"
#include "runtime/thread_pool.h"

namespace ktx::ops::cpu {

// How a batch multiplies one weight matrix on this CPU: a tile GEMM over w.tiles, or a row GEMM
// over the file's rows, and the packer its panels need. Neither (the type has no GEMM kernel on
// the selected tier, the scalar tier, or KTX_GEMM=0): batches use matmul_rows.
struct BatchKernel {
  kernels::cpu::GemmTilesFn tiles = nullptr;  // set when w.tiles is read
  kernels::cpu::GemmFn rows = nullptr;        // else this, over the file's rows
  kernels::cpu::GemmPackFn pack = nullptr;
  size_t panel_bytes = 0;  // one panel of w.cols elements

  explicit operator bool() const { return tiles != nullptr || rows != nullptr; }
  // Whether `other` reads the same panels (then one packing of the activations serves both).
  bool same_panels(const BatchKernel& other) const {
    return pack == other.pack && panel_bytes == other.panel_bytes;
  }
};
BatchKernel batch_kernel(const WeightMatrix& w);

// Activation rows packed for a GEMM kernel: panels of kernels::cpu::kGemmTokens rows, in the
// order given. Packed once per batch and read by every weight whose kernel reads the same panels
// (BatchKernel::same_panels).
class GemmPanels {
 public:
  // Packs n rows of x for `kernel` (x stored as the kernel's weight's dot type): row i of the
  // panels is x.row(ids[i]) when ids is given, else x.row(first + i). With a pool, panels are
  // packed in parallel. Throws ktx::Error (kInternal) when the kernel has no packer.
  void pack(runtime::ThreadPool* pool, const BatchKernel& kernel, const QuantizedRows& x, int64_t n,
            int64_t first = 0, const int32_t* ids = nullptr);

  int64_t tokens() const { return tokens_; }
  TensorType type() const { return type_; }
  int64_t cols() const { return cols_; }
  // The panel holding token t (t a multiple of kGemmTokens) and the ones after it.
  const uint8_t* panels_from(int64_t t) const {
    return data_ + static_cast<size_t>(t / kernels::cpu::kGemmTokens) * panel_bytes_;
  }

 private:
  std::vector<uint8_t> storage_;
  uint8_t* data_ = nullptr;  // 64-byte aligned inside storage_
  size_t panel_bytes_ = 0;
  int64_t tokens_ = 0, cols_ = 0;
  TensorType type_ = TensorType::F32;
};

// y[(t - t0) * ldy + (r - r0)] = w.row(r) · token t for r in [r0, r1), t in [t0, t1): one
// thread's share. t0 must be a multiple of kGemmTokens; `kernel` is batch_kernel(w) and x was
// packed for it. Through the tiles, r0 and r1 must be whole tiles (multiples of 16, or r1 =
// w.rows): throws ktx::Error (kInternal) otherwise.
void gemm_rows(const BatchKernel& kernel, const WeightMatrix& w, int64_t r0, int64_t r1,
               const GemmPanels& x, int64_t t0, int64_t t1, float* y, int64_t ldy);

// Batches of at most this many tokens (several sessions' decode steps at once: Session::
// decode_batch; an expert that got a few of a batch's tokens) take the GEMV kernels token by token
// over a block of rows held in cache, not the GEMMs, which compute whole panels of kGemmTokens
// tokens: one token, always; up to 3 through the file-layout GEMMs, whose cost hardly falls with
// fewer tokens (the head's Q6_K rows, 2 tokens: 14.5 ms through the GEMM, 8.7-9.0 token by token,
// 6.1-7.1 for one token alone); the tile GEMMs are cheap enough from 2 tokens on (the MLPs, 3
// tokens: 7.0 against 8.1-8.6 token by token). Measured on the 8-layer V2-Lite file, Emerald
// Rapids, 2 threads (docs/PERF.md, "Several sessions at once"). The same numbers either way
// (gemm.h).
inline int64_t small_batch(const BatchKernel& kernel) { return kernel.tiles != nullptr ? 1 : 3; }

// matmul() for a batch: when w has a GEMM kernel and n > small_batch(its kernel), packs x and
// runs the product in parallel over blocks of rows, returning true; otherwise does nothing and
// returns false.
bool matmul_batched(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                    int64_t n, float* y, int64_t ldy);

}  // namespace ktx::ops::cpu
