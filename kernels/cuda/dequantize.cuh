// GPU dequantization of GGUF block formats to f32: one thread per output element, reading only
// its own block's bytes. Used to bring GGUF weights onto the GPU (and as the reference the fused
// GPU kernels are checked against). Every product and difference uses the round-to-nearest
// intrinsics so nvcc cannot contract them into FMAs: the result is then bit-identical with the
// CPU reference in lib/quant, which follows the same operation order.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <type_traits>

#include "quant/blocks.h"

namespace ktx::cuda {

__device__ inline float half_bits_to_float(uint16_t bits) {
  return __half2float(__ushort_as_half(bits));
}

// Non-linear levels of IQ4_NL (the same numbers as kIQ4NLValues; device code needs its own copy).
static __constant__ int8_t kIQ4NLLevels[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                        1,    13,   25,  38,  53,  69,  89,  113};

// Scale and min number j (0..7) of a Q4_K/Q5_K block: 6 bits each, packed into 12 bytes.
__device__ inline void k4_scale_min(int j, const uint8_t* q, int& scale, int& min) {
  if (j < 4) {
    scale = q[j] & 63;
    min = q[j + 4] & 63;
  } else {
    scale = (q[j + 4] & 0x0F) | ((q[j - 4] >> 6) << 4);
    min = (q[j + 4] >> 4) | ((q[j] >> 6) << 4);
  }
}

template <class Block>
__device__ inline const Block& block_at(const uint8_t* row, int64_t i, int per_block) {
  return reinterpret_cast<const Block*>(row)[i / per_block];
}

// Element i (index within its row) of a row stored as each type.
struct DequantF32 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    return reinterpret_cast<const float*>(row)[i];
  }
};
struct DequantF16 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    return half_bits_to_float(reinterpret_cast<const uint16_t*>(row)[i]);
  }
};
struct DequantBF16 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    return __uint_as_float(static_cast<uint32_t>(reinterpret_cast<const uint16_t*>(row)[i]) << 16);
  }
};
struct DequantQ4_0 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    const auto& b = block_at<quant::BlockQ4_0>(row, i, 32);
    const int j = static_cast<int>(i % 32);
    const int q = (j < 16 ? b.qs[j] & 0x0F : b.qs[j - 16] >> 4) - 8;
    return __fmul_rn(half_bits_to_float(b.d), static_cast<float>(q));
  }
};
struct DequantQ5_0 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    const auto& b = block_at<quant::BlockQ5_0>(row, i, 32);
    const int j = static_cast<int>(i % 32);
    const uint32_t qh = b.qh[0] | (b.qh[1] << 8) | (b.qh[2] << 16) | (static_cast<uint32_t>(b.qh[3]) << 24);
    const int low = j < 16 ? b.qs[j] & 0x0F : b.qs[j - 16] >> 4;
    const int q = (low | (((qh >> j) & 1) << 4)) - 16;
    return __fmul_rn(half_bits_to_float(b.d), static_cast<float>(q));
  }
};
struct DequantQ8_0 {
  __device__ static float at(const uint8_t* row, int64_t i) {
    const auto& b = block_at<quant::BlockQ8_0>(row, i, 32);
    return __fmul_rn(half_bits_to_float(b.d), static_cast<float>(b.qs[i % 32]));
  }
};
struct DequantIQ4_NL {
  __device__ static float at(const uint8_t* row, int64_t i) {
    const auto& b = block_at<quant::BlockIQ4_NL>(row, i, 32);
    const int j = static_cast<int>(i % 32);
    const int index = j < 16 ? b.qs[j] & 0x0F : b.qs[j - 16] >> 4;
    return __fmul_rn(half_bits_to_float(b.d), static_cast<float>(kIQ4NLLevels[index]));
  }
};
// Q4_K/Q5_K: 8 sub-blocks of 32; (d·scale)·q − (dmin·min).
template <bool kFifthBit>
struct DequantQ45_K {
  __device__ static float at(const uint8_t* row, int64_t i) {
    using Block = std::conditional_t<kFifthBit, quant::BlockQ5_K, quant::BlockQ4_K>;
    const auto& b = block_at<Block>(row, i, 256);
    const int k = static_cast<int>(i % 256);
    const int sub = k / 32, l = k % 32;
    int scale, min;
    k4_scale_min(sub, b.scales, scale, min);
    int q = (b.qs[(sub / 2) * 32 + l] >> (4 * (sub & 1))) & 0x0F;
    if constexpr (kFifthBit) q |= ((b.qh[l] >> sub) & 1) << 4;
    const float d = __fmul_rn(half_bits_to_float(b.d), static_cast<float>(scale));
    const float m = __fmul_rn(half_bits_to_float(b.dmin), static_cast<float>(min));
    return __fsub_rn(__fmul_rn(d, static_cast<float>(q)), m);
  }
};
// Q6_K: two halves of 128; 4 low bits in ql, 2 high bits in qh, one int8 scale per 16.
struct DequantQ6_K {
  __device__ static float at(const uint8_t* row, int64_t i) {
    const auto& b = block_at<quant::BlockQ6_K>(row, i, 256);
    const int k = static_cast<int>(i % 256);
    const int half = k / 128, r = k % 128, group = r / 32, l = r % 32;
    const int low = (b.ql[half * 64 + (group & 1) * 32 + l] >> (4 * (group >> 1))) & 0x0F;
    const int high = (b.qh[half * 32 + l] >> (2 * group)) & 0x03;
    const int q = (low | (high << 4)) - 32;
    const float d = __fmul_rn(half_bits_to_float(b.d), static_cast<float>(b.scales[k / 16]));
    return __fmul_rn(d, static_cast<float>(q));
  }
};

// rows × row_length elements; `src_row_bytes` apart in the source, dense in the destination.
template <class Format>
__global__ void dequantize_rows_kernel(const uint8_t* __restrict__ src, size_t src_row_bytes,
                                       float* __restrict__ dst, int64_t rows, int64_t row_length) {
  const int64_t total = rows * row_length;
  for (int64_t e = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; e < total;
       e += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t r = e / row_length, i = e % row_length;
    dst[e] = Format::at(src + r * src_row_bytes, i);
  }
}

}  // namespace ktx::cuda
