// Reference quantizers for Q2_K … Q6_K and IQ4_XS (see k_quantize.h). They follow llama.cpp's
// quantize_row_*_ref algorithms; every floating-point expression keeps llama.cpp's operand order,
// because the stored bytes depend on each rounding. Rewriting a sum "more neatly" changes files.
//
// Shared shape of every K-quant: a 256-value super-block is cut into groups of 16 or 32; each
// group gets its own float scale (and minimum) from a small search; those per-group floats are then
// themselves quantized to 4/6/8 bits against one fp16 super-scale; finally every value is rounded
// again against the scale it will really be decoded with.
#include "quant/k_quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "quant/fp16.h"

// Fused multiply-add rounds a*b+c once instead of twice, which changes bytes (measured with
// -march=native: a quarter to a third of Q2_K/Q5_K blocks); llama.cpp's reference on x86-64 is
// built without FMA. GCC fuses by default in C++ whenever the target has FMA, so turn contraction
// off here; the build should also pass -ffp-contract=off for this file.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

namespace ktx::quant {
namespace {

// A group whose largest |x| is below this is stored as zeros (llama.cpp's GROUP_MAX_EPS).
constexpr float kGroupMaxEps = 1e-15f;

// Round to nearest, ties to even, the way ggml does it: adding 1.5 * 2^23 pushes the fraction out
// of the mantissa, whose low 23 bits then hold the integer plus 2^22. Exact for |v| < 2^22; larger
// or NaN inputs give a deterministic junk value that every caller clamps, as ggml's does.
inline int nearest_int(float v) {
  const float shifted = v + 12582912.0f;
  return static_cast<int>(f32_to_bits(shifted) & 0x007fffffu) - 0x00400000;
}

inline int clamp_int(int v, int lo, int hi) { return std::max(lo, std::min(hi, v)); }

// ---- Affine fit: x ≈ scale * L - m with L in [0, nmax], m ≥ 0 (Q2_K, Q4_K, Q5_K) -------------

// Trial grid of the affine search (llama.cpp's make_qkx2_quants arguments). Why search at all:
// for fixed levels the best scale and minimum are a closed-form least-squares fit, but the levels
// depend on the scale, so neither can be solved first. Mapping [min, max] onto exactly nmax steps
// spends levels on the rare extremes; trial t instead maps it onto nmax + rmin + t * rdelta steps,
// from "leave headroom" (rmin < 0) to "let the extremes clip" (up to one step past nmax), refits
// scale and minimum for the levels that grid picks, and keeps the fit with the lowest error.
// The sweep spans about one level either way of nmax, in steps of 0.1 level: fine enough that
// neighbouring trials mostly pick the same levels, so finer steps would mostly repeat work.
struct AffineSearch {
  int nmax;
  float rmin;
  float rdelta;
  int nstep;     // trials t = 0 … nstep
  bool use_mad;  // score by weighted |error| instead of squared error
};

// The values are llama.cpp's (they define the bytes): Q4_K sweeps nmax - 1 … nmax + 1 in 21
// trials; Q5_K and Q2_K sweep nmax - 0.5 … nmax + 1 in 16. Q2_K scores by absolute error: with
// only 4 levels, squared error lets a few large values dictate the fit.
constexpr AffineSearch kSearchQ2K{3, -0.5f, 0.1f, 15, true};
constexpr AffineSearch kSearchQ4K{15, -1.0f, 0.1f, 20, false};
constexpr AffineSearch kSearchQ5K{31, -0.5f, 0.1f, 15, false};

inline float error_term(float diff, bool use_mad) {
  return use_mad ? std::fabs(diff) : diff * diff;
}

// Fits the n ≤ 32 values x with weights w; writes the levels and *m_out (the minimum the format
// subtracts, ≥ 0) and returns the scale.
float fit_affine(int n, const float* x, const float* w, const AffineSearch& s, uint8_t* levels,
                 float* m_out) {
  float lo = x[0];
  float hi = x[0];
  float sum_w = w[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < lo) lo = x[i];
    if (x[i] > hi) hi = x[i];
    sum_w += w[i];
    sum_x += w[i] * x[i];
  }
  // The format can only subtract a minimum, so an all-positive group is fitted from zero.
  if (lo > 0) lo = 0;
  if (hi == lo) {  // constant group (≤ 0): the minimum alone represents it
    std::fill(levels, levels + n, uint8_t{0});
    *m_out = -lo;
    return 0.0f;
  }

  // Start: the plain min/max mapping, scored with its own (not least-squares) scale.
  float offset = lo;  // the fit's additive term, -m
  float iscale = static_cast<float>(s.nmax) / (hi - offset);
  float scale = 1 / iscale;
  float best_error = 0;
  for (int i = 0; i < n; ++i) {
    levels[i] = static_cast<uint8_t>(clamp_int(nearest_int(iscale * (x[i] - offset)), 0, s.nmax));
    best_error += w[i] * error_term(scale * levels[i] + offset - x[i], s.use_mad);
  }

  uint8_t trial[32];
  for (int t = 0; t <= s.nstep; ++t) {
    // After an improvement the grid is laid from the improved offset (llama.cpp does the same;
    // the bytes depend on it).
    iscale =
        (s.rmin + s.rdelta * static_cast<float>(t) + static_cast<float>(s.nmax)) / (hi - offset);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      const int l = clamp_int(nearest_int(iscale * (x[i] - offset)), 0, s.nmax);
      trial[i] = static_cast<uint8_t>(l);
      const float fl = static_cast<float>(l);
      sum_l += w[i] * fl;
      sum_l2 += w[i] * fl * fl;
      sum_xl += w[i] * fl * x[i];
    }
    // Weighted least squares for x ≈ scale * l + offset: the 2×2 normal equations by Cramer.
    const float det = sum_w * sum_l2 - sum_l * sum_l;
    if (!(det > 0)) continue;  // all levels equal: no line through them
    float this_scale = (sum_w * sum_xl - sum_x * sum_l) / det;
    float this_offset = (sum_l2 * sum_x - sum_l * sum_xl) / det;
    if (this_offset > 0) {  // cannot add: refit the scale alone, through zero
      this_offset = 0;
      this_scale = sum_xl / sum_l2;
    }
    float error = 0;
    for (int i = 0; i < n; ++i) {
      error += w[i] * error_term(this_scale * trial[i] + this_offset - x[i], s.use_mad);
    }
    if (error < best_error) {
      std::copy(trial, trial + n, levels);
      best_error = error;
      scale = this_scale;
      offset = this_offset;
    }
  }
  *m_out = -offset;
  return scale;
}

// ---- Symmetric fits: x ≈ scale * (L - nmax), L in [0, 2 nmax) (Q3_K, Q6_K) -------------------
//
// Both weigh each value by x², so large values are fitted most closely. The signed range
// [-nmax, nmax - 1] has its extra level on the negative side; mapping the largest-magnitude value
// to -nmax uses it, which is why the scales come out with the opposite sign of that value.

// The value of largest magnitude, with its sign (first one on ties).
float signed_absmax(int n, const float* x, float* amax_out) {
  float amax = 0, max = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  *amax_out = amax;
  return max;
}

// Σ w·x·l and Σ w·l² (w = x²) for the levels that inverse scale `iscale` rounds x to; with the
// best scale for those levels, sumlx / suml2, the squared error is Σ w·x² - sumlx² / suml2, so a
// grid is better exactly when sumlx² / suml2 is larger.
void symmetric_sums(int n, int nmax, const float* x, float iscale, float* sumlx, float* suml2) {
  float slx = 0, sl2 = 0;
  for (int i = 0; i < n; ++i) {
    const float l = static_cast<float>(clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
    const float w = x[i] * x[i];
    slx += w * x[i] * l;
    sl2 += w * l * l;
  }
  *sumlx = slx;
  *suml2 = sl2;
}

void symmetric_levels(int n, int nmax, const float* x, float iscale, int8_t* levels) {
  for (int i = 0; i < n; ++i) {
    levels[i] = static_cast<int8_t>(nmax + clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1));
  }
}

// Q6_K's group fit (llama.cpp's make_qx_quants with rmse_type 1 and no importance weights):
// besides the grid that puts the largest value on -nmax, try 18 grids of nmax ± 0.1 … 0.9 steps
// (one a little coarser or finer often lands more values near a level) and keep the best.
float fit_symmetric_grid(int n, int nmax, const float* x, int8_t* levels) {
  float amax;
  const float max = signed_absmax(n, x, &amax);
  if (amax < kGroupMaxEps) {
    std::fill(levels, levels + n, int8_t{0});
    return 0.0f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  symmetric_sums(n, nmax, x, iscale, &sumlx, &suml2);
  symmetric_levels(n, nmax, x, iscale, levels);
  float scale = suml2 != 0 ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int step = -9; step <= 9; ++step) {
    if (step == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(step)) / max;
    symmetric_sums(n, nmax, x, iscale, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      symmetric_levels(n, nmax, x, iscale, levels);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// Q3_K's group fit (llama.cpp's make_q3_quants with rmse on): round on the grid that puts the
// largest value on -nmax, then up to 5 sweeps that move one level at a time to where the
// least-squares scale of the others wants it, keeping a move when it lowers the error.
// Moves are only tried while the partial sum Σ w·x·l is positive, which (levels having the sign of
// -max · x) happens only in groups whose largest-magnitude value is negative; a quirk of the
// original, kept because the bytes depend on it.
float fit_symmetric_refined(int n, int nmax, const float* x, int8_t* levels) {
  float amax;
  const float max = signed_absmax(n, x, &amax);
  if (amax < kGroupMaxEps) {
    std::fill(levels, levels + n, int8_t{0});
    return 0.0f;
  }
  const float iscale = static_cast<float>(-nmax) / max;
  int l_signed[16];
  float sumlx = 0, suml2 = 0;
  for (int i = 0; i < n; ++i) {
    l_signed[i] = clamp_int(nearest_int(iscale * x[i]), -nmax, nmax - 1);
    const float w = x[i] * x[i];
    sumlx += w * x[i] * static_cast<float>(l_signed[i]);
    suml2 += w * static_cast<float>(l_signed[i]) * static_cast<float>(l_signed[i]);
  }
  for (int sweep = 0; sweep < 5; ++sweep) {
    int n_changed = 0;
    for (int i = 0; i < n; ++i) {
      const float w = x[i] * x[i];
      const float li = static_cast<float>(l_signed[i]);
      float slx = sumlx - w * x[i] * li;  // the sums without value i
      if (!(slx > 0)) continue;
      float sl2 = suml2 - w * li * li;
      const int new_l = clamp_int(nearest_int(x[i] * sl2 / slx), -nmax, nmax - 1);
      if (new_l == l_signed[i]) continue;
      const float nl = static_cast<float>(new_l);
      slx += w * x[i] * nl;
      sl2 += w * nl * nl;
      // Better when slx² / sl2 > sumlx² / suml2, cross-multiplied.
      if (sl2 > 0 && slx * slx * suml2 > sumlx * sumlx * sl2) {
        l_signed[i] = new_l;
        sumlx = slx;
        suml2 = sl2;
        ++n_changed;
      }
    }
    if (n_changed == 0) break;
  }
  for (int i = 0; i < n; ++i) levels[i] = static_cast<int8_t>(l_signed[i] + nmax);
  return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

// ---- Bit packing shared by several formats ---------------------------------------------------

// Four 2-bit levels per byte: byte l of each 32-byte half holds elements l, l+32, l+64, l+96 of
// that 128-value half (Q2_K, and Q3_K's low bits).
void pack_2bit(const uint8_t* levels, uint8_t* qs) {
  for (int half = 0; half < kQK_K; half += 128) {
    for (int l = 0; l < 32; ++l) {
      const uint8_t* v = levels + half + l;
      qs[half / 4 + l] = static_cast<uint8_t>(v[0] | (v[32] << 2) | (v[64] << 4) | (v[96] << 6));
    }
  }
}

// Two nibbles per byte: byte l of each 32-byte run holds elements l (low) and l+32 (high) of that
// 64-value chunk (Q4_K, and Q5_K's low bits).
void pack_nibbles_by_64(const uint8_t* levels, uint8_t* qs) {
  for (int chunk = 0; chunk < kQK_K; chunk += 64) {
    for (int l = 0; l < 32; ++l) {
      qs[chunk / 2 + l] = static_cast<uint8_t>(levels[chunk + l] | (levels[chunk + l + 32] << 4));
    }
  }
}

// Q4_K/Q5_K's 12 bytes of 8 six-bit scales and 8 six-bit mins: bytes 0-3 hold scales 0-3 and
// bytes 4-7 mins 0-3 in their low 6 bits; scales and mins 4-7 keep their low nibbles in bytes 8-11
// (scale low, min high) and their top 2 bits in the spare top bits of bytes 0-3 and 4-7.
void pack_scales_mins_k4(const uint8_t* sc, const uint8_t* mn, uint8_t* out) {
  for (int j = 0; j < 4; ++j) {
    out[j] = static_cast<uint8_t>(sc[j] | ((sc[j + 4] >> 4) << 6));
    out[j + 4] = static_cast<uint8_t>(mn[j] | ((mn[j + 4] >> 4) << 6));
    out[j + 8] = static_cast<uint8_t>((sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4));
  }
}

// Q4_K and Q5_K share everything but the level count and the search grid.
// Writes d, dmin and the packed scales into the block fields and the levels to `levels`.
void quantize_super_block_k4(const float* x, const AffineSearch& search, uint16_t* d_out,
                             uint16_t* dmin_out, uint8_t* packed_scales, uint8_t* levels) {
  constexpr int kGroups = kQK_K / 32;
  float scales[kGroups];
  float mins[kGroups];
  float weights[32];
  float max_scale = 0, max_min = 0;  // both ≥ 0: the minimum is subtracted separately
  for (int j = 0; j < kGroups; ++j) {
    const float* xg = x + 32 * j;
    // Weight |x| plus the group's RMS: large values matter most, but small ones never count zero.
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += xg[l] * xg[l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(xg[l]);
    scales[j] = fit_affine(32, xg, weights, search, levels + 32 * j, &mins[j]);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }

  // Scales and mins to 6 bits against the largest of each. (A negative would wrap to 63 through
  // the uint8 conversion, as in llama.cpp; the fit never returns one in practice.)
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  uint8_t ls[kGroups], lm[kGroups];
  for (int j = 0; j < kGroups; ++j) {
    ls[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_scale * scales[j])));
    lm[j] = std::min<uint8_t>(63, static_cast<uint8_t>(nearest_int(inv_min * mins[j])));
  }
  pack_scales_mins_k4(ls, lm, packed_scales);
  *d_out = f32_to_fp16(max_scale / 63.f);
  *dmin_out = f32_to_fp16(max_min / 63.f);

  // Re-round against the scale and minimum as they will be decoded. A group whose decoded scale is
  // 0 keeps the levels of its fit (they decode to -m regardless).
  const float d = fp16_to_f32(*d_out);
  const float dmin = fp16_to_f32(*dmin_out);
  for (int j = 0; j < kGroups; ++j) {
    const float dj = d * ls[j];
    if (dj == 0) continue;
    const float mj = dmin * lm[j];
    for (int l = 0; l < 32; ++l) {
      levels[32 * j + l] =
          static_cast<uint8_t>(clamp_int(nearest_int((x[32 * j + l] + mj) / dj), 0, search.nmax));
    }
  }
}

// ---- IQ4_XS -----------------------------------------------------------------------------------

// Index of the IQ4_NL level nearest to v (ties to the upper level). Comparing 2v with the sum of
// two neighbouring levels keeps the midpoint test exact.
int nearest_iq4nl_index(float v) {
  const float v2 = v + v;
  int index = 0;
  for (int k = 1; k < 16; ++k) {
    if (v2 >= static_cast<float>(kIQ4NLValues[k - 1] + kIQ4NLValues[k])) index = k;
  }
  return index;
}

}  // namespace

// ---- Q2_K: 16 groups of 16, x ≈ d·sc·q - dmin·m with 4-bit sc and m, 2-bit q ------------------

void quantize_row_q2_K_ref(const float* x, BlockQ2_K* y, int64_t n) {
  constexpr int kGroups = kQK_K / 16;
  constexpr float kQ4Max = 15.f;  // scales and mins are stored in 4 bits
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ2_K& out = y[b];
    uint8_t levels[kQK_K];
    float scales[kGroups], mins[kGroups], weights[16];
    float max_scale = 0, max_min = 0;
    for (int j = 0; j < kGroups; ++j) {
      for (int l = 0; l < 16; ++l) weights[l] = std::fabs(x[16 * j + l]);
      scales[j] = fit_affine(16, x + 16 * j, weights, kSearchQ2K, levels + 16 * j, &mins[j]);
      if (scales[j] > max_scale) max_scale = scales[j];
      if (mins[j] > max_min) max_min = mins[j];
    }

    if (max_scale > 0) {
      const float iscale = kQ4Max / max_scale;
      for (int j = 0; j < kGroups; ++j) {
        out.scales[j] = static_cast<uint8_t>(nearest_int(iscale * scales[j]));
      }
      out.d = f32_to_fp16(max_scale / kQ4Max);
    } else {
      std::memset(out.scales, 0, sizeof out.scales);
      out.d = f32_to_fp16(0.f);
    }
    if (max_min > 0) {
      const float iscale = kQ4Max / max_min;
      for (int j = 0; j < kGroups; ++j) {
        out.scales[j] = static_cast<uint8_t>(out.scales[j] | (nearest_int(iscale * mins[j]) << 4));
      }
      out.dmin = f32_to_fp16(max_min / kQ4Max);
    } else {
      out.dmin = f32_to_fp16(0.f);
    }

    // Re-round against the decoded scale and minimum of each group.
    const float d = fp16_to_f32(out.d);
    const float dmin = fp16_to_f32(out.dmin);
    for (int j = 0; j < kGroups; ++j) {
      const float dj = d * static_cast<float>(out.scales[j] & 0xF);
      if (dj == 0) continue;
      const float mj = dmin * static_cast<float>(out.scales[j] >> 4);
      for (int l = 0; l < 16; ++l) {
        levels[16 * j + l] =
            static_cast<uint8_t>(clamp_int(nearest_int((x[16 * j + l] + mj) / dj), 0, 3));
      }
    }
    pack_2bit(levels, out.qs);
  }
}

// ---- Q3_K: 16 groups of 16, x ≈ d·(sc - 32)·(q - 4) with 6-bit sc, 3-bit q --------------------

void quantize_row_q3_K_ref(const float* x, BlockQ3_K* y, int64_t n) {
  constexpr int kGroups = kQK_K / 16;
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ3_K& out = y[b];
    int8_t levels[kQK_K];  // 0..7
    float scales[kGroups];
    float max_scale = 0, amax = 0;  // the scale of largest magnitude, with its sign
    for (int j = 0; j < kGroups; ++j) {
      scales[j] = fit_symmetric_refined(16, 4, x + 16 * j, levels + 16 * j);
      if (std::fabs(scales[j]) > amax) {
        amax = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }

    // Group scales to 6 bits (stored +32): the largest one again takes the extra level, -32.
    // Low nibbles: scale j in byte j % 8 (j < 8 low, else high); top 2 bits: byte 8 + j % 4, bits
    // 2·(j / 4).
    std::memset(out.scales, 0, sizeof out.scales);
    int stored[kGroups] = {};  // the 6-bit codes, 32 meaning 0
    if (max_scale != 0) {
      const float iscale = -32.f / max_scale;
      for (int j = 0; j < kGroups; ++j) {
        const auto l = static_cast<int8_t>(nearest_int(iscale * scales[j]));
        stored[j] = clamp_int(l, -32, 31) + 32;
        const int low = stored[j] & 0xF;
        out.scales[j % 8] = static_cast<uint8_t>(out.scales[j % 8] | (j < 8 ? low : low << 4));
        out.scales[8 + j % 4] =
            static_cast<uint8_t>(out.scales[8 + j % 4] | ((stored[j] >> 4) << (2 * (j / 4))));
      }
      out.d = f32_to_fp16(1 / iscale);
    } else {
      for (int& s : stored) s = 32;
      out.d = f32_to_fp16(0.f);
    }

    // Re-round against the decoded scales; groups whose scale decodes to 0 keep their fit.
    const float d = fp16_to_f32(out.d);
    for (int j = 0; j < kGroups; ++j) {
      const float dj = d * static_cast<float>(stored[j] - 32);
      if (dj == 0) continue;
      for (int l = 0; l < 16; ++l) {
        levels[16 * j + l] =
            static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + l] / dj), -4, 3) + 4);
      }
    }

    // The third bit of element j goes to hmask byte j % 32, bit j / 32; the low two are packed
    // like Q2_K's.
    std::memset(out.hmask, 0, sizeof out.hmask);
    uint8_t low_bits[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
      if (levels[j] > 3)
        out.hmask[j % 32] = static_cast<uint8_t>(out.hmask[j % 32] | (1 << (j / 32)));
      low_bits[j] = static_cast<uint8_t>(levels[j] & 3);
    }
    pack_2bit(low_bits, out.qs);
  }
}

// ---- Q4_K: 8 groups of 32, x ≈ d·sc·q - dmin·m with 6-bit sc and m, 4-bit q -------------------

void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ4_K& out = y[b];
    uint8_t levels[kQK_K];
    quantize_super_block_k4(x, kSearchQ4K, &out.d, &out.dmin, out.scales, levels);
    pack_nibbles_by_64(levels, out.qs);
  }
}

// ---- Q5_K: as Q4_K with 5-bit q; the fifth bits go to qh --------------------------------------

void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n) {
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ5_K& out = y[b];
    uint8_t levels[kQK_K];
    quantize_super_block_k4(x, kSearchQ5K, &out.d, &out.dmin, out.scales, levels);
    // Element j's fifth bit: qh byte j % 32, bit j / 32 (the nibbles follow Q4_K's order).
    std::memset(out.qh, 0, sizeof out.qh);
    uint8_t low[kQK_K];
    for (int j = 0; j < kQK_K; ++j) {
      if (levels[j] > 15) out.qh[j % 32] = static_cast<uint8_t>(out.qh[j % 32] | (1 << (j / 32)));
      low[j] = static_cast<uint8_t>(levels[j] & 0xF);
    }
    pack_nibbles_by_64(low, out.qs);
  }
}

// ---- Q6_K: 16 groups of 16, x ≈ d·sc·(q - 32) with 8-bit signed sc, 6-bit q -------------------

void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n) {
  constexpr int kGroups = kQK_K / 16;
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockQ6_K& out = y[b];
    int8_t levels[kQK_K];  // 0..63
    float scales[kGroups];
    float max_scale = 0, max_abs_scale = 0;
    for (int j = 0; j < kGroups; ++j) {
      scales[j] = fit_symmetric_grid(16, 32, x + 16 * j, levels + 16 * j);
      if (std::fabs(scales[j]) > max_abs_scale) {
        max_abs_scale = std::fabs(scales[j]);
        max_scale = scales[j];
      }
    }
    if (max_abs_scale < kGroupMaxEps) {
      std::memset(&out, 0, sizeof out);
      continue;
    }

    // Group scales to int8 with the largest on -128 (the extra negative level once more).
    const float iscale = -128.f / max_scale;
    out.d = f32_to_fp16(1 / iscale);
    for (int j = 0; j < kGroups; ++j) {
      out.scales[j] = static_cast<int8_t>(std::min(127, nearest_int(iscale * scales[j])));
    }

    const float d = fp16_to_f32(out.d);
    for (int j = 0; j < kGroups; ++j) {
      const float dj = d * static_cast<float>(out.scales[j]);
      if (dj == 0) continue;
      for (int l = 0; l < 16; ++l) {
        levels[16 * j + l] =
            static_cast<int8_t>(clamp_int(nearest_int(x[16 * j + l] / dj), -32, 31) + 32);
      }
    }

    // Per 128-value half: ql byte l holds the low nibbles of elements l (low) and l+64 (high),
    // byte l+32 those of l+32 and l+96; qh byte l holds the top 2 bits of l, l+32, l+64, l+96.
    for (int half = 0; half < kQK_K; half += 128) {
      uint8_t* ql = out.ql + half / 2;
      uint8_t* qh = out.qh + half / 4;
      const int8_t* v = levels + half;
      for (int l = 0; l < 32; ++l) {
        ql[l] = static_cast<uint8_t>((v[l] & 0xF) | ((v[l + 64] & 0xF) << 4));
        ql[l + 32] = static_cast<uint8_t>((v[l + 32] & 0xF) | ((v[l + 96] & 0xF) << 4));
        qh[l] = static_cast<uint8_t>((v[l] >> 4) | ((v[l + 32] >> 4) << 2) |
                                     ((v[l + 64] >> 4) << 4) | ((v[l + 96] >> 4) << 6));
      }
    }
  }
}

// ---- IQ4_XS: 8 groups of 32, x ≈ d·(sc - 32)·kIQ4NLValues[q] with 6-bit sc, 4-bit q -----------

void quantize_row_iq4_xs_ref(const float* x, BlockIQ4_XS* y, int64_t n) {
  constexpr int kGroups = kQK_K / 32;
  constexpr int kTries = 7;  // scale trials either side of the first guess
  const float lowest = kIQ4NLValues[0];
  for (int64_t b = 0; b < n / kQK_K; ++b, x += kQK_K) {
    BlockIQ4_XS& out = y[b];
    float scales[kGroups];
    float max_scale = 0, amax_scale = 0;
    for (int g = 0; g < kGroups; ++g) {
      const float* xg = x + 32 * g;
      float amax;
      const float max = signed_absmax(32, xg, &amax);
      if (amax < kGroupMaxEps) {
        scales[g] = 0;
        continue;
      }
      // Σ w·q·x and Σ w·q² (w = x²) for the levels picked by inverse scale `id`; as for the
      // symmetric fits, the better grid is the one with larger sumqx² / sumq2.
      auto sums = [&](float id, float* sumqx, float* sumq2) {
        float sqx = 0, sq2 = 0;
        for (int j = 0; j < 32; ++j) {
          const float q = kIQ4NLValues[nearest_iq4nl_index(id * xg[j])];
          const float w = xg[j] * xg[j];
          sqx += w * q * xg[j];
          sq2 += w * q * q;
        }
        *sumqx = sqx;
        *sumq2 = sq2;
      };
      // First guess: the largest value on the most negative level (-127), the widest one.
      float sumqx, sumq2;
      sums(1 / (-max / lowest), &sumqx, &sumq2);
      float d = sumq2 > 0 ? sumqx / sumq2 : 0.f;
      float best = d * sumqx;
      // Then the largest value on -127 + t for t in -7…7: a slightly different stretch often fits
      // the bulk of the group better.
      for (int t = -kTries; t <= kTries; ++t) {
        sums(static_cast<float>(t + kIQ4NLValues[0]) / max, &sumqx, &sumq2);
        if (sumq2 > 0 && sumqx * sumqx > best * sumq2) {
          d = sumqx / sumq2;
          best = d * sumqx;
        }
      }
      scales[g] = d;
      if (std::fabs(d) > amax_scale) {
        amax_scale = std::fabs(d);
        max_scale = d;
      }
    }

    // Group scales to 6 bits (stored +32) with the largest on -32; values are then re-picked
    // against the float (not fp16-rounded) super-scale times the 6-bit code, as llama.cpp does.
    // scales_l: two 4-bit low parts per byte; scales_h: 2 high bits per group.
    const float d = -max_scale / 32;
    out.d = f32_to_fp16(d);
    const float id = d != 0 ? 1 / d : 0.f;
    out.scales_h = 0;
    std::memset(out.scales_l, 0, sizeof out.scales_l);
    uint8_t levels[kQK_K];
    for (int g = 0; g < kGroups; ++g) {
      const int l = clamp_int(nearest_int(id * scales[g]), -32, 31);
      const float dl = d * static_cast<float>(l);
      const float idl = dl != 0 ? 1 / dl : 0.f;
      for (int j = 0; j < 32; ++j) {
        levels[32 * g + j] = static_cast<uint8_t>(nearest_iq4nl_index(idl * x[32 * g + j]));
      }
      const int code = l + 32;
      out.scales_l[g / 2] =
          static_cast<uint8_t>(out.scales_l[g / 2] | ((code & 0xF) << (4 * (g % 2))));
      out.scales_h = static_cast<uint16_t>(out.scales_h | ((code >> 4) << (2 * g)));
    }
    // Two nibbles per byte: byte j of group g's 16 holds elements j (low) and j+16 (high).
    for (int g = 0; g < kGroups; ++g) {
      for (int j = 0; j < 16; ++j) {
        out.qs[16 * g + j] =
            static_cast<uint8_t>(levels[32 * g + j] | (levels[32 * g + 16 + j] << 4));
      }
    }
  }
}

}  // namespace ktx::quant
