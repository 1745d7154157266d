// The CPU backend's matrix products over weights exactly as the GGUF mapping stores them. Each
// activation row is quantized once to the weight type's vec_dot_type (Q8_0/Q8_1/Q8_K, or
// F32/F16/BF16), then every weight row is dotted with every activation row: rows outer, tokens
// inner, so a weight row is read from memory once per batch. Work is split into blocks of output
// rows. Weights are never copied. The dot products and quantizers are the fastest this CPU has
// (kernels/cpu/vec_dot.h), looked up once per WeightMatrix / QuantizedRows. On CPUs with GEMM
// kernels a batch of more than a few tokens goes through them instead (batch_matmul.h,
// small_batch), with the same results.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/cpu/vec_dot.h"
#include "ktx/gguf.h"
#include "ktx/tensor_type.h"
#include "quant/row_tiles.h"
#include "runtime/thread_pool.h"

namespace ktx::ops::cpu {

// `rows` rows of `cols` elements of `type`, `row_bytes` apart, inside the mapping.
struct WeightMatrix {
  const gguf::TensorInfo* tensor = nullptr;  // for error messages
  TensorType type = TensorType::F32;
  TensorType dot_type = TensorType::F32;  // quant::vec_dot_type(type)
  int64_t cols = 0;
  int64_t rows = 0;
  size_t row_bytes = 0;
  const uint8_t* data = nullptr;
  kernels::cpu::VecDotFn dot_fn = nullptr;           // vec_dot_fn(type)
  kernels::cpu::VecDotRowsFn dot_rows_fn = nullptr;  // vec_dot_rows_fn(type), may be null
  // The same rows repacked into row tiles (repacked.h, the "repack" option), or null: tile t
  // (rows 16t..16t+15) at tiles + t · 16 · row_bytes. dot() reads them, and batches through the
  // tile GEMMs (batch_matmul.h).
  const uint8_t* tiles = nullptr;
  kernels::cpu::VecDotTilesFn tiles_fn = nullptr;

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
  // out[i] = row(r0 + i) · y for i in [0, count), y stored as dot_type: the whole tiles of the
  // range through the tile kernel when the rows are repacked, the rest through the multi-row
  // kernel where the type has one, else one dot per row. The same results every way, except
  // that the block quants' multi-row and one-row kernels add their per-block terms in another
  // order than the reference (and the tiles).
  void dot(int64_t r0, int64_t count, const void* y, float* out) const {
    if (tiles != nullptr && r0 % quant::kTileRows == 0 && count >= quant::kTileRows) {
      const int64_t n_tiles = count / quant::kTileRows;
      tiles_fn(cols, tiles + static_cast<size_t>(r0) * row_bytes,
               static_cast<size_t>(quant::kTileRows) * row_bytes, n_tiles, y, out);
      r0 += n_tiles * quant::kTileRows;
      count -= n_tiles * quant::kTileRows;
      out += n_tiles * quant::kTileRows;
      if (count == 0) return;
    }
    if (dot_rows_fn != nullptr) {
      dot_rows_fn(cols, row(r0), row_bytes, count, y, out);
    } else {
      for (int64_t i = 0; i < count; ++i) out[i] = dot_fn(cols, row(r0 + i), y);
    }
  }
  std::string_view name() const { return tensor ? std::string_view(tensor->name) : "?"; }
};

// The whole tensor as a matrix: cols = shape[0], rows = product of the other dimensions.
// Throws ktx::Error (kUnsupported) naming the tensor when its type has no dot product.
WeightMatrix weight_matrix(const gguf::TensorInfo& t);

// Slab `index` of a 3-D tensor [cols, rows, n]: the index-th [cols, rows] matrix (an expert's
// weights in ffn_*_exps, a head's in attn_k_b / attn_v_b).
WeightMatrix weight_slab(const gguf::TensorInfo& t, int64_t index);

// nullopt when `t` can be used by weight_matrix/weight_slab: its type has a reference dot product
// whose activation type can be quantized, and its rows fit that type's blocks. Otherwise why not,
// naming the tensor and type, for an OpImpl::check.
std::optional<std::string> check_matmul_weight(const gguf::TensorInfo& t, std::string_view impl);

// nullopt when every row of `t` can be dequantized (embedding tables, norm weights, the MLA
// kv_b / k_b / v_b products that run on dequantized rows).
std::optional<std::string> check_dequantize_weight(const gguf::TensorInfo& t,
                                                   std::string_view impl);

// Activation rows quantized once to one dot type; row(i) feeds WeightMatrix::dot.
class QuantizedRows {
 public:
  // Quantizes n rows of `cols` floats, `ldx` floats apart. Uses the pool (when given) for many
  // rows.
  void quantize(runtime::ThreadPool* pool, TensorType type, int64_t n, int64_t cols, const float* x,
                int64_t ldx);
  // Quantizes row i alone (after resize()); for callers that produce rows one by one. resize()
  // throws ktx::Error (kInvalidArgument) when `cols` is not a multiple of the type's block size.
  void resize(TensorType type, int64_t n, int64_t cols);
  void quantize_row(int64_t i, const float* x);

  const void* row(int64_t i) const { return data_.data() + static_cast<size_t>(i) * row_bytes_; }
  TensorType type() const { return type_; }
  int64_t cols() const { return cols_; }

 private:
  TensorType type_ = TensorType::F32;
  int64_t cols_ = 0;
  size_t row_bytes_ = 0;
  kernels::cpu::QuantizeRowFn quantize_fn_ = nullptr;  // quantize_row_fn(type_)
  std::vector<uint8_t> data_;
};

// y[t * ldy + r] = w.row(r) · x.row(t) for r in [r0, r1), t in [0, n): one thread's share.
void matmul_rows(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantizedRows& x, int64_t n,
                 float* y, int64_t ldy);

// y [n][ldy] (the first w.rows columns) = x [n][ldx] (the first w.cols columns) · wᵀ, parallel
// over blocks of output rows.
void matmul(runtime::ThreadPool& pool, const WeightMatrix& w, int64_t n, const float* x,
            int64_t ldx, float* y, int64_t ldy);

// The same with x already quantized (to w.dot_type), for callers that reuse it across weights.
void matmul(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x, int64_t n,
            float* y, int64_t ldy);

// Output rows per task: enough work per task (~32K weight elements) to amortize scheduling, in
// whole row tiles (16 rows).
int64_t row_grain(int64_t cols);

// fn(r0, r1) over `rows` weight rows of `cols` elements each for a batch of n_tokens: one token
// (decode) streams the rows from memory once, one sequential stream per thread
// (parallel_for_streams); a batch takes chunks (parallel_for).
template <typename Fn>
void for_row_blocks(runtime::ThreadPool& pool, int64_t n_tokens, int64_t rows, int64_t cols,
                    Fn&& fn) {
  if (n_tokens == 1) {
    pool.parallel_for_streams(rows, row_grain(cols), fn);
  } else {
    pool.parallel_for(rows, row_grain(cols), fn);
  }
}

// Weight rows dotted per activation row in the rows-outer, tokens-inner loop (matmul_rows): small
// enough that they stay in L1/L2 while every token passes over them, a multiple of the multi-row
// kernels' 4, and one whole row tile (fewer would read the file's rows, which option repack gave
// back).
inline constexpr int64_t kRowChunk = quant::kTileRows;

}  // namespace ktx::ops::cpu
