// AVX-512 (F, BW, VL, VNNI) dot products of K-quant and IQ4_XS weight rows with Q8_K activations.
// Build with -mavx512f -mavx512bw -mavx512vl -mavx512vnni. No VBMI or DQ instruction is used, so
// the kernels also run on Cascade Lake (VNNI without VBMI); -mavx512vbmi would let the compiler
// emit VBMI code the tier does not require.
//
// Every kernel forms the reference's integer sums of a super-block exactly, then scales them with
// the reference's float operations (exact_dot below, or k_quants_rows.inc for tiles of rows), so
// results are bit-identical to lib/quant/k_quants.cpp and iq4.cpp — and to the AVX2 kernels.
//
// One zmm holds 64 weight codes whose activations are 64 Q8_K bytes (consecutive, or for Q4_K and
// Q5_K two runs of 32 regrouped once per super-block, see K4Kernel):
//
//   codes (u8, decoded so they are unsigned) × activations (s8) -> vpdpbusd -> 16 dwords, each
//   the sum of 4 products of one sub-block; |dword| <= 4 * 63 * 128 < 2^15 for every K-quant
//   vpackssdw of two such vectors -> 32 words, exact (no saturation)
//   vpdpwssd with the sub-block scales spread to the same word order -> int32 partial sums
//
// (IQ4_XS's dwords exceed 2^15, so its scales are applied with vpmulld instead.) Codes that are
// signed in the format (Q3_K, Q6_K, IQ4_XS levels) are decoded with an offset c (4, 32, 128) taken
// back through Q8_K's bsums: Σ scale * q * y = Σ scale * (q + c) * y - c * Σ scale * bsum.
// The same bsums give the minimum terms of Q2_K, Q4_K and Q5_K. So the bsums must match the
// quants (quantize_row and the AVX quantizers write them so): the references read them only for
// the minimums, these kernels also for the offsets of Q3_K, Q6_K and IQ4_XS.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

// Only internal-linkage helpers below: an inline function with external linkage compiled with
// these flags could be picked by the linker for a caller on a CPU without AVX-512.
namespace ktx::kernels::cpu::avx512 {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ2_K;
using quant::BlockQ3_K;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_K;
using quant::kQK_K;

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

// A kernel is an object with load(const BlockQ8_K&) -> Y, the activations of one super-block as
// it reads them, and sums(const Block&, const Y&) -> BlockSums. Kernels that read the
// activations straight from memory wrap a function of (block, Q8_K block) in this.
template <typename F>
struct FromMemory {
  F f;
  const BlockQ8_K& load(const BlockQ8_K& y) const { return y; }
  template <typename Block>
  BlockSums sums(const Block& b, const BlockQ8_K& y) const {
    return f(b, y);
  }
};
template <typename F>
FromMemory<F> from_memory(F f) {
  return {f};
}

// Σ_blocks isum * (d * yd) - msum * (dmin * yd), rounded as the reference rounds it. Two
// super-blocks share one horizontal reduction and one vector of products (each lane rounds as
// the reference's scalar multiply does); the block terms are then added in the reference's order.
// `halves(block)` gives the block's f16 d (low 16 bits) and dmin (high 16 bits, or 0).
template <bool kHasMin, typename Block, typename Kernel, typename Halves>
float exact_dot(int64_t n, const Block* x, const BlockQ8_K* y, const Kernel& k, Halves halves) {
  float sum = 0.0f;
  const int64_t nb = n / kQK_K;
  int64_t i = 0;
  for (; i + 1 < nb; i += 2) {
    const BlockSums a = k.sums(x[i], k.load(y[i]));
    const BlockSums b = k.sums(x[i + 1], k.load(y[i + 1]));
    const __m256i h =
        _mm256_hadd_epi32(_mm256_hadd_epi32(a.isum, a.msum), _mm256_hadd_epi32(b.isum, b.msum));
    const __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    // [d_a, dmin_a, d_b, dmin_b] * [yd_a, yd_a, yd_b, yd_b], then times [isum_a, msum_a, ...].
    const __m128i hv =
        _mm_set_epi32(0, 0, static_cast<int>(halves(x[i + 1])), static_cast<int>(halves(x[i])));
    const __m128 yd = _mm_set_ps(y[i + 1].d, y[i + 1].d, y[i].d, y[i].d);
    const __m128 scale = _mm_mul_ps(_mm_maskz_cvtph_ps(0xF, hv), yd);
    __m128 t = rounded(_mm_mul_ps(_mm_cvtepi32_ps(s), scale));
    if constexpr (kHasMin) t = _mm_sub_ps(t, _mm_movehdup_ps(t));  // lanes 0, 2: the block terms
    sum += _mm_cvtss_f32(t);
    sum += _mm_cvtss_f32(_mm_movehl_ps(t, t));
  }
  if (i < nb) {  // an odd last super-block
    const BlockSums a = k.sums(x[i], k.load(y[i]));
    const __m256i h = _mm256_hadd_epi32(a.isum, a.msum);  // [i01 i23 m01 m23 | i45 i67 m45 m67]
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));  // [I I M M]
    const __m128 dh = _mm_maskz_cvtph_ps(0xF, _mm_cvtsi32_si128(static_cast<int>(halves(x[i]))));
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

inline uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// ---- loads, folds and index tables ----------------------------------------------------------

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }
inline __m128i load16(const void* p) { return _mm_loadu_si128(static_cast<const __m128i*>(p)); }
// 32 bytes in both halves of a zmm (a load-port broadcast, no shuffle uop).
inline __m512i bcast32(const void* p) { return _mm512_broadcast_i64x4(load32(p)); }

inline __m256i fold(__m512i v) {
  return _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
}

inline __m256i load_bsums(const BlockQ8_K& y) { return load32(y.bsums); }

constexpr __mmask32 kUpperWords = 0xFFFF0000u;  // words 16..31: the upper 32 bytes
constexpr __mmask64 kUpperBytes = 0xFFFFFFFF00000000ull;

struct alignas(64) Table64 {
  int8_t b[64];
};

// vpermw indices for 16-element sub-blocks (Q2_K, Q3_K, Q6_K, 16 scale words). Vector u holds
// sub-blocks 4u..4u+3, one per 128-bit lane; after vpdpbusd and vpackssdw of vectors 2j and
// 2j+1, lane L has 4 words of sub-block 8j + L then 4 of sub-block 8j + 4 + L.
struct alignas(64) Index32 {
  int16_t w[32];
};
constexpr Index32 make_lanes_index(int j) {
  Index32 t{};
  for (int i = 0; i < 32; ++i) t.w[i] = static_cast<int16_t>(8 * j + (i % 8 >= 4 ? 4 : 0) + i / 8);
  return t;
}
constexpr Index32 kLanesIndex[2] = {make_lanes_index(0), make_lanes_index(1)};

inline __m512i table(const Table64& t) { return _mm512_load_si512(t.b); }
inline __m512i table(const Index32& t) { return _mm512_load_si512(t.w); }

// Bytes 0..31 equal to a, bytes 32..63 equal to b.
inline __m512i halves_bytes(int a, int b) {
  return _mm512_mask_blend_epi8(kUpperBytes, _mm512_set1_epi8(static_cast<char>(a)),
                                _mm512_set1_epi8(static_cast<char>(b)));
}

// Words 0..15 equal to a, 16..31 equal to b.
inline __m512i halves_words(int a, int b) {
  return _mm512_mask_blend_epi16(kUpperWords, _mm512_set1_epi16(static_cast<int16_t>(a)),
                                 _mm512_set1_epi16(static_cast<int16_t>(b)));
}

inline __m512i dpbusd(__m512i u8, __m512i s8) {
  return _mm512_dpbusd_epi32(_mm512_setzero_si512(), u8, s8);
}

// Σ scale * dword sums of four vectors d[0..3] whose sub-blocks the scale words in `s` follow
// after vpackssdw(d[0], d[1]) with spread s01 and vpackssdw(d[2], d[3]) with s23.
inline __m256i scaled_sums(const __m512i d[4], __m512i s01, __m512i s23) {
  __m512i acc = _mm512_dpwssd_epi32(_mm512_setzero_si512(), _mm512_packs_epi32(d[0], d[1]), s01);
  acc = _mm512_dpwssd_epi32(acc, _mm512_packs_epi32(d[2], d[3]), s23);
  return fold(acc);
}

// ---- Q4_K / Q5_K ----------------------------------------------------------------------------

// The 8 six-bit scales and 8 six-bit mins of a Q4_K/Q5_K super-block as bytes
// [s0..s3 m0..m3 s4..s7 m4..m7] (k4_scale_byte, k4_min_byte). Two 64-bit halves built with scalar
// ALU ops: the vector shuffle ports are what the K-quant kernels run out of first on Zen 4, so
// the unpacking stays off them.
inline __m128i k4_scales_mins(const uint8_t* s) {
  uint64_t lo;
  uint32_t w2;
  std::memcpy(&lo, s, 8);
  std::memcpy(&w2, s + 8, 4);
  // Sub-blocks 0..3: scale and min are the low 6 bits of bytes 0..3 and 4..7.
  const uint64_t low = lo & 0x3f3f3f3f3f3f3f3full;
  // Sub-blocks 4..7: low 4 bits from bytes 8..11 (scale low nibble, min high nibble), top 2 bits
  // from bits 6..7 of bytes 0..3 (scales) and 4..7 (mins), shifted down to bits 4..5.
  const uint64_t nibbles = (w2 | (static_cast<uint64_t>(w2 >> 4) << 32)) & 0x0f0f0f0f0f0f0f0full;
  const uint64_t high = nibbles | ((lo >> 2) & 0x3030303030303030ull);
  return _mm_set_epi64x(static_cast<int64_t>(high), static_cast<int64_t>(low));
}

constexpr int k4_scale_byte(int sub) { return sub < 4 ? sub : sub + 4; }
constexpr int k4_min_byte(int sub) { return sub < 4 ? sub + 4 : sub + 8; }

// vpshufb controls that turn k4_scales_mins (in every 128-bit lane) straight into zero-extended
// words: the scales in the order the sub-block sums have after vpackssdw (below), and the mins
// repeated for their two 16-element bsums.
constexpr Table64 make_k4_scale_control(int half) {
  Table64 t{};
  for (int i = 0; i < 64; ++i) {
    const int lane = i / 16, word = (i % 16) / 2;
    // vpackssdw(d[2h], d[2h+1]): lane L holds 4 words of d[2h]'s lane L, then 4 of d[2h+1]'s;
    // d[2h] covers sub-blocks 4h (lanes 0, 1) and 4h+2 (lanes 2, 3), d[2h+1] 4h+1 and 4h+3.
    const int sub = 4 * half + (lane >= 2 ? 2 : 0) + (word >= 4 ? 1 : 0);
    t.b[i] = static_cast<int8_t>(i % 2 == 0 ? k4_scale_byte(sub) : 0x80);
  }
  return t;
}
constexpr Table64 kK4ScaleControl[2] = {make_k4_scale_control(0), make_k4_scale_control(1)};
constexpr Table64 make_k4_min_control() {
  Table64 t{};
  for (int i = 0; i < 64; ++i) {
    const int bsum = (i / 16) % 2 * 8 + (i % 16) / 2;  // the ymm's word = its bsums index
    t.b[i] = static_cast<int8_t>(i % 2 == 0 ? k4_min_byte(bsum / 2) : 0x80);
  }
  return t;
}
constexpr Table64 kK4MinControl = make_k4_min_control();

// Q4_K and Q5_K share everything but the fifth bit. 64 bytes of qs at a time: the low nibbles of
// qs[64k..64k+31] are sub-block 4k, of qs[64k+32..64k+63] sub-block 4k+2, the high nibbles
// 4k+1 and 4k+3. So one load, an AND and a shift give 128 codes, where broadcasting 32 bytes
// to both halves took two shifts; the activations are regrouped to match once per super-block
// (load(), shared by every row of a tile).
template <bool kFifthBit, typename Block>
struct K4Kernel {
  struct Y {
    __m512i lo[2], hi[2];  // [y 128k+0..31 | 128k+64..95], [y 128k+32..63 | 128k+96..127]
    __m256i bsums;
  };
  __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i sixteen = _mm512_set1_epi8(16);
  __m512i scale_control[2] = {table(kK4ScaleControl[0]), table(kK4ScaleControl[1])};
  __m256i min_control = _mm512_castsi512_si256(table(kK4MinControl));
  // Q5_K: the fifth bit of element e is bit e/32 (its sub-block) of qh[e%32].
  __m512i fifth_bit[4] = {halves_bytes(1 << 0, 1 << 2), halves_bytes(1 << 1, 1 << 3),
                          halves_bytes(1 << 4, 1 << 6), halves_bytes(1 << 5, 1 << 7)};

  Y load(const BlockQ8_K& yb) const {
    Y y;
    for (int k = 0; k < 2; ++k) {
      const __m512i a = load64(yb.qs + 128 * k), b = load64(yb.qs + 128 * k + 64);
      y.lo[k] = _mm512_shuffle_i64x2(a, b, 0x44);  // a's lanes 0, 1, then b's lanes 0, 1
      y.hi[k] = _mm512_shuffle_i64x2(a, b, 0xEE);  // lanes 2, 3 of each
    }
    y.bsums = load_bsums(yb);
    return y;
  }

  BlockSums sums(const Block& b, const Y& y) const {
    const __m512i sm = _mm512_broadcast_i32x4(k4_scales_mins(b.scales));
    __m512i qh = _mm512_setzero_si512();
    if constexpr (kFifthBit) qh = bcast32(b.qh);
    __m512i d[4];
#pragma GCC unroll 2
    for (int k = 0; k < 2; ++k) {
      const __m512i q = load64(b.qs + 64 * k);
      __m512i lo = _mm512_and_si512(q, m4);
      __m512i hi = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      if constexpr (kFifthBit) {
        lo = _mm512_mask_add_epi8(lo, _mm512_test_epi8_mask(qh, fifth_bit[2 * k]), lo, sixteen);
        hi = _mm512_mask_add_epi8(hi, _mm512_test_epi8_mask(qh, fifth_bit[2 * k + 1]), hi, sixteen);
      }
      d[2 * k] = dpbusd(lo, y.lo[k]);
      d[2 * k + 1] = dpbusd(hi, y.hi[k]);
    }
    // Σ_j min_j * (bsums[2j] + bsums[2j+1]) in 8 lanes.
    const __m256i mins = _mm256_shuffle_epi8(_mm512_castsi512_si256(sm), min_control);
    return BlockSums{scaled_sums(d, _mm512_shuffle_epi8(sm, scale_control[0]),
                                 _mm512_shuffle_epi8(sm, scale_control[1])),
                     _mm256_madd_epi16(y.bsums, mins)};
  }
};

// ---- Q2_K / Q3_K: 2-bit fields, 16-element sub-blocks ---------------------------------------

// Element 128h + 32p + j sits in byte 32h + j, bits 2p..2p+1. The zmm of elements 128h + 64v +
// 0..63 is the same 32 bytes in both halves shifted right by 4v (lower) and 4v+2 (upper).
inline __m512i two_bit_shifts(int v) { return halves_words(4 * v, 4 * v + 2); }

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

auto q2_K_sums() {
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m128i m4 = _mm_set1_epi8(0x0F);
  const __m512i shifts[2] = {two_bit_shifts(0), two_bit_shifts(1)};
  const __m512i index0 = table(kLanesIndex[0]), index1 = table(kLanesIndex[1]);
  return [=](const BlockQ2_K& b, const BlockQ8_K& yb) {
    // scales[j]: scale in the low nibble, min in the high nibble.
    const __m128i raw = load16(b.scales);
    const __m512i scales = _mm512_castsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(raw, m4)));
    const __m256i mins = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(raw, 4), m4));
    __m512i d[4];
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      const __m512i q = bcast32(b.qs + 32 * (u / 2));
      const __m512i c = _mm512_and_si512(_mm512_srlv_epi16(q, shifts[u % 2]), m3);
      d[u] = dpbusd(c, load64(yb.qs + 64 * u));
    }
    return BlockSums{scaled_sums(d, _mm512_permutexvar_epi16(index0, scales),
                                 _mm512_permutexvar_epi16(index1, scales)),
                     _mm256_madd_epi16(load_bsums(yb), mins)};
  };
}

auto q3_K_sums() {
  const __m512i m3 = _mm512_set1_epi8(3);
  const __m512i four = _mm512_set1_epi8(4);
  const __m512i shifts[2] = {two_bit_shifts(0), two_bit_shifts(1)};
  const __m512i index0 = table(kLanesIndex[0]), index1 = table(kLanesIndex[1]);
  __m512i high_bit[4];
  for (int u = 0; u < 4; ++u) {
    // Element 128h + 32p + j has its high bit at bit 4h + p of hmask[j]; u = 2h + v, p = 2v, 2v+1.
    high_bit[u] = halves_bytes(1 << (2 * u), 1 << (2 * u + 1));
  }
  return [=](const BlockQ3_K& b, const BlockQ8_K& yb) {
    const __m256i scales16 = q3_scales(b.scales);
    const __m512i scales = _mm512_castsi256_si512(scales16);
    const __m512i hmask = bcast32(b.hmask);
    __m512i d[4];
#pragma GCC unroll 4
    for (int u = 0; u < 4; ++u) {
      // The code plus 4 (0..7, unsigned for vpdpbusd): the set high bit adds 4; the 4 taken from
      // every element comes back below as 4 * Σ scale * bsum.
      const __m512i q = bcast32(b.qs + 32 * (u / 2));
      __m512i c = _mm512_and_si512(_mm512_srlv_epi16(q, shifts[u % 2]), m3);
      c = _mm512_mask_add_epi8(c, _mm512_test_epi8_mask(hmask, high_bit[u]), c, four);
      d[u] = dpbusd(c, load64(yb.qs + 64 * u));
    }
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(yb), scales16), 2);
    const __m256i isum = scaled_sums(d, _mm512_permutexvar_epi16(index0, scales),
                                     _mm512_permutexvar_epi16(index1, scales));
    return BlockSums{_mm256_sub_epi32(isum, offset), _mm256_setzero_si256()};
  };
}

// ---- Q6_K -----------------------------------------------------------------------------------

// The activations stay in registers across the rows of a tile (load()).
struct Q6KKernel {
  struct Y {
    __m512i q[4];  // y.qs in order
    __m256i bsums;
  };
  __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i m30 = _mm512_set1_epi8(0x30);
  // Elements 128h + 0..63 take the low nibbles of ql[64h..64h+63]; their high bit pairs are
  // pairs 0 (first 32) and 1 (next 32) of qh[32h..32h+31], moved to bits 4..5 by shifting left
  // 4 and 2. Elements 128h + 64..127 take the high nibbles; pairs 2 and 3, shifted right 0 and 2.
  // (16-bit shifts: bits crossing into the neighbouring byte fall outside its 0x30.)
  __m512i shl = halves_words(4, 2), shr = halves_words(0, 2);
  __m512i index[2] = {table(kLanesIndex[0]), table(kLanesIndex[1])};

  Y load(const BlockQ8_K& yb) const {
    Y y;
    for (int k = 0; k < 4; ++k) y.q[k] = load64(yb.qs + 64 * k);
    y.bsums = load_bsums(yb);
    return y;
  }

  BlockSums sums(const BlockQ6_K& b, const Y& y) const {
    const __m256i scales16 = _mm256_cvtepi8_epi16(load16(b.scales));
    const __m512i scales = _mm512_castsi256_si512(scales16);
    __m512i d[4];
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      const __m512i ql = load64(b.ql + 64 * h);
      const __m512i qh = bcast32(b.qh + 32 * h);
      // Unsigned codes 0..63 (the stored value, before the -32).
      const __m512i c0 = _mm512_or_si512(_mm512_and_si512(ql, m4),
                                         _mm512_and_si512(_mm512_sllv_epi16(qh, shl), m30));
      const __m512i c1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(ql, 4), m4),
                                         _mm512_and_si512(_mm512_srlv_epi16(qh, shr), m30));
      d[2 * h] = dpbusd(c0, y.q[2 * h]);
      d[2 * h + 1] = dpbusd(c1, y.q[2 * h + 1]);
    }
    // The -32 of every code: 32 * Σ scale * bsum.
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(y.bsums, scales16), 5);
    const __m256i isum = scaled_sums(d, _mm512_permutexvar_epi16(index[0], scales),
                                     _mm512_permutexvar_epi16(index[1], scales));
    return BlockSums{_mm256_sub_epi32(isum, offset), _mm256_setzero_si256()};
  }
};

// ---- IQ4_XS ---------------------------------------------------------------------------------

// The 8 six-bit scales minus 32 as int32 lanes: low nibble at bit 4*ib of scales_l, top 2 bits
// at bit 2*ib of scales_h.
inline __m256i iq4_xs_scales(const BlockIQ4_XS& b) {
  const __m256i lo4 =
      _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(load_u32(b.scales_l))),
                                         _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28)),
                       _mm256_set1_epi32(0xF));
  const __m256i hi2 =
      _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(b.scales_h),
                                         _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                       _mm256_set1_epi32(3));
  return _mm256_sub_epi32(_mm256_or_si256(lo4, _mm256_slli_epi32(hi2, 4)), _mm256_set1_epi32(32));
}

auto iq4_xs_sums() {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  // The levels plus 128 (1..241) are unsigned, so vpdpbusd takes them directly; the 128 comes
  // back below as 128 * Σ scale * bsum.
  const __m512i levels = _mm512_broadcast_i32x4(
      _mm_xor_si128(load16(quant::kIQ4NLValues), _mm_set1_epi8(static_cast<char>(0x80))));
  constexpr __mmask32 kOddLanes = 0xFF00FF00u;  // words of 128-bit lanes 1 and 3
  __m512i pair_index[4];
  for (int k = 0; k < 4; ++k) {
    pair_index[k] =
        _mm512_mask_blend_epi32(0xFF00, _mm512_set1_epi32(2 * k), _mm512_set1_epi32(2 * k + 1));
  }
  return [=](const BlockIQ4_XS& b, const BlockQ8_K& yb) {
    const __m256i scales8 = iq4_xs_scales(b);
    const __m512i scales = _mm512_castsi256_si512(scales8);
    __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      // Sub-block ib: bytes 16ib..16ib+15, elements 0..15 in the low and 16..31 in the high
      // nibbles. Lanes [B0 B0 B1 B1] with lanes 1 and 3 shifted match 64 consecutive activations.
      __m512i q = _mm512_castsi256_si512(load32(b.qs + 32 * k));
      q = _mm512_shuffle_i64x2(q, q, _MM_SHUFFLE(1, 1, 0, 0));
      q = _mm512_and_si512(_mm512_mask_srli_epi16(q, kOddLanes, q, 4), m4);
      // Dwords up to 4 * 241 * 128 do not fit the word packing: scale them with vpmulld.
      const __m512i d = dpbusd(_mm512_shuffle_epi8(levels, q), load64(yb.qs + 64 * k));
      acc = _mm512_add_epi32(
          acc, _mm512_mullo_epi32(d, _mm512_permutexvar_epi32(pair_index[k], scales)));
    }
    // Each scale as two equal words, one per bsum of its 32 elements.
    const __m256i scales_w = _mm256_blend_epi16(scales8, _mm256_slli_epi32(scales8, 16), 0xAA);
    const __m256i offset = _mm256_slli_epi32(_mm256_madd_epi16(load_bsums(yb), scales_w), 7);
    return BlockSums{_mm256_sub_epi32(fold(acc), offset), _mm256_setzero_si256()};
  };
}

// ---- entry points ---------------------------------------------------------------------------

// A block's f16 d (low 16 bits) and dmin (high 16 bits; 0 for formats without minimums).
template <typename Block>
uint32_t d_dmin(const Block& b) {
  return load_u32(&b.d);
}
template <typename Block>
uint32_t d_only(const Block& b) {
  return uint32_t{b.d};
}

// With 32 zmm registers, 8 rows a tile.
constexpr int kTile = 8;
#include "kernels/cpu/k_quants_rows.inc"

}  // namespace

// One format's one-row and multi-row kernels.
#define KTX_K_KERNELS(name, Block, has_min, sums, halves)                                        \
  float vec_dot_##name##_q8_K(int64_t n, const void* x, const void* y) {                         \
    return exact_dot<has_min>(n, static_cast<const Block*>(x), static_cast<const BlockQ8_K*>(y), \
                              sums, [](const Block& b) { return halves<Block>(b); });            \
  }                                                                                              \
  void vec_dot_##name##_q8_K_rows(int64_t n, const void* x, size_t stride, int64_t rows,         \
                                  const void* y, float* out) {                                   \
    exact_dot_many<kTile, has_min, Block>(n, x, stride, rows, y, out, sums,                      \
                                          [](const Block& b) { return halves<Block>(b); });      \
  }

KTX_K_KERNELS(q2_K, BlockQ2_K, true, from_memory(q2_K_sums()), d_dmin)
KTX_K_KERNELS(q3_K, BlockQ3_K, false, from_memory(q3_K_sums()), d_only)
KTX_K_KERNELS(q4_K, BlockQ4_K, true, (K4Kernel<false, BlockQ4_K>{}), d_dmin)
KTX_K_KERNELS(q5_K, BlockQ5_K, true, (K4Kernel<true, BlockQ5_K>{}), d_dmin)
KTX_K_KERNELS(q6_K, BlockQ6_K, false, Q6KKernel{}, d_only)
KTX_K_KERNELS(iq4_xs, BlockIQ4_XS, false, from_memory(iq4_xs_sums()), d_only)
#undef KTX_K_KERNELS

}  // namespace ktx::kernels::cpu::avx512
