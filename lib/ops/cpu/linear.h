// The CPU backend's matrix products over weights exactly as the GGUF mapping stores them. Each
// activation row is quantized once to the weight type's vec_dot_type (Q8_0/Q8_1/Q8_K, or
// F32/F16/BF16), then every weight row is dotted with every activation row: rows outer, tokens
// inner, so a weight row is read from memory once per batch. Work is split into blocks of output
// rows. Weights are never copied.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/tensor_type.h"
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

  const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
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

// Activation rows quantized once to one dot type; row(i) feeds quant::vec_dot.
class QuantizedRows {
 public:
  // Quantizes n rows of `cols` floats, `ldx` floats apart. Uses the pool (when given) for many
  // rows.
  void quantize(runtime::ThreadPool* pool, TensorType type, int64_t n, int64_t cols, const float* x,
                int64_t ldx);
  // Quantizes row i alone (after resize()); for callers that produce rows one by one.
  void resize(TensorType type, int64_t n, int64_t cols);
  void quantize_row(int64_t i, const float* x);

  const void* row(int64_t i) const { return data_.data() + static_cast<size_t>(i) * row_bytes_; }
  TensorType type() const { return type_; }
  int64_t cols() const { return cols_; }

 private:
  TensorType type_ = TensorType::F32;
  int64_t cols_ = 0;
  size_t row_bytes_ = 0;
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

// Output rows per task: enough work per task (~32K weight elements) to amortize scheduling.
int64_t row_grain(int64_t cols);

}  // namespace ktx::ops::cpu
