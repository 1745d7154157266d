// Reference dequantize and dot products for the K-quants (Q2_K … Q6_K, 256-element super-blocks
// split into 16 or 32-element sub-blocks with their own small integer scales), and Q8_K, the
// activation type they are multiplied with. The K-quant quantizers live in k_quantize.cpp.
//
// Where a quant sits in a super-block (e = element 0..255):
//   2-bit fields (Q2_K, Q3_K low bits, Q6_K high bits): byte 32*(e/128) + e%32, bit pair (e%128)/32
//   4-bit fields (Q4_K, Q5_K):  byte 32*(e/64) + e%32, low nibble if (e%64) < 32 else high nibble
//   4-bit fields (Q6_K low):    byte 64*(e/128) + e%64, low nibble if (e%128) < 64 else high
//   1-bit fields (Q3_K hmask, Q5_K qh): byte e%32, bit e/32
// Dequantization follows the gguf package's f32 order: (d * scale) * q - (dmin * min).
#include <algorithm>
#include <cmath>

#include "quant/formats.h"
#include "quant/fp16.h"

// See formats.h: a fused a*b+c would change results. GCC needs -ffp-contract=off on the command
// line; Clang takes this pragma.
#if defined(__clang__)
#pragma clang fp contract(off)
#endif

namespace ktx::quant {
namespace {

int two_bits(const uint8_t* q, int e) {
  return (q[32 * (e / 128) + e % 32] >> (2 * ((e % 128) / 32))) & 3;
}
int one_bit(const uint8_t* q, int e) { return (q[e % 32] >> (e / 32)) & 1; }
int nibble_k(const uint8_t* q, int e) {
  return (q[32 * (e / 64) + e % 32] >> (4 * ((e % 64) / 32))) & 0xF;
}

// Q2_K: unsigned 2-bit quant; scales[e/16] has the scale in its low and the min in its high nibble.
int q2_K_quant(const BlockQ2_K& b, int e) { return two_bits(b.qs, e); }

// Q3_K: 2 low bits plus a high bit that is set for the non-negative half: q in [-4, 3].
int q3_K_quant(const BlockQ3_K& b, int e) {
  return two_bits(b.qs, e) - (one_bit(b.hmask, e) ? 0 : 4);
}

// Q3_K's sixteen 6-bit scales, stored with an offset of 32: low nibbles in bytes 0..7 (sub-block i
// in byte i%8, nibble i/8), high bit pairs in bytes 8..11 (byte 8 + i%4, pair i/4).
int q3_K_scale(const BlockQ3_K& b, int i) {
  const int lo = (b.scales[i % 8] >> (4 * (i / 8))) & 0xF;
  const int hi = (b.scales[8 + i % 4] >> (2 * (i / 4))) & 3;
  return (lo | (hi << 4)) - 32;
}

// The 6-bit scale and min of sub-block j (0..7) of Q4_K / Q5_K. Bytes 0..3 hold scales 0..3 and
// bytes 4..7 mins 0..3 in their low 6 bits; sub-blocks 4..7 put their low 4 bits in bytes 8..11
// (scale low nibble, min high nibble) and their top 2 bits in the spare top bits of bytes 0..7.
void k4_scale_min(const uint8_t* s, int j, int& scale, int& min) {
  if (j < 4) {
    scale = s[j] & 63;
    min = s[j + 4] & 63;
  } else {
    scale = (s[j + 4] & 0xF) | ((s[j - 4] >> 6) << 4);
    min = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

int q4_K_quant(const BlockQ4_K& b, int e) { return nibble_k(b.qs, e); }
int q5_K_quant(const BlockQ5_K& b, int e) { return nibble_k(b.qs, e) | (one_bit(b.qh, e) << 4); }

// Q6_K: 4 low bits in ql, 2 high bits in qh, offset 32: q in [-32, 31].
int q6_K_quant(const BlockQ6_K& b, int e) {
  const int lo = (b.ql[64 * (e / 128) + e % 64] >> (4 * ((e % 128) / 64))) & 0xF;
  return (lo | (two_bits(b.qh, e) << 4)) - 32;
}

// Σ bsums over a 32-element sub-block: the sum of its Q8_K quants, for the minimum terms.
int q8_K_sum32(const BlockQ8_K& y, int sub) { return y.bsums[2 * sub] + y.bsums[2 * sub + 1]; }

}  // namespace

// ---- dequantize -----------------------------------------------------------------------------

void dequantize_row_q2_K(const BlockQ2_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const BlockQ2_K& b = x[i];
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      const float dl = d * static_cast<float>(b.scales[sub] & 0xF);
      const float ml = dmin * static_cast<float>(b.scales[sub] >> 4);
      for (int e = 16 * sub; e < 16 * sub + 16; ++e) {
        y[e] = dl * static_cast<float>(q2_K_quant(b, e)) - ml;
      }
    }
  }
}

void dequantize_row_q3_K(const BlockQ3_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const BlockQ3_K& b = x[i];
    const float d = fp16_to_f32(b.d);
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      const float dl = d * static_cast<float>(q3_K_scale(b, sub));
      for (int e = 16 * sub; e < 16 * sub + 16; ++e)
        y[e] = dl * static_cast<float>(q3_K_quant(b, e));
    }
  }
}

void dequantize_row_q4_K(const BlockQ4_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const BlockQ4_K& b = x[i];
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int sub = 0; sub < kQK_K / 32; ++sub) {
      int scale, min;
      k4_scale_min(b.scales, sub, scale, min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      for (int e = 32 * sub; e < 32 * sub + 32; ++e) {
        y[e] = dl * static_cast<float>(q4_K_quant(b, e)) - ml;
      }
    }
  }
}

void dequantize_row_q5_K(const BlockQ5_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const BlockQ5_K& b = x[i];
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int sub = 0; sub < kQK_K / 32; ++sub) {
      int scale, min;
      k4_scale_min(b.scales, sub, scale, min);
      const float dl = d * static_cast<float>(scale);
      const float ml = dmin * static_cast<float>(min);
      for (int e = 32 * sub; e < 32 * sub + 32; ++e) {
        y[e] = dl * static_cast<float>(q5_K_quant(b, e)) - ml;
      }
    }
  }
}

void dequantize_row_q6_K(const BlockQ6_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    const BlockQ6_K& b = x[i];
    const float d = fp16_to_f32(b.d);
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      const float dl = d * static_cast<float>(b.scales[sub]);
      for (int e = 16 * sub; e < 16 * sub + 16; ++e)
        y[e] = dl * static_cast<float>(q6_K_quant(b, e));
    }
  }
}

// The gguf package has no Q8_K; its d is a plain f32 and bsums are redundant with qs.
void dequantize_row_q8_K(const BlockQ8_K* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, y += kQK_K) {
    for (int e = 0; e < kQK_K; ++e) y[e] = x[i].d * static_cast<float>(x[i].qs[e]);
  }
}

// ---- affine form: element = scale * code (+ offset), dequantize's f32 steps, one scale (and
// offset) per 16 elements; offset = -(dmin * min), and x + (-m) is x - m exactly ----------------

void affine_row_q2_K(const BlockQ2_K* x, int8_t* code, float* scale, float* offset, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, code += kQK_K) {
    const BlockQ2_K& b = x[i];
    const float d = fp16_to_f32(b.d), dmin = fp16_to_f32(b.dmin);
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      *scale++ = d * static_cast<float>(b.scales[sub] & 0xF);
      *offset++ = -(dmin * static_cast<float>(b.scales[sub] >> 4));
    }
    for (int e = 0; e < kQK_K; ++e) code[e] = static_cast<int8_t>(q2_K_quant(b, e));
  }
}

void affine_row_q3_K(const BlockQ3_K* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, code += kQK_K) {
    const BlockQ3_K& b = x[i];
    const float d = fp16_to_f32(b.d);
    for (int sub = 0; sub < kQK_K / 16; ++sub)
      *scale++ = d * static_cast<float>(q3_K_scale(b, sub));
    for (int e = 0; e < kQK_K; ++e) code[e] = static_cast<int8_t>(q3_K_quant(b, e));
  }
}

namespace {

// Q4_K and Q5_K share their scales: one 6-bit scale and min per 32 elements, two groups each.
void k4_affine_scales(uint16_t d16, uint16_t dmin16, const uint8_t* scales, float* scale,
                      float* offset) {
  const float d = fp16_to_f32(d16), dmin = fp16_to_f32(dmin16);
  for (int sub = 0; sub < kQK_K / 32; ++sub) {
    int sc, m;
    k4_scale_min(scales, sub, sc, m);
    scale[2 * sub] = scale[2 * sub + 1] = d * static_cast<float>(sc);
    offset[2 * sub] = offset[2 * sub + 1] = -(dmin * static_cast<float>(m));
  }
}

}  // namespace

void affine_row_q4_K(const BlockQ4_K* x, int8_t* code, float* scale, float* offset, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, code += kQK_K, scale += 16, offset += 16) {
    k4_affine_scales(x[i].d, x[i].dmin, x[i].scales, scale, offset);
    for (int e = 0; e < kQK_K; ++e) code[e] = static_cast<int8_t>(q4_K_quant(x[i], e));
  }
}

void affine_row_q5_K(const BlockQ5_K* x, int8_t* code, float* scale, float* offset, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, code += kQK_K, scale += 16, offset += 16) {
    k4_affine_scales(x[i].d, x[i].dmin, x[i].scales, scale, offset);
    for (int e = 0; e < kQK_K; ++e) code[e] = static_cast<int8_t>(q5_K_quant(x[i], e));
  }
}

void affine_row_q6_K(const BlockQ6_K* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, code += kQK_K) {
    const BlockQ6_K& b = x[i];
    const float d = fp16_to_f32(b.d);
    for (int sub = 0; sub < kQK_K / 16; ++sub) *scale++ = d * static_cast<float>(b.scales[sub]);
    for (int e = 0; e < kQK_K; ++e) code[e] = static_cast<int8_t>(q6_K_quant(b, e));
  }
}

// ---- quantize Q8_K (llama.cpp's quantize_row_q8_K_ref) ----------------------------------------

void quantize_row_q8_K_ref(const float* x, BlockQ8_K* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i, x += kQK_K) {
    float amax = 0.0f, max = 0.0f;
    for (int e = 0; e < kQK_K; ++e) {
      if (std::fabs(x[e]) > amax) {
        amax = std::fabs(x[e]);
        max = x[e];
      }
    }
    if (amax == 0.0f) {
      // llama.cpp leaves bsums untouched here; ktx zeroes them so every byte is defined.
      y[i] = BlockQ8_K{};
      continue;
    }
    // A negative scale maps the extreme element to exactly -127, so the other side can only round
    // up to +127 and a clamp at 127 keeps every quant in int8 (llama.cpp's choice, kept for IQ2).
    const float iscale = -127.0f / max;
    for (int e = 0; e < kQK_K; ++e) {
      y[i].qs[e] = static_cast<int8_t>(std::min(127, nearest_int(iscale * x[e])));
    }
    for (int g = 0; g < kQK_K / 16; ++g) {
      int sum = 0;
      for (int e = 16 * g; e < 16 * g + 16; ++e) sum += y[i].qs[e];
      y[i].bsums[g] = static_cast<int16_t>(sum);
    }
    y[i].d = 1 / iscale;
  }
}

// ---- dot products with Q8_K: per super-block the integer sums are exact in int32 (the largest,
// Q5_K and Q6_K, stay below 2^28), then scaled in f32 and accumulated in f32. The minimum terms
// of Q2_K/Q4_K/Q5_K use Q8_K's bsums: Σ_sub min * Σ q8 instead of a multiply per element. -------

float vec_dot_q2_K_q8_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ2_K& b = x[i];
    int32_t isum = 0, msum = 0;
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      int32_t qsum = 0;
      for (int e = 16 * sub; e < 16 * sub + 16; ++e) qsum += q2_K_quant(b, e) * y[i].qs[e];
      isum += (b.scales[sub] & 0xF) * qsum;
      msum += (b.scales[sub] >> 4) * y[i].bsums[sub];
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(b.d) * y[i].d) -
           static_cast<float>(msum) * (fp16_to_f32(b.dmin) * y[i].d);
  }
  return sum;
}

float vec_dot_q3_K_q8_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ3_K& b = x[i];
    int32_t isum = 0;
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      int32_t qsum = 0;
      for (int e = 16 * sub; e < 16 * sub + 16; ++e) qsum += q3_K_quant(b, e) * y[i].qs[e];
      isum += q3_K_scale(b, sub) * qsum;
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(b.d) * y[i].d);
  }
  return sum;
}

float vec_dot_q4_K_q8_K(int64_t n, const BlockQ4_K* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ4_K& b = x[i];
    int32_t isum = 0, msum = 0;
    for (int sub = 0; sub < kQK_K / 32; ++sub) {
      int scale, min;
      k4_scale_min(b.scales, sub, scale, min);
      int32_t qsum = 0;
      for (int e = 32 * sub; e < 32 * sub + 32; ++e) qsum += q4_K_quant(b, e) * y[i].qs[e];
      isum += scale * qsum;
      msum += min * q8_K_sum32(y[i], sub);
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(b.d) * y[i].d) -
           static_cast<float>(msum) * (fp16_to_f32(b.dmin) * y[i].d);
  }
  return sum;
}

float vec_dot_q5_K_q8_K(int64_t n, const BlockQ5_K* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ5_K& b = x[i];
    int32_t isum = 0, msum = 0;
    for (int sub = 0; sub < kQK_K / 32; ++sub) {
      int scale, min;
      k4_scale_min(b.scales, sub, scale, min);
      int32_t qsum = 0;
      for (int e = 32 * sub; e < 32 * sub + 32; ++e) qsum += q5_K_quant(b, e) * y[i].qs[e];
      isum += scale * qsum;
      msum += min * q8_K_sum32(y[i], sub);
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(b.d) * y[i].d) -
           static_cast<float>(msum) * (fp16_to_f32(b.dmin) * y[i].d);
  }
  return sum;
}

float vec_dot_q6_K_q8_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const BlockQ6_K& b = x[i];
    int32_t isum = 0;
    for (int sub = 0; sub < kQK_K / 16; ++sub) {
      int32_t qsum = 0;
      for (int e = 16 * sub; e < 16 * sub + 16; ++e) qsum += q6_K_quant(b, e) * y[i].qs[e];
      isum += b.scales[sub] * qsum;
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(b.d) * y[i].d);
  }
  return sum;
}

}  // namespace ktx::quant
