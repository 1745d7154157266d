// Type dispatch and launch geometry for the GPU dequantization kernels.
#include <algorithm>

#include "dequantize.cuh"
#include "dequantize.h"

namespace ktx::cuda {
namespace {

template <class Format>
cudaError_t launch(const void* src, size_t src_row_bytes, float* dst, int64_t rows,
                   int64_t row_length, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t total = rows * row_length;
  if (total == 0) return cudaSuccess;
  // Grid-stride loop: cap the grid, each thread then walks several elements.
  const int64_t blocks = std::min<int64_t>((total + kThreads - 1) / kThreads, 65535);
  dequantize_rows_kernel<Format><<<static_cast<unsigned>(blocks), kThreads, 0, stream>>>(
      static_cast<const uint8_t*>(src), src_row_bytes, dst, rows, row_length);
  return cudaGetLastError();
}

}  // namespace

bool can_dequantize(TensorType type) {
  switch (type) {
    case TensorType::F32:
    case TensorType::F16:
    case TensorType::BF16:
    case TensorType::Q4_0:
    case TensorType::Q5_0:
    case TensorType::Q8_0:
    case TensorType::Q4_K:
    case TensorType::Q5_K:
    case TensorType::Q6_K:
    case TensorType::IQ4_NL:
      return true;
    default:
      return false;
  }
}

cudaError_t dequantize_rows(TensorType type, const void* src, float* dst, int64_t rows,
                            int64_t row_length, cudaStream_t stream) {
  if (!can_dequantize(type)) return cudaErrorNotSupported;
  const TypeTraits& t = traits(type);
  if (rows < 0 || row_length < 0 || row_length % t.block_size != 0) return cudaErrorInvalidValue;
  const size_t row_bytes = static_cast<size_t>(row_length / t.block_size) * t.type_size;
  switch (type) {
    case TensorType::F32: return launch<DequantF32>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::F16: return launch<DequantF16>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::BF16: return launch<DequantBF16>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q4_0: return launch<DequantQ4_0>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q5_0: return launch<DequantQ5_0>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q8_0: return launch<DequantQ8_0>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q4_K:
      return launch<DequantQ45_K<false>>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q5_K:
      return launch<DequantQ45_K<true>>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::Q6_K: return launch<DequantQ6_K>(src, row_bytes, dst, rows, row_length, stream);
    case TensorType::IQ4_NL:
      return launch<DequantIQ4_NL>(src, row_bytes, dst, rows, row_length, stream);
    default: return cudaErrorNotSupported;
  }
}

}  // namespace ktx::cuda
