// Reference dequantize / quantize / dot for the non-linear 4-bit formats: IQ4_NL (32-element
// blocks, one f16 scale) and IQ4_XS (256-element super-blocks, an f16 scale times a 6-bit scale
// per 32 elements). Each 4-bit index selects one of the 16 levels of kIQ4NLValues. Inside each 32
// elements, byte j holds element j in its low and element j + 16 in its high nibble.
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

constexpr int kLevels = 16;

int index_nl(const uint8_t* qs, int e) {  // e = element within its 32
  return e < 16 ? (qs[e] & 0x0F) : (qs[e - 16] >> 4);
}

int level(const uint8_t* qs, int e) { return kIQ4NLValues[index_nl(qs, e)]; }

// IQ4_XS's 6-bit scale of sub-block ib (0..7), stored with an offset of 32: low nibble in
// scales_l[ib/2] (nibble ib%2), high 2 bits at bit 2*ib of scales_h.
int iq4_xs_scale(const BlockIQ4_XS& b, int ib) {
  const int lo = (b.scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
  const int hi = (b.scales_h >> (2 * ib)) & 3;
  return (lo | (hi << 4)) - 32;
}

// The index of the level nearest to x; a tie goes to the upper level. Comparing 2x with the sum of
// two neighbouring levels is exact (the sum is a small integer, doubling is exact), so unlike
// |x - a| < |b - x| no rounding can move a boundary. The level sums increase, so a scan works.
int nearest_level(float x) {
  const float x2 = x + x;
  int idx = 0;
  while (idx < kLevels - 1 && x2 >= static_cast<float>(kIQ4NLValues[idx] + kIQ4NLValues[idx + 1])) {
    ++idx;
  }
  return idx;
}

// Weighted least squares of fitting x with d * level: returns Σ w*q*x and Σ w*q*q for the levels
// nearest to x*id (weights w = x², as llama.cpp uses without an importance matrix).
void fit_levels(const float* x, float id, float& sumqx, float& sumq2) {
  sumqx = 0.0f;
  sumq2 = 0.0f;
  for (int j = 0; j < kQK4_NL; ++j) {
    const float q = kIQ4NLValues[nearest_level(id * x[j])];
    const float w = x[j] * x[j];
    sumqx += w * q * x[j];
    sumq2 += w * q * q;
  }
}

// Blocks whose largest magnitude is below this are stored as zero (llama.cpp's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Number of trial inverse scales on each side of the first guess (llama.cpp's ntry for
// quantize_iq4_nl, i.e. llama-quantize without an importance matrix).
constexpr int kScaleTrials = 7;

}  // namespace

// ---- dequantize (gguf order: d * level; IQ4_XS: (d * scale) * level) ----------------------------

void dequantize_row_iq4_nl(const BlockIQ4_NL* x, float* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_NL; ++b, y += kQK4_NL) {
    const float d = fp16_to_f32(x[b].d);
    for (int e = 0; e < kQK4_NL; ++e) y[e] = d * static_cast<float>(level(x[b].qs, e));
  }
}

void dequantize_row_iq4_xs(const BlockIQ4_XS* x, float* y, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < kQK_K / 32; ++ib, y += 32) {
      const float dl = d * static_cast<float>(iq4_xs_scale(x[i], ib));
      const uint8_t* qs = x[i].qs + 16 * ib;
      for (int e = 0; e < 32; ++e) y[e] = dl * static_cast<float>(level(qs, e));
    }
  }
}

// ---- affine form: element = scale * level, dequantize's f32 steps, one scale per 16 -----------

void affine_row_iq4_nl(const BlockIQ4_NL* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_NL; ++b, code += kQK4_NL, scale += 2) {
    scale[0] = scale[1] = fp16_to_f32(x[b].d);
    for (int e = 0; e < kQK4_NL; ++e) code[e] = static_cast<int8_t>(level(x[b].qs, e));
  }
}

void affine_row_iq4_xs(const BlockIQ4_XS* x, int8_t* code, float* scale, float*, int64_t n) {
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    const float d = fp16_to_f32(x[i].d);
    for (int ib = 0; ib < kQK_K / 32; ++ib, code += 32, scale += 2) {
      scale[0] = scale[1] = d * static_cast<float>(iq4_xs_scale(x[i], ib));
      const uint8_t* qs = x[i].qs + 16 * ib;
      for (int e = 0; e < 32; ++e) code[e] = static_cast<int8_t>(level(qs, e));
    }
  }
}

// ---- quantize IQ4_NL: llama.cpp's quantize_row_iq4_nl_impl for one 32-element block without an
// importance matrix and with the scale search (ntry = 7), i.e. what llama-quantize writes. Note:
// llama.cpp's own quantize_row_iq4_nl_ref passes ntry = -1 (no search); ktx follows the file
// writer instead, whose output is what real IQ4_NL tensors hold. ----------------------------------

void quantize_row_iq4_nl_ref(const float* x, BlockIQ4_NL* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK4_NL; ++b, x += kQK4_NL) {
    float amax = 0.0f, max = 0.0f;
    for (int j = 0; j < kQK4_NL; ++j) {
      if (std::fabs(x[j]) > amax) {
        amax = std::fabs(x[j]);
        max = x[j];
      }
    }

    float d = 0.0f;
    if (amax >= kGroupMaxEps) {
      // First guess: the extreme element on the outermost level (-127, the larger magnitude).
      float sumqx, sumq2;
      fit_levels(x, 1.0f / (-max / kIQ4NLValues[0]), sumqx, sumq2);
      d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
      float best = d * sumqx;  // the reduction in squared error that scale d achieves
      // Then place the extreme element on -127 + itry for itry in [-7, 7], keeping the best fit.
      for (int itry = -kScaleTrials; itry <= kScaleTrials; ++itry) {
        const float id = static_cast<float>(itry + kIQ4NLValues[0]) / max;
        fit_levels(x, id, sumqx, sumq2);
        // sumqx²/sumq2 > best, compared without dividing
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
    }

    y[b].d = f32_to_fp16(d);
    // Indices are chosen with the unrounded f32 scale, as llama.cpp does; a zero scale gives the
    // level nearest 0 (index 8, value 1) everywhere, again as llama.cpp does.
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 16; ++j) {
      const int lo = nearest_level(id * x[j]);
      const int hi = nearest_level(id * x[j + 16]);
      y[b].qs[j] = static_cast<uint8_t>(lo | (hi << 4));
    }
  }
}

// ---- dot products: exact int32 sums per block (|level| <= 127), scaled once in f32 -------------

float vec_dot_iq4_nl_q8_0(int64_t n, const BlockIQ4_NL* x, const BlockQ8_0* y) {
  float sum = 0.0f;
  for (int64_t b = 0; b < n / kQK4_NL; ++b) {
    int32_t isum = 0;
    for (int e = 0; e < kQK4_NL; ++e) isum += level(x[b].qs, e) * y[b].qs[e];
    sum += static_cast<float>(isum) * (fp16_to_f32(x[b].d) * fp16_to_f32(y[b].d));
  }
  return sum;
}

float vec_dot_iq4_xs_q8_K(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y) {
  float sum = 0.0f;
  for (int64_t i = 0; i < n / kQK_K; ++i) {
    int32_t isum = 0;  // at most 8 * 32 * 32 * 127 * 128 < 2^28
    for (int ib = 0; ib < kQK_K / 32; ++ib) {
      const uint8_t* qs = x[i].qs + 16 * ib;
      const int8_t* q8 = y[i].qs + 32 * ib;
      int32_t qsum = 0;
      for (int e = 0; e < 32; ++e) qsum += level(qs, e) * q8[e];
      isum += iq4_xs_scale(x[i], ib) * qsum;
    }
    sum += static_cast<float>(isum) * (fp16_to_f32(x[i].d) * y[i].d);
  }
  return sum;
}

}  // namespace ktx::quant
