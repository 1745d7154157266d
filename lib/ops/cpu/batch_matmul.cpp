// Batched matrix products through the GEMM kernels: panel packing and the task split.
#include "ops/cpu/batch_matmul.h"

#include <fmt/format.h>

#include <algorithm>

#include "ktx/error.h"

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

kc::GemmFn batch_kernel(const WeightMatrix& w) {
  if (kc::gemm_pack_fn(w.dot_type) == nullptr) return nullptr;
  return kc::gemm_fn(w.type);
}

void GemmPanels::pack(runtime::ThreadPool* pool, const QuantizedRows& x, int64_t n, int64_t first,
                      const int32_t* ids) {
  const kc::GemmPackFn pack_fn = kc::gemm_pack_fn(x.type());
  if (pack_fn == nullptr) {
    throw Error(ErrorCode::kInternal, fmt::format("no GEMM panel packer for activations of type {}",
                                                  type_name(x.type())));
  }
  type_ = x.type();
  cols_ = x.cols();
  tokens_ = n;
  panel_bytes_ = kc::gemm_panel_bytes(type_, cols_);
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

void gemm_rows(kc::GemmFn fn, const WeightMatrix& w, int64_t r0, int64_t r1, const GemmPanels& x,
               int64_t t0, int64_t t1, float* y, int64_t ldy) {
  for (int64_t rb = r0; rb < r1; rb += kRowBlock) {
    const int64_t rows = std::min(kRowBlock, r1 - rb);
    for (int64_t tc = t0; tc < t1; tc += kTokenChunk) {
      fn(w.cols, w.row(rb), w.row_bytes, rows, x.panels_from(tc), std::min(kTokenChunk, t1 - tc),
         y + (tc - t0) * ldy + (rb - r0), static_cast<size_t>(ldy));
    }
  }
}

bool matmul_batched(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                    int64_t n, float* y, int64_t ldy) {
  if (n <= 1) return false;
  const kc::GemmFn fn = batch_kernel(w);
  if (fn == nullptr) return false;
  GemmPanels panels;
  panels.pack(&pool, x, n);
  pool.parallel_for(w.rows, kMinTaskRows, [&](int64_t r0, int64_t r1) {
    gemm_rows(fn, w, r0, r1, panels, 0, n, y + r0, ldy);
  });
  return true;
}

}  // namespace ktx::ops::cpu
