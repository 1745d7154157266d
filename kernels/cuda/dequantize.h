// Host entry for GPU dequantization (kernels/cuda/dequantize.cuh). Plain C++ so that code
// compiled without nvcc can call it.
#pragma once

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "ktx/tensor_type.h"

namespace ktx::cuda {

// True for the types dequantize_rows() handles: F32, F16, BF16, Q4_0, Q5_0, Q8_0, Q4_K, Q5_K,
// Q6_K, IQ4_NL (what DeepSeek "Q4_K_M" files hold).
bool can_dequantize(TensorType type);

// Dequantizes `rows` rows of `row_length` elements from device memory `src` (rows
// row_size(type, row_length) bytes apart) into dense f32 at device memory `dst`, on `stream`.
// Returns cudaErrorNotSupported for a type can_dequantize() refuses, cudaErrorInvalidValue for a
// row length that is not a multiple of the type's block, otherwise the launch status.
cudaError_t dequantize_rows(TensorType type, const void* src, float* dst, int64_t rows,
                            int64_t row_length, cudaStream_t stream);

}  // namespace ktx::cuda
