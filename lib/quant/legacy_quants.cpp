// Reference dequantize / quantize / dot for the legacy 32-element block quants: Q4_0, Q4_1, Q5_0,
// Q5_1, Q8_0 and Q8_1. In the 4- and 5-bit formats byte j holds element j in its low nibble and
// element j + 16 in its high nibble; the 5-bit formats keep each element's fifth bit at bit j of
// the little-endian u32 qh.
#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>

#include "quant/formats.h"
#include "quant/fp16.h"

// See formats.h: a fused a*b+c would change results. GCC needs -ffp-contract=off on the command
// line; Clang takes this pragma.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace ktx::quant {
namespace {

constexpr int kHalf = 16;  // every legacy block here holds 32 elements: two halves of 16

uint32_t load_qh(const uint8_t qh[4]) {
  uint32_t bits;
  std::memcpy(&bits, qh, sizeof bits);
  return bits;  // ktx assumes a little-endian host, as GGUF files are little-endian
}

void store_qh(uint8_t qh[4], uint32_t bits) { std::memcpy(qh, &bits, sizeof bits); }

// The low nibble (element j) or high nibble (element j + 16) of a packed 4-bit block.
int nibble(const uint8_t* qs, int element) {
  return element < kHalf ? (qs[element] & 0x0F) : (qs[element - kHalf] >> 4);
}

// The 5-bit value of `element`: its nibble plus bit `element` of qh as bit 4.
int five_bits(const uint8_t* qs, uint32_t qh, int element) {
  return nibble(qs, element) | static_cast<int>(((qh >> element) & 1u) << 4);
}

// Signed value with the largest magnitude; the first one wins a tie (llama.cpp's scan order).
float signed_absmax(const float* x, int count) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < count; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  return max;
}

float absmax(const float* x, int count) {
  float amax = 0.0f;
  for (int j = 0; j < count; ++j) amax = std::max(amax, std::fabs(x[j]));
  return amax;
}

// Truncation (not rounding) of v = x*id + offset + 0.5, as llama.cpp's "(int8_t)(v)", clamped to
// [0, hi]. Equal to llama.cpp for every v it can reach; defined (where its cast is not) when a
// subnormal scale makes id infinite.
int truncate_clamped(float v, int hi) {
  if (!(v >= 0.0f)) return 0;  // also NaN
  if (v >= static_cast<float>(hi)) return hi;
  return static_cast<int>(v);
}

// roundf (ties away from zero, as the gguf package's np_roundf), saturated to [-127, 127].
int8_t round_to_int8(float v) {
  if (!(std::fabs(v) <= 127.0f)) return v > 0.0f ? 127 : v < 0.0f ? -127 : 0;
  return static_cast<int8_t>(std::round(v));
}

}  // namespace

// ---- dequantize: f32 operation order as the gguf package (d * q, then + m) --------------------

void dequantize_row_q4_0(const BlockQ4_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b, y += kQK4_0) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK4_0; ++j) y[j] = d * static_cast<float>(nibble(x[b].qs, j) - 8);
  }
}

void dequantize_row_q4_1(const BlockQ4_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_1; ++b, y += kQK4_1) {
    const float d = fp16_to_f32(x[b].d);
    const float m = fp16_to_f32(x[b].m);
    for (int j = 0; j < kQK4_1; ++j) y[j] = d * static_cast<float>(nibble(x[b].qs, j)) + m;
  }
}

void dequantize_row_q5_0(const BlockQ5_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_0; ++b, y += kQK5_0) {
    const float d = fp16_to_f32(x[b].d);
    const uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < kQK5_0; ++j) y[j] = d * static_cast<float>(five_bits(x[b].qs, qh, j) - 16);
  }
}

void dequantize_row_q5_1(const BlockQ5_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_1; ++b, y += kQK5_1) {
    const float d = fp16_to_f32(x[b].d);
    const float m = fp16_to_f32(x[b].m);
    const uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < kQK5_1; ++j) y[j] = d * static_cast<float>(five_bits(x[b].qs, qh, j)) + m;
  }
}

void dequantize_row_q8_0(const BlockQ8_0* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, y += kQK8_0) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK8_0; ++j) y[j] = d * static_cast<float>(x[b].qs[j]);
  }
}

// The gguf package has no Q8_1; its s field is a by-product for dots, not part of the values.
void dequantize_row_q8_1(const BlockQ8_1* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_1; ++b, y += kQK8_1) {
    const float d = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK8_1; ++j) y[j] = d * static_cast<float>(x[b].qs[j]);
  }
}

// ---- affine form: element = scale * code (+ offset), the same f32 steps as dequantize above;
// each 32-element block gives two groups of 16 with its scale (and minimum) -------------------

void affine_row_q4_0(const BlockQ4_0* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b, code += kQK4_0, scale += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    for (int j = 0; j < kQK4_0; ++j) code[j] = static_cast<int8_t>(nibble(x[b].qs, j) - 8);
  }
}

void affine_row_q4_1(const BlockQ4_1* x, int8_t* code, float* scale, float* offset, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_1; ++b, code += kQK4_1, scale += 2, offset += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    offset[0] = offset[1] = fp16_to_f32(x[b].m);
    for (int j = 0; j < kQK4_1; ++j) code[j] = static_cast<int8_t>(nibble(x[b].qs, j));
  }
}

void affine_row_q5_0(const BlockQ5_0* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_0; ++b, code += kQK5_0, scale += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    const uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < kQK5_0; ++j) code[j] = static_cast<int8_t>(five_bits(x[b].qs, qh, j) - 16);
  }
}

void affine_row_q5_1(const BlockQ5_1* x, int8_t* code, float* scale, float* offset, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_1; ++b, code += kQK5_1, scale += 2, offset += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    offset[0] = offset[1] = fp16_to_f32(x[b].m);
    const uint32_t qh = load_qh(x[b].qh);
    for (int j = 0; j < kQK5_1; ++j) code[j] = static_cast<int8_t>(five_bits(x[b].qs, qh, j));
  }
}

void affine_row_q8_0(const BlockQ8_0* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, code += kQK8_0, scale += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    std::memcpy(code, x[b].qs, kQK8_0);
  }
}

// ---- quantize: llama.cpp's quantize_row_*_ref. The scale is computed and inverted in f32 and
// only then rounded to f16, so the quants come from the unrounded inverse scale. ---------------

void quantize_row_q4_0_ref(const float* x, BlockQ4_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_0; ++b, x += kQK4_0) {
    // Dividing by -8 puts the largest-magnitude element on level 0 (-8), so the asymmetric level
    // range [-8, 7] is used fully on that element's side.
    const float d = signed_absmax(x, kQK4_0) / -8;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < kHalf; ++j) {
      const int lo = truncate_clamped(x[j] * id + 8.5f, 15);
      const int hi = truncate_clamped(x[j + kHalf] * id + 8.5f, 15);
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q4_1_ref(const float* x, BlockQ4_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_1; ++b, x += kQK4_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK4_1; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 15;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    y[b].m = f32_to_fp16(min);
    for (int j = 0; j < kHalf; ++j) {
      const int lo = truncate_clamped((x[j] - min) * id + 0.5f, 15);
      const int hi = truncate_clamped((x[j + kHalf] - min) * id + 0.5f, 15);
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

void quantize_row_q5_0_ref(const float* x, BlockQ5_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_0; ++b, x += kQK5_0) {
    const float d = signed_absmax(x, kQK5_0) / -16;  // as Q4_0: the extreme lands on level -16
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      const int lo = truncate_clamped(x[j] * id + 16.5f, 31);
      const int hi = truncate_clamped(x[j + kHalf] * id + 16.5f, 31);
      y[b].qs[j] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      qh |= static_cast<uint32_t>(lo >> 4) << j;
      qh |= static_cast<uint32_t>(hi >> 4) << (j + kHalf);
    }
    store_qh(y[b].qh, qh);
  }
}

void quantize_row_q5_1_ref(const float* x, BlockQ5_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK5_1; ++b, x += kQK5_1) {
    float min = FLT_MAX, max = -FLT_MAX;
    for (int j = 0; j < kQK5_1; ++j) {
      min = std::min(min, x[j]);
      max = std::max(max, x[j]);
    }
    const float d = (max - min) / 31;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    y[b].m = f32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < kHalf; ++j) {
      // llama.cpp does not clamp here; (x - min) * id + 0.5 cannot reach 32, so the clamp (which
      // the gguf package applies) never changes a value.
      const int lo = truncate_clamped((x[j] - min) * id + 0.5f, 31);
      const int hi = truncate_clamped((x[j + kHalf] - min) * id + 0.5f, 31);
      y[b].qs[j] = static_cast<uint8_t>((lo & 0x0F) | ((hi & 0x0F) << 4));
      qh |= static_cast<uint32_t>(lo >> 4) << j;
      qh |= static_cast<uint32_t>(hi >> 4) << (j + kHalf);
    }
    store_qh(y[b].qh, qh);
  }
}

void quantize_row_q8_0_ref(const float* x, BlockQ8_0* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_0; ++b, x += kQK8_0) {
    const float d = absmax(x, kQK8_0) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    for (int j = 0; j < kQK8_0; ++j) y[b].qs[j] = round_to_int8(x[j] * id);
  }
}

void quantize_row_q8_1_ref(const float* x, BlockQ8_1* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK8_1; ++b, x += kQK8_1) {
    const float d = absmax(x, kQK8_1) / 127;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y[b].d = f32_to_fp16(d);
    int sum = 0;
    for (int j = 0; j < kQK8_1; ++j) {
      y[b].qs[j] = round_to_int8(x[j] * id);
      sum += y[b].qs[j];
    }
    // s uses the unrounded f32 d, as llama.cpp does; it is then rounded to f16 once.
    y[b].s = f32_to_fp16(static_cast<float>(sum) * d);
  }
}

// ---- dot products: each block's integer sum is exact in int32 (at most 32 * 31 * 128), then
// scaled once in f32 and accumulated in f32, as llama.cpp's scalar paths do. --------------------

float vec_dot_q4_0_q8_0(int64_t n, const BlockQ4_0* x, const BlockQ8_0* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK4_0; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQK4_0; ++j) isum += (nibble(x[b].qs, j) - 8) * y[b].qs[j];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d));
  }
  return sum;
}

// x = d_x*q + m_x, so x·y = d_x*d_y*Σ q*q8 + m_x*Σ y; Q8_1's s already holds Σ y = d_y*Σ q8.
float vec_dot_q4_1_q8_1(int64_t n, const BlockQ4_1* x, const BlockQ8_1* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK4_1; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQK4_1; ++j) isum += nibble(x[b].qs, j) * y[b].qs[j];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d)) +
           fp16_to_f32(x[b].m) * fp16_to_f32(y[b].s);
  }
  return sum;
}

float vec_dot_q5_0_q8_0(int64_t n, const BlockQ5_0* x, const BlockQ8_0* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK5_0; ++b) {
    const uint32_t qh = load_qh(x[b].qh);
    int32_t isum = 0;
    for (int j = 0; j < kQK5_0; ++j) isum += (five_bits(x[b].qs, qh, j) - 16) * y[b].qs[j];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d));
  }
  return sum;
}

float vec_dot_q5_1_q8_1(int64_t n, const BlockQ5_1* x, const BlockQ8_1* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK5_1; ++b) {
    const uint32_t qh = load_qh(x[b].qh);
    int32_t isum = 0;
    for (int j = 0; j < kQK5_1; ++j) isum += five_bits(x[b].qs, qh, j) * y[b].qs[j];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d)) +
           fp16_to_f32(x[b].m) * fp16_to_f32(y[b].s);
  }
  return sum;
}

float vec_dot_q8_0_q8_0(int64_t n, const BlockQ8_0* x, const BlockQ8_0* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK8_0; ++b) {
    int32_t isum = 0;
    for (int j = 0; j < kQK8_0; ++j) isum += x[b].qs[j] * y[b].qs[j];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d));
  }
  return sum;
}

}  // namespace ktx::quant
