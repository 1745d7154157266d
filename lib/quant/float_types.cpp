// Reference conversions and dot products for the unblocked float types F32, F16 and BF16.
#include <cstring>

#include "quant/formats.h"
#include "quant/fp16.h"

// See formats.h: a fused a*b+c would change results. GCC needs -ffp-contract=off on the command
// line; Clang takes this pragma.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace ktx::quant {

void dequantize_row_f32(const float* x, float* y, int64_t n) {
  std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_row_f16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = fp16_to_f32(x[i]);
}

void dequantize_row_bf16(const uint16_t* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = bf16_to_f32(x[i]);
}

void quantize_row_f32(const float* x, float* y, int64_t n) {
  std::memcpy(y, x, static_cast<size_t>(n) * sizeof(float));
}

void quantize_row_f16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_fp16(x[i]);
}

void quantize_row_bf16(const float* x, uint16_t* y, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] = f32_to_bf16(x[i]);
}

// Products of two f32 values are exact in double, so only the additions round.
float vec_dot_f32(int64_t n, const float* x, const float* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * static_cast<double>(y[i]);
  return static_cast<float>(sum);
}

float vec_dot_f16(int64_t n, const uint16_t* x, const uint16_t* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(fp16_to_f32(x[i])) * static_cast<double>(fp16_to_f32(y[i]));
  }
  return static_cast<float>(sum);
}

float vec_dot_bf16(int64_t n, const uint16_t* x, const uint16_t* y) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(bf16_to_f32(x[i])) * static_cast<double>(bf16_to_f32(y[i]));
  }
  return static_cast<float>(sum);
}

}  // namespace ktx::quant
