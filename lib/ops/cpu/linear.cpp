// Matrix products over GGUF weight rows with the dispatched CPU kernels (kernels/cpu/vec_dot.h):
// quantize activations once, then parallel over blocks of output rows.
#include "ops/cpu/linear.h"

#include <fmt/format.h>

#include <algorithm>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "ops/cpu/batch_matmul.h"
#include "ops/cpu/onednn_matmul.h"

namespace ktx::ops::cpu {
namespace {

std::string shape_string(const gguf::TensorInfo& t) {
  std::string s = "[";
  for (size_t i = 0; i < t.shape.size(); ++i) s += fmt::format("{}{}", i ? ", " : "", t.shape[i]);
  return s + "]";
}

TensorType dot_type_of(const gguf::TensorInfo& t) {
  const std::optional<TensorType> dt = quant::vec_dot_type(t.type);
  if (!dt || !quant::can_quantize(*dt)) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("{} is {}, which ktx's CPU matrix product cannot multiply", t.name,
                            type_name(t.type)));
  }
  return *dt;
}

}  // namespace

WeightMatrix weight_matrix(const gguf::TensorInfo& t) {
  WeightMatrix w;
  w.tensor = &t;
  w.type = t.type;
  w.dot_type = dot_type_of(t);
  w.cols = t.shape.empty() ? 0 : t.shape[0];
  w.rows = t.rows();
  w.row_bytes = row_size(t.type, w.cols);
  w.data = t.data;
  w.dot_fn = kernels::cpu::vec_dot_fn(t.type);
  w.dot_rows_fn = kernels::cpu::vec_dot_rows_fn(t.type);
  if (w.dot_fn == nullptr) {  // quant::vec_dot_type said yes, so the table must have it
    throw Error(ErrorCode::kInternal,
                fmt::format("{}: no CPU dot product kernel for {}", t.name, type_name(t.type)));
  }
  return w;
}

WeightMatrix weight_slab(const gguf::TensorInfo& t, int64_t index) {
  if (t.shape.size() != 3 || index < 0 || index >= t.shape[2]) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: slab {} of a tensor of shape {} (expected 3-D, index < shape[2])",
                            t.name, index, shape_string(t)));
  }
  WeightMatrix w = weight_matrix(t);
  w.rows = t.shape[1];
  w.data = t.data + static_cast<size_t>(index) * static_cast<size_t>(w.rows) * w.row_bytes;
  return w;
}

std::optional<std::string> check_matmul_weight(const gguf::TensorInfo& t, std::string_view impl) {
  const std::optional<TensorType> dt = quant::vec_dot_type(t.type);
  if (!dt || !quant::can_quantize(*dt)) {
    return fmt::format("{} is {}, which {} cannot multiply (no dot product for that type)", t.name,
                       type_name(t.type), impl);
  }
  if (t.shape.empty() || t.shape[0] % traits(*dt).block_size != 0) {
    return fmt::format("{} has rows of {} elements, not a multiple of the {} block size {}", t.name,
                       t.shape.empty() ? 0 : t.shape[0], type_name(*dt), traits(*dt).block_size);
  }
  if (t.data == nullptr && t.n_elements > 0) return fmt::format("{} has no data", t.name);
  return std::nullopt;
}

std::optional<std::string> check_dequantize_weight(const gguf::TensorInfo& t,
                                                   std::string_view impl) {
  if (!quant::can_dequantize(t.type)) {
    return fmt::format("{} is {}, which {} cannot read (no dequantization for that type)", t.name,
                       type_name(t.type), impl);
  }
  if (t.data == nullptr && t.n_elements > 0) return fmt::format("{} has no data", t.name);
  return std::nullopt;
}

void QuantizedRows::resize(TensorType type, int64_t n, int64_t cols) {
  type_ = type;
  cols_ = cols;
  row_bytes_ = row_size(type, cols);
  quantize_fn_ = kernels::cpu::quantize_row_fn(type);
  if (quantize_fn_ == nullptr) {
    throw Error(ErrorCode::kUnsupported,
                fmt::format("no CPU quantizer for activations of type {}", type_name(type)));
  }
  data_.resize(row_bytes_ * static_cast<size_t>(std::max<int64_t>(n, 0)));
}

void QuantizedRows::quantize_row(int64_t i, const float* x) {
  quantize_fn_(x, data_.data() + static_cast<size_t>(i) * row_bytes_, cols_);
}

void QuantizedRows::quantize(runtime::ThreadPool* pool, TensorType type, int64_t n, int64_t cols,
                             const float* x, int64_t ldx) {
  resize(type, n, cols);
  auto body = [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) quantize_row(t, x + t * ldx);
  };
  // A row costs about as much as a few dot products: only batches are worth splitting.
  if (pool != nullptr && n >= 8) {
    pool->parallel_for(n, 4, body);
  } else {
    body(0, n);
  }
}

void matmul_rows(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantizedRows& x, int64_t n,
                 float* y, int64_t ldy) {
  if (n == 1) {  // decode: the whole range in one call, written in place
    w.dot(r0, r1 - r0, x.row(0), y + r0);
    return;
  }
  float out[kRowChunk];
  for (int64_t r = r0; r < r1; r += kRowChunk) {
    const int64_t count = std::min(kRowChunk, r1 - r);
    for (int64_t t = 0; t < n; ++t) {
      w.dot(r, count, x.row(t), out);
      std::copy(out, out + count, y + t * ldy + r);
    }
  }
}

int64_t row_grain(int64_t cols) {
  // A multiple of the row tiles' 16 rows, so that a repacked matrix's blocks are whole tiles.
  const int64_t rows = std::max<int64_t>(1, 32768 / std::max<int64_t>(cols, 1));
  return (rows + quant::kTileRows - 1) / quant::kTileRows * quant::kTileRows;
}

void matmul(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x, int64_t n,
            float* y, int64_t ldy) {
  if (x.type() != w.dot_type || x.cols() != w.cols) {
    throw Error(ErrorCode::kInternal,
                fmt::format("{}: activations are {} × {}, expected {} × {}", w.name(),
                            type_name(x.type()), x.cols(), type_name(w.dot_type), w.cols));
  }
  // A batch goes through oneDNN for F32 / BF16 weights where it is faster (onednn_matmul.h),
  // else through the GEMM kernels where the type has one (batch_matmul.h).
  if (n > 1 && onednn_matmul(pool, w, x, n, y, ldy)) return;
  if (matmul_batched(pool, w, x, n, y, ldy)) return;
  for_row_blocks(pool, n, w.rows, w.cols,
                 [&](int64_t r0, int64_t r1) { matmul_rows(w, r0, r1, x, n, y, ldy); });
}

void matmul(runtime::ThreadPool& pool, const WeightMatrix& w, int64_t n, const float* x,
            int64_t ldx, float* y, int64_t ldy) {
  if (n <= 0) return;
  QuantizedRows q;
  q.quantize(&pool, w.dot_type, n, w.cols, x, ldx);
  matmul(pool, w, q, n, y, ldy);
}

}  // namespace ktx::ops::cpu
