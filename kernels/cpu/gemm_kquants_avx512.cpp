// AVX-512 VNNI GEMM kernels (gemm.h) for K-quant and IQ4_XS weights × Q8_K activations, and the
// packer of their Q8_K panels. Built with the avx512 tier's flags; internal linkage or namespace
// avx512 only (isa_kernels.h says why).
//
// Why a GEMM needs its own layout. The reference rounds once per super-block, after summing
// scale_j * Σ q·y over the sub-blocks in int32. A GEMV kernel (k_quants_avx512.cpp) applies the
// sub-block scales right after each vpdpbusd, about one extra instruction per vpdpbusd. Here the
// activations are permuted once per token instead, so that every dword lane of every K-step holds
// elements of one and the same 16-element sub-block:
//
//   K-step k (0..3), dword lane l (0..15), byte i (0..3)  <->  element 16l + 4k + i
//
// Then 4 vpdpbusd accumulate a whole super-block per (row, token) in one register, lane l being
// the partial sum of sub-block l, and the scales are applied once per super-block. The weights
// are unpacked into the same order with one dword permute per K-step (vpermt2d), shared by every
// token of the tile.
//
// Signs: vpdpbusd multiplies unsigned by signed bytes. The panels store y + 128 (unsigned) and the
// weights are unpacked to their signed value q (Q6_K's code - 32, IQ4_XS's level): then
// Σ (y + 128)·q - 128·Σ q = Σ y·q, and the 128·Σ q part depends on the row alone, so it is
// computed once per row and super-block and used as every token's starting value.
//
// One tile is 2 weight rows × 8 tokens = 16 (row, token) pairs, one per lane of the result:
//
//   per token t:      X[r] = -128·Σq[r] + Σ_k vpdpbusd(y_t[k], w[r][k])      (16 lanes each)
//                     P_t  = sub-block scales applied, rows a and b side by side:
//                            vpackssdw + vpmaddwd where |X| < 2^15 (Q4_K), else vpmulld + add
//   8 tokens:         a transpose-add of P_0..P_7 -> I, lane 2t + r = isum(row r, token t)
//   minimums:         4 vpdpwssd of the rows' mins with the tokens' 32-element bsums -> M
//   per lane:         acc += float(I) * (d * yd) - float(M) * (dmin * yd)     (the reference's
//                     operations in its order: each lane is bit-identical to lib/quant)
//
// The file is built with -ffp-contract=off, so no multiply and add are fused.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_K;
using quant::kQK_K;

// ---- the Q8_K panel: one super-block of 8 tokens ---------------------------------------------
//   qs   [token t][K-step k][64]: byte 4l + i of K-step k = y_t.qs[16l + 4k + i] + 128
//   yd   [16 floats]: lane 2t + r = token t's d (r: the tile's row, 0 or 1)
//   b32  [pair p][16 dwords]: lane 2t + r = token t's (B[2p], B[2p+1]) as int16, where
//        B[j] = bsums[2j] + bsums[2j+1], the sum of 32-element sub-block j (for the minimums)
constexpr size_t kQsBytes = 8 * kQK_K;
constexpr size_t kYdOffset = kQsBytes;
constexpr size_t kB32Offset = kYdOffset + 64;
constexpr size_t kSuperBytes = kB32Offset + 4 * 64;  // 2368, a multiple of 64
static_assert(kSuperBytes == kGemmPanelQ8KBytes && kSuperBytes % 64 == 0,
              "gemm.h's size; 64-byte aligned super-blocks");

constexpr int kTileTokens = static_cast<int>(kGemmTokens);
static_assert(kTileTokens == 8, "the transpose-add below is written for 8 tokens");

// Panels (of 8 tokens) and rows per pass. One super-block of 8 panels is 19 KB and the
// accumulators of 32 rows x 8 panels 8 KB, so both stay in L1 while the rows go by. Measured on
// Zen 4 (Q4_K, 1408 x 2048): 8 panels x 32 rows 298 GOP/s, 4 x 32 272, 2 x 32 241, 8 x 16 292.
constexpr int kMaxPanels = 8;
constexpr int64_t kRowBlock = 32;

// ---- small helpers ----------------------------------------------------------------------------

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
inline __m512i zero() { return _mm512_setzero_si512(); }

struct alignas(64) Dwords16 {
  int32_t v[16];
};

// Dword permute tables, one per K-step: f(l, k) is lane l's source dword in K-step k.
struct Index4 {
  Dwords16 k[4];
};
template <typename F>
constexpr Index4 make_index(F f) {
  Index4 t{};
  for (int k = 0; k < 4; ++k)
    for (int l = 0; l < 16; ++l) t.k[k].v[l] = f(l, k);
  return t;
}
inline __m512i table(const Dwords16& t) { return _mm512_load_si512(t.v); }

uint32_t load_u32(const void* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// 16 floats from two f16 values alternating: lane 2t + r holds row r's.
inline __m512 pair_halves(uint16_t a, uint16_t b) {
  return _mm512_cvtph_ps(_mm256_set1_epi32(static_cast<int>(a | (static_cast<uint32_t>(b) << 16))));
}

// ---- Q4_K / Q5_K scales and minimums -----------------------------------------------------------

#include "kernels/cpu/k4_scales.inc"

// Lane l of a 32-element-sub-block format belongs to sub-block l / 2: each of 8 byte scales
// twice, as int32 lanes.
inline __m512i dup8_to_lanes(__m128i bytes8) {
  const __m128i dup = _mm_set_epi8(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  return _mm512_cvtepu8_epi32(_mm_shuffle_epi8(bytes8, dup));
}

// vpmaddwd words for two rows packed by vpackssdw: 128-bit lane j holds rows a and b's lanes
// 4j..4j+3, i.e. sub-blocks 2j, 2j, 2j+1, 2j+1 of a, then the same of b. `ab` = [sa0..sa7
// sb0..sb7].
inline __m512i madd_scales(__m128i ab) {
  const __m256i control = _mm256_setr_epi8(0, 0, 1, 1, 8, 8, 9, 9, 2, 2, 3, 3, 10, 10, 11, 11,  //
                                           4, 4, 5, 5, 12, 12, 13, 13, 6, 6, 7, 7, 14, 14, 15, 15);
  return _mm512_cvtepu8_epi16(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(ab), control));
}

// The mins of rows a, b for vpdpwssd with the panel's b32 pairs: vector p has, in lane 2t + r,
// row r's (min[2p], min[2p+1]).
struct MinPairs {
  __m512i m[4];
};
inline MinPairs min_pairs(__m128i ab) {  // ab = [ma0..ma7 mb0..mb7]
  const __m512i words = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(ab));  // dwords 0-3 a, 4-7 b
  MinPairs out;
  for (int p = 0; p < 4; ++p) {
    const __m512i index =
        _mm512_mask_blend_epi32(0xAAAA, _mm512_set1_epi32(p), _mm512_set1_epi32(4 + p));
    out.m[p] = _mm512_permutexvar_epi32(index, words);
  }
  return out;
}

// ---- weight formats: the 4 K-steps of one super-block as signed bytes --------------------------
//
// Each format gives weights(block, w) (element 16l + 4k + i of the super-block in byte 4l + i of
// w[k]), its f16 d (and dmin), and its sub-block scales either as madd words (kMadd: every lane
// sum fits int16) or as int32 lanes.

// Q4_K: element 32p + m (sub-block p) is nibble p % 2 of qs[32 (p / 2) + m]. Lane l: p = l / 2,
// m = 16 (l % 2) + 4k + i, so dword 8 (l / 4) + 4 (l % 2) + k of qs, high nibble where p is odd.
constexpr Index4 kQ4Index = make_index([](int l, int k) { return 8 * (l / 4) + 4 * (l % 2) + k; });
constexpr __mmask16 kQ4HighLanes = 0xCCCC;  // lanes with (l / 2) odd

// Q5_K's fifth bit of element 32p + m: bit p of qh[m]; lane l reads dword 4 (l % 2) + k of qh.
constexpr Index4 kQ5HighIndex = make_index([](int l, int k) { return 4 * (l % 2) + k; });

template <bool kFifthBit, typename Block>
inline void k4_weights(const Block& b, __m512i w[4]) {
  const __m512i lo = load64(b.qs), hi = load64(b.qs + 64);
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  __m512i qh = zero(), bit = zero();
  if constexpr (kFifthBit) {
    qh = _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh)));
    // Lane l tests bit l / 2 (its sub-block) of each byte.
    bit = _mm512_sllv_epi32(_mm512_set1_epi32(0x01010101),
                            _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7));
  }
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    __m512i t = _mm512_permutex2var_epi32(lo, table(kQ4Index.k[k]), hi);
    t = _mm512_and_si512(_mm512_mask_srli_epi32(t, kQ4HighLanes, t, 4), m4);
    if constexpr (kFifthBit) {
      const __m512i h = _mm512_permutexvar_epi32(table(kQ5HighIndex.k[k]), qh);
      t = _mm512_mask_add_epi8(t, _mm512_test_epi8_mask(h, bit), t, _mm512_set1_epi8(16));
    }
    w[k] = t;
  }
}

struct Q4KFormat {
  using Block = BlockQ4_K;
  static constexpr bool kMadd = true;  // |lane| <= 16 * 15 * 128 < 2^15
  static constexpr bool kMin = true;
  static void weights(const Block& b, __m512i w[4]) { k4_weights<false>(b, w); }
  static __m128i scales_mins(const Block& b) { return k4_scales_mins(b.scales); }
  static uint16_t d(const Block& b) { return b.d; }
  static uint16_t dmin(const Block& b) { return b.dmin; }
};

struct Q5KFormat {
  using Block = BlockQ5_K;
  static constexpr bool kMadd = false;  // 16 * 31 * 128 does not fit int16
  static constexpr bool kMin = true;
  static void weights(const Block& b, __m512i w[4]) { k4_weights<true>(b, w); }
  static __m128i scales_mins(const Block& b) { return k4_scales_mins(b.scales); }
  static __m512i scale_lanes(const Block& b) { return dup8_to_lanes(k4_scales_mins(b.scales)); }
  static uint16_t d(const Block& b) { return b.d; }
  static uint16_t dmin(const Block& b) { return b.dmin; }
};

// Q6_K: lane l is sub-block l = 8h + 2a + b' (h = l / 8, a = (l % 8) / 2, b' = l % 2), element
// 128h + 32a + m with m = 16b' + 4k + i. Low 4 bits: nibble a / 2 of ql[64h + 32 (a % 2) + m];
// high 2 bits: bits 2a..2a+1 of qh[32h + m] (lib/quant/k_quants.cpp).
constexpr Index4 kQ6LowIndex =
    make_index([](int l, int k) { return 16 * (l / 8) + 8 * ((l % 8) / 2 % 2) + 4 * (l % 2) + k; });
constexpr Index4 kQ6HighIndex =
    make_index([](int l, int k) { return 8 * (l / 8) + 4 * (l % 2) + k; });
constexpr __mmask16 kQ6HighNibbleLanes = 0xF0F0;  // a >= 2

struct Q6KFormat {
  using Block = BlockQ6_K;
  static constexpr bool kMadd = false;  // 16 * 32 * 128 = 2^16
  static constexpr bool kMin = false;
  static void weights(const Block& b, __m512i w[4]) {
    const __m512i ql0 = load64(b.ql), ql1 = load64(b.ql + 64), qh = load64(b.qh);
    const __m512i m4 = _mm512_set1_epi8(0x0F), m30 = _mm512_set1_epi8(0x30);
    // Rotating each dword left by 4 - 2a brings bits 2a..2a+1 of every byte to bits 4..5 of the
    // same byte (a = 3: right by 2; what wraps around lands outside 0x30).
    const __m512i rotate = _mm512_setr_epi32(4, 4, 2, 2, 0, 0, 30, 30, 4, 4, 2, 2, 0, 0, 30, 30);
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i lo = _mm512_permutex2var_epi32(ql0, table(kQ6LowIndex.k[k]), ql1);
      lo = _mm512_and_si512(_mm512_mask_srli_epi32(lo, kQ6HighNibbleLanes, lo, 4), m4);
      const __m512i hi =
          _mm512_rolv_epi32(_mm512_permutexvar_epi32(table(kQ6HighIndex.k[k]), qh), rotate);
      const __m512i code = _mm512_ternarylogic_epi32(lo, hi, m30, 0xF8);  // lo | (hi & 0x30)
      w[k] = _mm512_sub_epi8(code, _mm512_set1_epi8(32));
    }
  }
  static __m512i scale_lanes(const Block& b) {
    return _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
  }
  static uint16_t d(const Block& b) { return b.d; }
};

// IQ4_XS: sub-block ib = l / 2 is bytes 16ib..16ib+15, elements 0..15 in the low and 16..31 in the
// high nibbles: lane l reads dword 4 (l / 2) + k, the high nibble where l is odd.
constexpr Index4 kIQ4XSIndex = make_index([](int l, int k) { return 4 * (l / 2) + k; });

struct IQ4XSFormat {
  using Block = BlockIQ4_XS;
  static constexpr bool kMadd = false;  // levels up to 127
  static constexpr bool kMin = false;
  static void weights(const Block& b, __m512i w[4]) {
    const __m512i lo = load64(b.qs), hi = load64(b.qs + 64);
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i levels = _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIQ4NLValues)));
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      __m512i t = _mm512_permutex2var_epi32(lo, table(kIQ4XSIndex.k[k]), hi);
      t = _mm512_and_si512(_mm512_mask_srli_epi32(t, 0xAAAA, t, 4), m4);
      w[k] = _mm512_shuffle_epi8(levels, t);
    }
  }
  // Scale of sub-block ib: low nibble at bit 4ib of scales_l, top 2 bits at bit 2ib of scales_h,
  // minus 32; lane l has sub-block l / 2's.
  static __m512i scale_lanes(const Block& b) {
    const __m512i ib = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i lo = _mm512_and_si512(
        _mm512_srlv_epi32(_mm512_set1_epi32(static_cast<int>(load_u32(b.scales_l))),
                          _mm512_slli_epi32(ib, 2)),
        _mm512_set1_epi32(0xF));
    const __m512i hi =
        _mm512_and_si512(_mm512_srlv_epi32(_mm512_set1_epi32(b.scales_h), _mm512_slli_epi32(ib, 1)),
                         _mm512_set1_epi32(3));
    return _mm512_sub_epi32(_mm512_or_si512(lo, _mm512_slli_epi32(hi, 4)), _mm512_set1_epi32(32));
  }
  static uint16_t d(const Block& b) { return b.d; }
};

// ---- the tile ---------------------------------------------------------------------------------

inline __m512i add32(__m512i a, __m512i b) { return _mm512_add_epi32(a, b); }

// Two vectors of [a0 a1 b0 b1] per 128-bit lane (rows a, b of tokens t and t+1) ->
// [a_t b_t a_t+1 b_t+1] per 128-bit lane.
inline __m512i merge_tokens(__m512i p, __m512i q) {
  const __m512 fp = _mm512_castsi512_ps(p), fq = _mm512_castsi512_ps(q);
  return add32(_mm512_castps_si512(_mm512_shuffle_ps(fp, fq, 0x88)),
               _mm512_castps_si512(_mm512_shuffle_ps(fp, fq, 0xDD)));
}
// Sums pairs of 128-bit lanes: [a.0+a.1, a.2+a.3, b.0+b.1, b.2+b.3].
inline __m512i merge_lanes(__m512i a, __m512i b) {
  return add32(_mm512_shuffle_i32x4(a, b, 0x88), _mm512_shuffle_i32x4(a, b, 0xDD));
}

// Adds super-block i of rows xa, xb times `np` panels' tokens to acc[q] (lane 2t + r = row r ·
// token t of panel q). `panels` points at super-block i of the first panel.
template <typename F>
inline void super_block(const typename F::Block& xa, const typename F::Block& xb,
                        const uint8_t* panels, size_t panel_bytes, int np, __m512* acc) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));  // 128, unsigned
  __m512i wa[4], wb[4];
  F::weights(xa, wa);
  F::weights(xb, wb);
  __m512i ca = zero(), cb = zero();
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    ca = _mm512_dpbusd_epi32(ca, bias, wa[k]);
    cb = _mm512_dpbusd_epi32(cb, bias, wb[k]);
  }
  const __m512i start_a = _mm512_sub_epi32(zero(), ca), start_b = _mm512_sub_epi32(zero(), cb);

  __m512i madd = zero(), scale_a = zero(), scale_b = zero();
  MinPairs mins{};
  if constexpr (F::kMadd || F::kMin) {
    const __m128i sma = F::scales_mins(xa), smb = F::scales_mins(xb);
    if constexpr (F::kMadd) madd = madd_scales(_mm_unpacklo_epi64(sma, smb));
    if constexpr (F::kMin) mins = min_pairs(_mm_unpackhi_epi64(sma, smb));
  }
  if constexpr (!F::kMadd) {
    scale_a = F::scale_lanes(xa);
    scale_b = F::scale_lanes(xb);
  }
  const __m512 d = pair_halves(F::d(xa), F::d(xb));
  __m512 dmin = _mm512_setzero_ps();
  if constexpr (F::kMin) dmin = pair_halves(F::dmin(xa), F::dmin(xb));

  for (int q = 0; q < np; ++q) {
    const uint8_t* p = panels + static_cast<size_t>(q) * panel_bytes;
    // K-step outer, tokens inner: 16 independent accumulator chains between two uses of the
    // same register (a chain per token was latency-bound: 4 dependent vpdpbusd each).
    __m512i xa_t[kTileTokens], xb_t[kTileTokens];
#pragma GCC unroll 8
    for (int t = 0; t < kTileTokens; ++t) {
      xa_t[t] = start_a;
      xb_t[t] = start_b;
    }
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
#pragma GCC unroll 8
      for (int t = 0; t < kTileTokens; ++t) {
        const __m512i y = load64(p + 256 * t + 64 * k);  // one load for both rows
        xa_t[t] = _mm512_dpbusd_epi32(xa_t[t], y, wa[k]);
        xb_t[t] = _mm512_dpbusd_epi32(xb_t[t], y, wb[k]);
      }
    }
    __m512i sums[kTileTokens];
#pragma GCC unroll 8
    for (int t = 0; t < kTileTokens; ++t) {
      if constexpr (F::kMadd) {
        // Pairs of lanes share a sub-block: the multiply-add scales and sums them at once.
        sums[t] = _mm512_madd_epi16(_mm512_packs_epi32(xa_t[t], xb_t[t]), madd);
      } else {
        const __m512i ya = _mm512_mullo_epi32(xa_t[t], scale_a);
        const __m512i yb = _mm512_mullo_epi32(xb_t[t], scale_b);
        sums[t] = add32(_mm512_unpacklo_epi64(ya, yb), _mm512_unpackhi_epi64(ya, yb));
      }
    }
    // Lane 2t + r: the super-block's isum of row r and token t (int32 adds: order-free).
    const __m512i isum =
        merge_lanes(merge_lanes(merge_tokens(sums[0], sums[1]), merge_tokens(sums[2], sums[3])),
                    merge_lanes(merge_tokens(sums[4], sums[5]), merge_tokens(sums[6], sums[7])));
    const __m512 yd = _mm512_loadu_ps(p + kYdOffset);
    __m512 term = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(d, yd));
    if constexpr (F::kMin) {
      __m512i msum = zero();
      for (int pp = 0; pp < 4; ++pp) {
        msum = _mm512_dpwssd_epi32(msum, mins.m[pp], load64(p + kB32Offset + 64 * pp));
      }
      term = _mm512_sub_ps(term, _mm512_mul_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, yd)));
    }
    acc[q] = _mm512_add_ps(acc[q], term);
  }
}

// Prefetches super-block i of a row into L1: the row-inner loop below visits kRowBlock rows
// side by side, too many short streams for the hardware prefetchers.
template <typename Block>
inline void prefetch_block(const Block& b) {
  const char* p = reinterpret_cast<const char*>(&b);
  for (size_t off = 0; off < sizeof(Block); off += 64)
    __asm__ volatile("prefetcht0 %0" : : "m"(p[off]));
}

template <typename F>
void gemm_k(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels,
            int64_t tokens, float* out, size_t ldo) {
  using Block = typename F::Block;
  const int64_t nb = n / kQK_K;
  const size_t panel_bytes = static_cast<size_t>(nb) * kSuperBytes;
  const int64_t n_panels = (tokens + kTileTokens - 1) / kTileTokens;
  const auto* base = static_cast<const uint8_t*>(x);
  const auto* pbase = static_cast<const uint8_t*>(panels);
  auto row = [&](int64_t r) {
    return reinterpret_cast<const Block*>(base + static_cast<size_t>(r) * x_stride);
  };
  // Super-block outer, rows inner: super-block i of kMaxPanels panels (19 KB) stays in L1 while
  // kRowBlock rows pass over it, so each activation load comes from L1 (L2 loads halved the
  // rate: one 64-byte load per two vpdpbusd is what limits this kernel).
  __m512 acc[kRowBlock / 2][kMaxPanels];
  for (int64_t p0 = 0; p0 < n_panels; p0 += kMaxPanels) {
    const int np = static_cast<int>(std::min<int64_t>(kMaxPanels, n_panels - p0));
    const uint8_t* pp = pbase + static_cast<size_t>(p0) * panel_bytes;
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int64_t nr = std::min<int64_t>(kRowBlock, rows - r0);
      const int64_t pairs = (nr + 1) / 2;
      for (int64_t j = 0; j < pairs; ++j)
        for (int q = 0; q < np; ++q) acc[j][q] = _mm512_setzero_ps();
      for (int64_t i = 0; i < nb; ++i) {
        for (int64_t j = 0; j < pairs; ++j) {
          const int64_t ra = r0 + 2 * j;
          const int64_t rb = ra + 1 < r0 + nr ? ra + 1 : ra;  // an odd last row pairs with itself
          if (i + 1 < nb) {
            prefetch_block(row(ra)[i + 1]);
            prefetch_block(row(rb)[i + 1]);
          }
          super_block<F>(row(ra)[i], row(rb)[i], pp + static_cast<size_t>(i) * kSuperBytes,
                         panel_bytes, np, acc[j]);
        }
      }
      for (int64_t j = 0; j < pairs; ++j) {
        const int64_t ra = r0 + 2 * j;
        const bool two = ra + 1 < r0 + nr;
        for (int q = 0; q < np; ++q) {
          alignas(64) float v[16];
          _mm512_store_ps(v, acc[j][q]);
          const int64_t t0 = (p0 + q) * kTileTokens;
          const int valid = static_cast<int>(std::min<int64_t>(kTileTokens, tokens - t0));
          for (int t = 0; t < valid; ++t) {
            float* o = out + static_cast<size_t>(t0 + t) * ldo + ra;
            o[0] = v[2 * t];
            if (two) o[1] = v[2 * t + 1];
          }
        }
      }
    }
  }
}

}  // namespace

// ---- the Q8_K packer ----------------------------------------------------------------------------

void gemm_pack_q8_K(int64_t n, const void* const* y, int64_t count, void* panel) {
  const int64_t nb = n / kQK_K;
  auto* out = static_cast<uint8_t*>(panel);
  // Dword 16k + l of the panel's token row is dword 4l + k of the block's qs: a 16 x 4 transpose,
  // lanes 0..7 from qs dwords 0..31 and lanes 8..15 from 32..63.
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* p = out + static_cast<size_t>(i) * kSuperBytes;
    alignas(64) float yd[16];
    alignas(64) int32_t b32[4][16];
    for (int t = 0; t < kTileTokens; ++t) {
      if (t >= count) {
        std::memset(p + 256 * t, 0x80, 256);  // y = 0
        yd[2 * t] = yd[2 * t + 1] = 0.0f;
        for (auto& pair : b32) pair[2 * t] = pair[2 * t + 1] = 0;
        continue;
      }
      const BlockQ8_K& b = static_cast<const BlockQ8_K*>(y[t])[i];
      const __m512i q0 = load64(b.qs), q1 = load64(b.qs + 64), q2 = load64(b.qs + 128),
                    q3 = load64(b.qs + 192);
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512i index = _mm512_add_epi32(
            _mm512_and_si512(
                _mm512_slli_epi32(
                    _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), 2),
                _mm512_set1_epi32(31)),
            _mm512_set1_epi32(k));
        const __m512i lo = _mm512_permutex2var_epi32(q0, index, q1);
        const __m512i hi = _mm512_permutex2var_epi32(q2, index, q3);
        _mm512_storeu_si512(p + 256 * t + 64 * k,
                            _mm512_xor_si512(_mm512_mask_blend_epi32(0xFF00, lo, hi), flip));
      }
      yd[2 * t] = yd[2 * t + 1] = b.d;
      for (int pp = 0; pp < 4; ++pp) {
        const int j = 2 * pp;
        const auto lo = static_cast<uint16_t>(b.bsums[2 * j] + b.bsums[2 * j + 1]);
        const auto hi = static_cast<uint16_t>(b.bsums[2 * j + 2] + b.bsums[2 * j + 3]);
        b32[pp][2 * t] = b32[pp][2 * t + 1] =
            static_cast<int32_t>(lo | (static_cast<uint32_t>(hi) << 16));
      }
    }
    std::memcpy(p + kYdOffset, yd, sizeof yd);
    std::memcpy(p + kB32Offset, b32, sizeof b32);
  }
}

KTX_DEFINE_GEMM_KERNEL(gemm_q4_K, gemm_k<Q4KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_K, gemm_k<Q5KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_q6_K, gemm_k<Q6KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_iq4_xs, gemm_k<IQ4XSFormat>)

}  // namespace ktx::kernels::cpu::avx512
