// Batched matrix products through the GEMM kernels: panel packing and the task split.
#include "ops/cpu/batch_matmul.h"

#include <fmt/format.h>

#include <algorithm>

#include "ktx/error.h"
#include "quant/row_tiles.h"

namespace ktx::ops::cpu {
namespace {

namespace kc = kernels::cpu;

// Rows per call of the kernel and tokens per call: the kernels walk a call's tokens for every
// row, so a block's weights (64 rows: 72 KB of Q4_K at 2048 columns) stay in L2 while all the
// batch's panels (1.2 MB for 512 tokens, from L3) stream past them, chunk by chunk.
constexpr int64_t kRowBlock = 64;
constexpr int64_t kTokenChunk = 64;

// Rows per task at least: enough for the kernels' own row blocks (32) and tiles (2 rows).
constexpr int64_t kMinTaskRows = 32;

}  // namespace

BatchKernel batch_kernel(const WeightMatrix& w) {
  BatchKernel k;
  if (w.tiles != nullptr) {
    k.tiles = kc::gemm_tiles_fn(w.type);
    k.pack = kc::gemm_tiles_pack_fn(w.type);
    if (k.tiles != nullptr && k.pack != nullptr) {
      k.panel_bytes = kc::gemm_tiles_panel_bytes(w.type, w.cols);
      return k;
    }
    k = BatchKernel{};
  }
  k.pack = kc::gemm_pack_fn(w.dot_type);
  if (k.pack == nullptr) return BatchKernel{};
  k.rows = kc::gemm_fn(w.type);
  if (k.rows == nullptr) return BatchKernel{};
  k.panel_bytes = kc::gemm_panel_bytes(w.dot_type, w.cols);
  return k;
}

void GemmPanels::pack(runtime::ThreadPool* pool, const BatchKernel& kernel, const QuantizedRows& x,
                      int64_t n, int64_t first, const int32_t* ids) {
  const kc::GemmPackFn pack_fn = kernel.pack;
  if (pack_fn == nullptr) {
    throw Error(ErrorCode::kInternal, fmt::format("no GEMM panel packer for activations of type {}",
                                                  type_name(x.type())));
  }
  type_ = x.type();
  cols_ = x.cols();
  tokens_ = n;
  panel_bytes_ = kernel.panel_bytes;
  const int64_t n_panels = (n + kc::kGemmTokens - 1) / kc::kGemmTokens;
  const size_t bytes = panel_bytes_ * static_cast<size_t>(n_panels);
  if (storage_.size() < bytes + 64) storage_.resize(bytes + 64);
  const auto address = reinterpret_cast<uintptr_t>(storage_.data());
  data_ = storage_.data() + ((64 - address % 64) % 64);
  auto body = [&](int64_t p0, int64_t p1) {
    for (int64_t p = p0; p < p1; ++p) {
      const void* rows[kc::kGemmTokens];
      const int64_t count = std::min<int64_t>(kc::kGemmTokens, n - p * kc::kGemmTokens);
      for (int64_t i = 0; i < count; ++i) {
        const int64_t t = p * kc::kGemmTokens + i;
        rows[i] = x.row(ids != nullptr ? ids[t] : first + t);
      }
      pack_fn(cols_, rows, count, data_ + static_cast<size_t>(p) * panel_bytes_);
    }
  };
  // A panel costs about as much as quantizing its rows: only many are worth splitting.
  if (pool != nullptr && n_panels >= 8) {
    pool->parallel_for(n_panels, 2, body);
  } else {
    body(0, n_panels);
  }
}

void gemm_rows(const BatchKernel& kernel, const WeightMatrix& w, int64_t r0, int64_t r1,
               const GemmPanels& x, int64_t t0, int64_t t1, float* y, int64_t ldy) {
  constexpr int64_t kTile = quant::kTileRows;
  if (kernel.tiles != nullptr && (r0 % kTile != 0 || (r1 % kTile != 0 && r1 != w.rows))) {
    throw Error(ErrorCode::kInternal,
                fmt::format("{}: rows [{}, {}) are not whole row tiles", w.name(), r0, r1));
  }
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, r1 - rb);
    for (int64_t tc = t0; tc < t1; tc += kTokenChunk) {
      const int64_t tokens = std::min(kTokenChunk, t1 - tc);
      float* out = y + (tc - t0) * ldy + (rb - r0);
      if (kernel.tiles != nullptr) {
        kernel.tiles(w.cols, w.tiles + static_cast<size_t>(rb) * w.row_bytes,
                     static_cast<size_t>(kTile) * w.row_bytes, rows / kTile, x.panels_from(tc),
                     tokens, out, static_cast<size_t>(ldy));
      } else {
        kernel.rows(w.cols, w.row(rb), w.row_bytes, rows, x.panels_from(tc), tokens, out,
                    static_cast<size_t>(ldy));
      }
    }
  }
}

bool matmul_batched(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                    int64_t n, float* y, int64_t ldy) {
  if (n <= 1) return false;
  const BatchKernel kernel = batch_kernel(w);
  if (!kernel || n <= small_batch(kernel)) return false;
  GemmPanels panels;
  panels.pack(&pool, kernel, x, n);
  // Tasks of whole kMinTaskRows blocks (parallel_for's chunks are multiples of the grain): whole
  // row tiles.
  static_assert(kMinTaskRows % quant::kTileRows == 0);
  pool.parallel_for(w.rows, kMinTaskRows, [&](int64_t r0, int64_t r1) {
    gemm_rows(kernel, w, r0, r1, panels, 0, n, y + r0, ldy);
  });
  return true;
}

}  // namespace ktx::ops::cpu
