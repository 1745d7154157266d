// AVX2 + FMA + F16C kernels for the 32-element block quants × Q8_0/Q8_1, the float types, and the
// activation quantizers: the same computations as legacy_avx512.cpp (read it first) with 256-bit
// vectors and without VNNI. Compiled with its own -m flags; internal linkage or namespace avx2
// only, so nothing built for AVX2 can leak into code that runs elsewhere.
//
// Without vpdpbusd, bytes are multiplied with vpmaddubsw (unsigned × signed -> int16 pairs,
// saturating) and widened with vpmaddwd. The int16 pairs must not saturate:
//   small unsigned weights (Q4_0/Q4_1 0..15, Q5_0/Q5_1 0..31): u × y, |pair| <= 2·31·128 = 7936;
//     Q4_0/Q5_0 subtract offset·Σy per block afterwards, as the AVX-512 kernels do;
//   signed weights (Q8_0, IQ4_NL levels): |x| × (y with x's sign), |pair| <= 2·128·127 = 32512.
//     This needs y != -128, which holds for every Q8_0 row the quantizers write (they saturate at
//     ±127).
// One group is 8 blocks, one ymm each; a hadd tree leaves the 8 block sums in block order.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx2 {
namespace {

using quant::BlockIQ4_NL;
using quant::BlockQ4_0;
using quant::BlockQ4_1;
using quant::BlockQ5_0;
using quant::BlockQ5_1;
using quant::BlockQ8_0;
using quant::BlockQ8_1;
using quant::BlockQ8_K;

constexpr int kGroup = 8;  // blocks per group: one ymm of per-block sums

uint16_t float_to_half(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

#include "kernels/cpu/legacy_formats_avx2.inc"

// Accumulates the terms of `count` (1..8) blocks starting at x[r] / y into acc[r], for R rows.
template <typename W, int R, bool kFull>
void group(const typename W::Block* const* x, const typename W::YBlock* y, int count_,
           __m256* acc) {
  const int count = kFull ? kGroup : count_;
  constexpr int kWords = W::kHasMin ? 2 : 1;
  const __m256i zero = _mm256_setzero_si256();
  __m256i parts[R][kGroup];
  __m256i corr[kGroup];
  for (int b = 0; b < kGroup; ++b) {
    if (b >= count) {
      for (int r = 0; r < R; ++r) parts[r][b] = zero;
      corr[b] = zero;
      continue;
    }
    const __m256i yb = load32(y[b].qs);
    if constexpr (W::kOffset != 0) corr[b] = offset_partials<W>(yb);
    for (int r = 0; r < R; ++r) parts[r][b] = block_partials<W>(W::decode(x[r] + b), yb);
  }
  __m256i corr_sum = zero;
  if constexpr (W::kOffset != 0) corr_sum = reduce8(corr);
  __m256 dy, sy = _mm256_setzero_ps();
  load_scales<typename W::YBlock, kWords, kFull>(y, count, dy, sy);
  for (int r = 0; r < R; ++r) {
    __m256i isum = reduce8(parts[r]);
    if constexpr (W::kOffset != 0) isum = _mm256_sub_epi32(isum, corr_sum);
    __m256 dx, mx = _mm256_setzero_ps();
    load_scales<typename W::Block, kWords, kFull>(x[r], count, dx, mx);
    acc[r] = _mm256_add_ps(acc[r], block_terms<W>(isum, dx, dy, mx, sy));
  }
}

// The row drivers shared with the AVX-512 tier, over this tier's accumulator.
using Acc = __m256;
inline Acc acc_zero() { return _mm256_setzero_ps(); }
inline float acc_sum(Acc a) { return hsum(a); }
#include "kernels/cpu/legacy_rows.inc"

// ---- float types: the 1 × 1 tile of float_tile_avx2.inc (the GEMM's own body) ------------

#include "kernels/cpu/float_tile_avx2.inc"

template <typename L>
float dot_float(int64_t n, const void* x, const void* y) {
  float s;
  float_tile<L, 1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, &s,
                      1);
  return s;
}

// ---- activation quantizers ----------------------------------------------------------------------

__m256 abs_ps(__m256 v) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), v); }

float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  return _mm_cvtss_f32(_mm_max_ss(m, _mm_movehdup_ps(m)));
}

// The reference's round_to_int8: roundf (ties away from zero) saturated to ±127, NaN -> 0.
__m256i round_to_int8(__m256 v) {
  const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
  const __m256 c = _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f));
  __m256 t = _mm256_round_ps(c, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m256 frac = _mm256_sub_ps(c, t);  // exact
  const __m256 one = _mm256_set1_ps(1.0f);
  t = _mm256_add_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ), one));
  t = _mm256_sub_ps(t, _mm256_and_ps(_mm256_cmp_ps(frac, _mm256_set1_ps(-0.5f), _CMP_LE_OQ), one));
  return _mm256_andnot_si256(_mm256_castps_si256(is_nan), _mm256_cvttps_epi32(t));
}

// Four vectors of 8 int32 in [-128, 127] -> 32 int8 in element order.
__m256i pack_int8(__m256i a, __m256i b, __m256i c, __m256i d) {
  const __m256i bytes = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(bytes, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

template <bool kSum>
void quantize_q8_block(const float* x, uint16_t& d_out, int8_t* qs, uint16_t* s_out) {
  __m256 v[4];
  // max(|x|) skipping NaNs, as the reference's std::max(amax, |x|): vmaxps returns its second
  // operand when the first is NaN.
  __m256 m = _mm256_setzero_ps();
  for (int k = 0; k < 4; ++k) {
    v[k] = _mm256_loadu_ps(x + 8 * k);
    m = _mm256_max_ps(abs_ps(v[k]), m);
  }
  const float d = hmax(m) / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  d_out = float_to_half(d);
  const __m256 vid = _mm256_set1_ps(id);
  __m256i q[4];
  for (int k = 0; k < 4; ++k) q[k] = round_to_int8(_mm256_mul_ps(v[k], vid));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(qs), pack_int8(q[0], q[1], q[2], q[3]));
  if constexpr (kSum) {
    const int sum =
        hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
    *s_out = float_to_half(static_cast<float>(sum) * d);
  }
}

}  // namespace

float vec_dot_q8_0_q8_0(int64_t n, const void* x, const void* y) { return dot1<Q8_0W>(n, x, y); }
float vec_dot_q4_0_q8_0(int64_t n, const void* x, const void* y) { return dot1<Q4_0W>(n, x, y); }
float vec_dot_q5_0_q8_0(int64_t n, const void* x, const void* y) { return dot1<Q5_0W>(n, x, y); }
float vec_dot_iq4_nl_q8_0(int64_t n, const void* x, const void* y) {
  return dot1<IQ4_NLW>(n, x, y);
}
float vec_dot_q4_1_q8_1(int64_t n, const void* x, const void* y) { return dot1<Q4_1W>(n, x, y); }
float vec_dot_q5_1_q8_1(int64_t n, const void* x, const void* y) { return dot1<Q5_1W>(n, x, y); }

void vec_dot_q4_0_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q4_0W>(n, x, stride, rows, y, out);
}
void vec_dot_q5_0_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q5_0W>(n, x, stride, rows, y, out);
}

float vec_dot_f32(int64_t n, const void* x, const void* y) { return dot_float<F32L>(n, x, y); }
float vec_dot_f16(int64_t n, const void* x, const void* y) { return dot_float<F16L>(n, x, y); }
float vec_dot_bf16(int64_t n, const void* x, const void* y) { return dot_float<BF16L>(n, x, y); }

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_0*>(y);
  for (int64_t b = 0; b < n / 32; ++b) {
    quantize_q8_block<false>(x + 32 * b, out[b].d, out[b].qs, nullptr);
  }
}

void quantize_row_q8_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_1*>(y);
  for (int64_t b = 0; b < n / 32; ++b) {
    quantize_q8_block<true>(x + 32 * b, out[b].d, out[b].qs, &out[b].s);
  }
}

void quantize_row_q8_K(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_K*>(y);
  for (int64_t i = 0; i < n / quant::kQK_K; ++i, x += quant::kQK_K) {
    BlockQ8_K& blk = out[i];
    __m256 m = _mm256_setzero_ps();
    for (int v = 0; v < 32; ++v) m = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 8 * v)), m);
    const float amax = hmax(m);
    if (amax == 0.0f) {
      std::memset(&blk, 0, sizeof blk);
      continue;
    }
    // The first element of largest magnitude (a later tie does not replace it), with its sign.
    float max = 0.0f;
    for (int v = 0; v < 32; ++v) {
      const int hit = _mm256_movemask_ps(
          _mm256_cmp_ps(abs_ps(_mm256_loadu_ps(x + 8 * v)), _mm256_set1_ps(amax), _CMP_EQ_OQ));
      if (hit != 0) {
        max = x[8 * v + __builtin_ctz(static_cast<unsigned>(hit))];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int g = 0; g < 8; ++g) {  // 32 elements: two bsums
      __m256i q[4];
      for (int k = 0; k < 4; ++k) {
        // nearest_int = vcvtps2dq (round to nearest even), then min(127, q). A NaN gives
        // INT32_MIN, whose low byte (what the reference's int8 cast keeps) is 0.
        const __m256i r =
            _mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + 32 * g + 8 * k)));
        const __m256i c = _mm256_min_epi32(r, _mm256_set1_epi32(127));
        q[k] = _mm256_andnot_si256(_mm256_cmpeq_epi32(c, _mm256_set1_epi32(INT32_MIN)), c);
      }
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(blk.qs + 32 * g),
                          pack_int8(q[0], q[1], q[2], q[3]));
      blk.bsums[2 * g] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[0], q[1])));
      blk.bsums[2 * g + 1] = static_cast<int16_t>(hsum_epi32(_mm256_add_epi32(q[2], q[3])));
    }
    blk.d = 1 / iscale;
  }
}

void quantize_row_f16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  // vcvtps2ph rounds to nearest even and quiets NaNs keeping their top payload bits, as
  // quant::f32_to_fp16 does.
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) out[i] = float_to_half(x[i]);
}

// Integer rounding as quant::f32_to_bf16.
void quantize_row_bf16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256i b = _mm256_castps_si256(_mm256_loadu_ps(x + i));
    const __m256i hi = _mm256_srli_epi32(b, 16);
    const __m256i rounded = _mm256_srli_epi32(
        _mm256_add_epi32(b, _mm256_add_epi32(_mm256_set1_epi32(0x7fff),
                                             _mm256_and_si256(hi, _mm256_set1_epi32(1)))),
        16);
    // |b| > inf as signed compares: both sides are below 2^31.
    const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(b, _mm256_set1_epi32(0x7fffffff)),
                                           _mm256_set1_epi32(0x7f800000));
    const __m256i r = _mm256_blendv_epi8(rounded, _mm256_or_si256(hi, _mm256_set1_epi32(64)), nan);
    const __m256i packed =
        _mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), _MM_SHUFFLE(3, 1, 2, 0));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), _mm256_castsi256_si128(packed));
  }
  for (; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, x + i, sizeof b);
    out[i] = (b & 0x7fffffffu) > 0x7f800000u
                 ? static_cast<uint16_t>((b >> 16) | 64u)
                 : static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
  }
}

}  // namespace ktx::kernels::cpu::avx2
