// AVX2 dot products of K-quant and IQ4_XS weight rows with Q8_K activations.
// Build with -mavx2 -mfma -mf16c.
//
// The same scheme as k_quants_avx512.cpp on 32-byte vectors: the reference's integer sums of
// every super-block exactly (vpmaddubsw on unsigned codes × signed activations, vpmaddwd with the
// sub-block scales, the minimums and code offsets through Q8_K's bsums), then the reference's
// float steps in its order (exact_dot), so results are bit-identical to lib/quant and to the
// AVX-512 kernels.
//
// A ymm holds 32 weight codes matching 32 consecutive Q8_K bytes. After vpmaddubsw each 128-bit
// lane is 16 elements in 8 words, so a 32-element sub-block takes a whole vector and a 16-element
// one a lane; vpshufb spreads the scale words to match.
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

// Only internal-linkage helpers below: an inline function with external linkage compiled with
// these flags could be picked by the linker for a caller on a CPU without AVX2.
namespace ktx::kernels::cpu::avx2 {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ2_K;
using quant::BlockQ3_K;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_K;
using quant::kQK_K;

#include "kernels/cpu/k_quants_avx2_shared.inc"

// ---- the reference's float steps --------------------------------------------------------------

// Keeps `v` a rounded value the compiler cannot fuse into a following add or subtract: the
// reference rounds every product and sum separately (it is built with -ffp-contract=off).
inline float rounded(float v) {
  __asm__("" : "+x"(v));
  return v;
}
inline __m128 rounded(__m128 v) {
  __asm__("" : "+x"(v));
  return v;
}

// One super-block's integer sums in 8 int32 lanes each; the lanes add up to the reference's isum
// (scaled code sums) and msum (minimum sums; zero for types without minimums). int32 adds wrap,
// so the order of the lanes cannot change a sum that fits in int32 (all of them do).
struct BlockSums {
  __m256i isum, msum;
};

// Σ_blocks isum * (d * yd) - msum * (dmin * yd), rounded as the reference rounds it. Two
// super-blocks share one horizontal reduction and one vector of products (each lane rounds as
// the reference's scalar multiply does); the block terms are then added in the reference's order.
// `halves(block)` gives the block's f16 d (low 16 bits) and dmin (high 16 bits, or 0).
template <bool kHasMin, typename Block, typename Sums, typename Halves>
float exact_dot(int64_t n, const Block* x, const BlockQ8_K* y, Sums sums, Halves halves) {
  float sum = 0.0f;
  const int64_t nb = n / kQK_K;
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const BlockSums a = sums(x[i], y[i]);
    const BlockSums b = sums(x[i + 1], y[i + 1]);
    const __m256i h =
        _mm256_hadd_epi32(_mm256_hadd_epi32(a.isum, a.msum), _mm256_hadd_epi32(b.isum, b.msum));
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    // [d_a, dmin_a, d_b, dmin_b] * [yd_a, yd_a, yd_b, yd_b], then times [isum_a, msum_a, ...].
    const __m128i hv =
        _mm_set_epi32(0, 0, static_cast<int>(halves(x[i + 1])), static_cast<int>(halves(x[i])));
    const __m128 yd = _mm_set_ps(y[i + 1].d, y[i + 1].d, y[i].d, y[i].d);
    const __m128 scale = _mm_mul_ps(_mm_cvtph_ps(hv), yd);
    __m128 t = rounded(_mm_mul_ps(_mm_cvtepi32_ps(s), scale));
    if constexpr (kHasMin) t = _mm_sub_ps(t, _mm_movehdup_ps(t));  // lanes 0, 2: the block terms
    sum += _mm_cvtss_f32(t);
    sum += _mm_cvtss_f32(_mm_movehl_ps(t, t));
  }
  if (i < nb) {  // an odd last super-block
    const BlockSums a = sums(x[i], y[i]);
    const __m256i h = _mm256_hadd_epi32(a.isum, a.msum);  // [i01 i23 m01 m23 | i45 i67 m45 m67]
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));  // [I I M M]
    const __m128 dh = _mm_cvtph_ps(_mm_cvtsi32_si128(static_cast<int>(halves(x[i]))));
    const float term =
        rounded(static_cast<float>(_mm_cvtsi128_si32(s)) * (_mm_cvtss_f32(dh) * y[i].d));
    if constexpr (kHasMin) {
      const float dmin = _mm_cvtss_f32(_mm_movehdup_ps(dh));
      sum += term - rounded(static_cast<float>(_mm_extract_epi32(s, 2)) * (dmin * y[i].d));
    } else {
      sum += term;
    }
  }
  return sum;
}

inline __m256i load_bsums(const BlockQ8_K& y) { return load32(y.bsums); }

// ---- Q4_K / Q5_K ----------------------------------------------------------------------------

// Σ_j min_j * (bsums[2j] + bsums[2j+1]) in 8 lanes: each min is repeated for its two 16-sums.
inline __m256i k4_min_sums(__m128i scales_mins, const BlockQ8_K& y) {
  return _mm256_madd_epi16(load_bsums(y), k4_min_words(scales_mins));
}

// Q4_K and Q5_K share everything but the fifth bit.
template <bool kFifthBit, typename Block>
float dot_k4(int64_t n, const Block* x, const BlockQ8_K* y) {
  __m256i scale_control[8];
  for (int j = 0; j < 8; ++j) scale_control[j] = word_control(j);
  auto sums = [&](const Block& b, const BlockQ8_K& yb) {
    const __m128i sm = k4_scales_mins(b.scales);
    const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
    __m256i qh = _mm256_setzero_si256();  // Q5_K's fifth bits, shifted right 2 per k
    if constexpr (kFifthBit) qh = load32(b.qh);
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m256i lo, hi;
      k4_codes<kFifthBit>(b.qs, k, qh, lo, hi);
      if constexpr (kFifthBit) qh = _mm256_srli_epi16(qh, 2);
      // Codes ≤ 31 times int8: each word pair ≤ 2*31*128, no saturation.
      const __m256i p0 = _mm256_maddubs_epi16(lo, load32(yb.qs + 64 * k));
      const __m256i p1 = _mm256_maddubs_epi16(hi, load32(yb.qs + 64 * k + 32));
      acc = _mm256_add_epi32(
          acc, _mm256_madd_epi16(p0, _mm256_shuffle_epi8(scales, scale_control[2 * k])));
      acc = _mm256_add_epi32(
          acc, _mm256_madd_epi16(p1, _mm256_shuffle_epi8(scales, scale_control[2 * k + 1])));
    }
    return BlockSums{acc, k4_min_sums(sm, yb)};
  };
  return exact_dot<true>(n, x, y, sums, [](const Block& b) { return load_u32(&b.d); });
}

// ---- Q2_K / Q3_K: 2-bit fields, 16-element sub-blocks ---------------------------------------

// Q3_K's sixteen 6-bit scales minus 32, as 16 int16 words.
inline __m256i q3_scales(const uint8_t* s) {
  uint64_t lo;
  uint32_t hi;
  std::memcpy(&lo, s, 8);
  std::memcpy(&hi, s + 8, 4);
  // Scale i: low nibble in byte i%8 (nibble i/8), top 2 bits in byte 8 + i%4 (pair i/4). Lay the
  // pairs out as bytes: pairs 0,1 of bytes 8..11 for scales 0..7, pairs 2,3 for scales 8..15.
  const uint64_t pairs = hi | (static_cast<uint64_t>(hi >> 2) << 32);
  const uint64_t m2 = 0x0303030303030303ull, m4 = 0x0f0f0f0f0f0f0f0full;
  const uint64_t s0 = (lo & m4) | ((pairs & m2) << 4);
  const uint64_t s1 = ((lo >> 4) & m4) | (((pairs >> 4) & m2) << 4);
  const __m128i bytes = _mm_set_epi64x(static_cast<int64_t>(s1), static_cast<int64_t>(s0));
  return _mm256_cvtepi8_epi16(_mm_sub_epi8(bytes, _mm_set1_epi8(32)));
}

// Σ scale * code * activation of a Q2_K or Q3_K super-block (Q3_K: code + 4, unsigned). Element
// 128h + 32p + j sits in byte 32h + j, bits 2p..2p+1; with scales16 = [s0..s7 | s8..s15], those
// 32 elements cover sub-blocks 8h + 2p (lane 0) and 8h + 2p + 1 (lane 1).
template <bool kHighBit, typename Block>
__m256i two_bit_sums(const Block& b, const BlockQ8_K& yb, __m256i scales16,
                     const __m256i (&control)[4]) {
  const __m256i m3 = _mm256_set1_epi8(3);
  const __m256i m4bit = _mm256_set1_epi8(4);
  __m256i hmask = _mm256_setzero_si256();
  if constexpr (kHighBit) hmask = load32(b.hmask);
  __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
  for (int h = 0; h < 2; ++h) {
    const __m256i q = load32(b.qs + 32 * h);
    const __m256i scales = h == 0 ? low_lane_twice(scales16) : high_lane_twice(scales16);
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) {
      __m256i c = _mm256_and_si256(_mm256_srli_epi16(q, 2 * p), m3);
      if constexpr (kHighBit) {
        // Q3_K: the high bit of element e is bit e/32 of hmask[e%32], moved to bit 2 (value 4)
        // while the mask shifts right one per 32 elements.
        c = _mm256_or_si256(c, _mm256_and_si256(_mm256_slli_epi16(hmask, 2), m4bit));
        hmask = _mm256_srli_epi16(hmask, 1);
      }
      // Codes ≤ 7 times int8: word pairs ≤ 2*7*128, no saturation.
      const __m256i prod = _mm256_maddubs_epi16(c, load32(yb.qs + 128 * h + 32 * p));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(prod, _mm256_shuffle_epi8(scales, control[p])));
    }
  }
  return acc;
}

float dot_q2_K(int64_t n, const BlockQ2_K* x, const BlockQ8_K* y) {
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m256i control[4] = {lanes_control(0), lanes_control(2), lanes_control(4),
                              lanes_control(6)};
  auto sums = [&](const BlockQ2_K& b, const BlockQ8_K& yb) {
    // scales[j]: scale in the low nibble, min in the high nibble.
    const __m128i raw = load16(b.scales);
    const __m256i scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(raw, m4));
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
    return BlockSums{two_bit_sums<false>(b, yb, scales16, control),
                     _mm256_madd_epi16(load_bsums(yb), mins16)};
  };
  return exact_dot<true>(n, x, y, sums, [](const BlockQ2_K& b) { return load_u32(&b.d); });
}

float dot_q3_K(int64_t n, const BlockQ3_K* x, const BlockQ8_K* y) {
  const __m256i control[4] = {lanes_control(0), lanes_control(2), lanes_control(4),
                              lanes_control(6)};
  auto sums = [&](const BlockQ3_K& b, const BlockQ8_K& yb) {
    const __m256i scales16 = q3_scales(b.scales);
    // The 4 taken from every code comes back as 4 * Σ scale * bsum.
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(yb), scales16), 2);
    const __m256i acc = two_bit_sums<true>(b, yb, scales16, control);
    return BlockSums{_mm256_sub_epi32(acc, offset), _mm256_setzero_si256()};
  };
  return exact_dot<false>(n, x, y, sums, [](const BlockQ3_K& b) { return uint32_t{b.d}; });
}

// ---- Q6_K -----------------------------------------------------------------------------------

float dot_q6_K(int64_t n, const BlockQ6_K* x, const BlockQ8_K* y) {
  const __m256i control[4] = {lanes_control(0), lanes_control(2), lanes_control(4),
                              lanes_control(6)};
  auto sums = [&](const BlockQ6_K& b, const BlockQ8_K& yb) {
    const __m256i scales16 = _mm256_cvtepi8_epi16(load16(b.scales));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      // Codes 0..63; the -32 comes back below.
      __m256i c[4];
      q6_codes(b, h, c);
      const __m256i scales = h == 0 ? low_lane_twice(scales16) : high_lane_twice(scales16);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v) {
        // Codes ≤ 63 times int8: each word pair ≤ 2*63*128, no saturation.
        const __m256i p = _mm256_maddubs_epi16(c[v], load32(yb.qs + 128 * h + 32 * v));
        acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_shuffle_epi8(scales, control[v])));
      }
    }
    // The -32 of every code: 32 * Σ scale * bsum.
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(yb), scales16), 5);
    return BlockSums{_mm256_sub_epi32(acc, offset), _mm256_setzero_si256()};
  };
  return exact_dot<false>(n, x, y, sums, [](const BlockQ6_K& b) { return uint32_t{b.d}; });
}

// ---- IQ4_XS ---------------------------------------------------------------------------------

float dot_iq4_xs(int64_t n, const BlockIQ4_XS* x, const BlockQ8_K* y) {
  const __m256i m4 = _mm256_set1_epi8(0x0F);
  const __m256i levels = _mm256_broadcastsi128_si256(load16(quant::kIQ4NLValues));
  const __m256i control[4] = {lanes_control(0), lanes_control(2), lanes_control(4),
                              lanes_control(6)};
  auto sums = [&](const BlockIQ4_XS& b, const BlockQ8_K& yb) {
    const __m256i scales = _mm256_broadcastsi128_si256(iq4_xs_scales(b));
    __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // Sub-block ib: bytes 16ib..16ib+15, elements 0..15 in the low and 16..31 in the high
      // nibbles; 32 bytes hold sub-blocks 2k (lane 0) and 2k+1 (lane 1). The activations are
      // regrouped to match: first halves of both sub-blocks, then second halves.
      const __m256i q = load32(b.qs + 32 * k);
      const __m256i y0 = load32(yb.qs + 64 * k), y1 = load32(yb.qs + 64 * k + 32);
      const __m256i ylo = _mm256_permute2x128_si256(y0, y1, 0x20);
      const __m256i yhi = _mm256_permute2x128_si256(y0, y1, 0x31);
      const __m256i vlo = _mm256_shuffle_epi8(levels, _mm256_and_si256(q, m4));
      const __m256i vhi =
          _mm256_shuffle_epi8(levels, _mm256_and_si256(_mm256_srli_epi16(q, 4), m4));
      // Signed levels × signed activations: |activation| (128 fits unsigned) times the level
      // carrying the activation's sign (|level| ≤ 127, so the negation cannot overflow); word
      // pairs ≤ 2*128*127, no saturation. Exact for every int8 activation, -128 included.
      const __m256i plo = _mm256_maddubs_epi16(_mm256_abs_epi8(ylo), _mm256_sign_epi8(vlo, ylo));
      const __m256i phi = _mm256_maddubs_epi16(_mm256_abs_epi8(yhi), _mm256_sign_epi8(vhi, yhi));
      const __m256i sc = _mm256_shuffle_epi8(scales, control[k]);
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(plo, sc));
      acc = _mm256_add_epi32(acc, _mm256_madd_epi16(phi, sc));
    }
    return BlockSums{acc, _mm256_setzero_si256()};
  };
  return exact_dot<false>(n, x, y, sums, [](const BlockIQ4_XS& b) { return uint32_t{b.d}; });
}

}  // namespace

// One row at a time only: the AVX-512 tier's multi-row driver (k_quants_rows.inc) compiled for
// this tier, with tiles of 4 or 8 rows, ran 4-25% slower than these one-row kernels on Zen 4, in
// cache and streamed from memory (16 ymm registers do not hold a tile's sums, and one row's
// stream is one the hardware prefetchers follow well).
float vec_dot_q2_K_q8_K(int64_t n, const void* x, const void* y) {
  return dot_q2_K(n, static_cast<const BlockQ2_K*>(x), static_cast<const BlockQ8_K*>(y));
}
float vec_dot_q3_K_q8_K(int64_t n, const void* x, const void* y) {
  return dot_q3_K(n, static_cast<const BlockQ3_K*>(x), static_cast<const BlockQ8_K*>(y));
}
float vec_dot_q4_K_q8_K(int64_t n, const void* x, const void* y) {
  return dot_k4<false>(n, static_cast<const BlockQ4_K*>(x), static_cast<const BlockQ8_K*>(y));
}
float vec_dot_q5_K_q8_K(int64_t n, const void* x, const void* y) {
  return dot_k4<true>(n, static_cast<const BlockQ5_K*>(x), static_cast<const BlockQ8_K*>(y));
}
float vec_dot_q6_K_q8_K(int64_t n, const void* x, const void* y) {
  return dot_q6_K(n, static_cast<const BlockQ6_K*>(x), static_cast<const BlockQ8_K*>(y));
}
float vec_dot_iq4_xs_q8_K(int64_t n, const void* x, const void* y) {
  return dot_iq4_xs(n, static_cast<const BlockIQ4_XS*>(x), static_cast<const BlockQ8_K*>(y));
}

}  // namespace ktx::kernels::cpu::avx2
