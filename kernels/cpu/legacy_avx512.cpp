// AVX-512 (F/DQ/BW/VL + VNNI) kernels for the 32-element block quants × Q8_0/Q8_1, the float
// types, and the activation quantizers. Compiled with its own -m flags (CMakeLists.txt) and called
// only when cpu_features() says so. Everything here has internal linkage or lives in
// namespace avx512, so no inline function compiled with AVX-512 can be picked by the linker for
// code that runs on other CPUs.
//
// The block dots compute each block's integer sum exactly, then the reference's per-block term
// (float(isum) * (dx * dy) [+ mx * sy]) with the same roundings; only the order in which the terms
// are added differs (16 lanes, then a tree). Layout of one group of 16 blocks:
//
//   pair p (zmm):  [ block 2p, elements 0..31 | block 2p+1, elements 0..31 ]   (u8 weights, s8 y)
//   vpdpbusd    -> 8 dword partial sums per block
//   combine(p, p+1) -> lane k (128 bits) = 4 partials of block 4h+k          (h = p/2)
//   reduce4(Q0..Q3) -> dword 4k+j = isum of block 4j+k                        (kBlockOfLane)
//     (as reduce_pair(Q0, Q1), reduce_pair(Q2, Q3), then reduce_halves)
//   scales are gathered in that same lane order, so no shuffle back is needed.
//
// vpdpbusd multiplies unsigned by signed bytes. The activations are signed, so each weight format
// is decoded to unsigned bytes u = q + offset (offset 8 for Q4_0, 16 for Q5_0, 128 for Q8_0 and
// IQ4_NL's shifted table, 0 for Q4_1/Q5_1) and offset * Σy is subtracted per block — computed
// once per group and shared by all rows of a multi-row call.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

using quant::BlockIQ4_NL;
using quant::BlockQ4_0;
using quant::BlockQ4_1;
using quant::BlockQ5_0;
using quant::BlockQ5_1;
using quant::BlockQ8_0;
using quant::BlockQ8_1;
using quant::BlockQ8_K;

constexpr int kGroup = 16;  // blocks per group: one zmm of per-block sums

uint16_t float_to_half(float f) {
  return static_cast<uint16_t>(_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

uint32_t load_u32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Two 32-byte rows in one zmm; `b` may be null (upper half zero, for an odd last block).
__m512i load_2x256(const void* a, const void* b) {
  const __m256i lo = _mm256_loadu_si256(static_cast<const __m256i*>(a));
  if (b == nullptr) return _mm512_zextsi256_si512(lo);
  return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                            _mm256_loadu_si256(static_cast<const __m256i*>(b)), 1);
}

// 16 packed nibble bytes per block -> 32 bytes [low nibbles (elements 0..15) | high nibbles
// (16..31)]: the 16 bytes go to both 128-bit halves, the upper half shifted right by 4.
__m512i nibbles_2(const uint8_t* a, const uint8_t* b) {
  const __m256i qa =
      _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a)));
  __m512i v;
  if (b == nullptr) {
    v = _mm512_zextsi256_si512(qa);
  } else {
    const __m256i qb =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    v = _mm512_inserti64x4(_mm512_castsi256_si512(qa), qb, 1);
  }
  const __m512i shift = _mm512_set_epi64(0x0004000400040004, 0x0004000400040004, 0, 0,
                                         0x0004000400040004, 0x0004000400040004, 0, 0);
  return _mm512_and_si512(_mm512_srlv_epi16(v, shift), _mm512_set1_epi8(0x0F));
}

// Adds 16 to the bytes whose fifth bit is set: element j of each block is bit j of its qh.
__m512i add_fifth_bits(__m512i u, const uint8_t* qh_a, const uint8_t* qh_b) {
  const uint64_t bits = load_u32(qh_a) | (qh_b ? static_cast<uint64_t>(load_u32(qh_b)) << 32 : 0);
  return _mm512_mask_add_epi8(u, _cvtu64_mask64(bits), u, _mm512_set1_epi8(16));
}

// ---- weight formats: unsigned bytes for two blocks, the offset, and the scale layout ----------

struct Q8_0W {
  using Block = BlockQ8_0;
  using YBlock = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static __m512i decode(const Block* a, const Block* b) {
    return _mm512_xor_si512(load_2x256(a->qs, b ? b->qs : nullptr), _mm512_set1_epi8(-128));
  }
};

struct Q4_0W {
  using Block = BlockQ4_0;
  using YBlock = BlockQ8_0;
  static constexpr int kOffset = 8;
  static constexpr bool kHasMin = false;
  static __m512i decode(const Block* a, const Block* b) {
    return nibbles_2(a->qs, b ? b->qs : nullptr);
  }
};

struct Q4_1W {
  using Block = BlockQ4_1;
  using YBlock = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static __m512i decode(const Block* a, const Block* b) {
    return nibbles_2(a->qs, b ? b->qs : nullptr);
  }
};

struct Q5_0W {
  using Block = BlockQ5_0;
  using YBlock = BlockQ8_0;
  static constexpr int kOffset = 16;
  static constexpr bool kHasMin = false;
  static __m512i decode(const Block* a, const Block* b) {
    return add_fifth_bits(nibbles_2(a->qs, b ? b->qs : nullptr), a->qh, b ? b->qh : nullptr);
  }
};

struct Q5_1W {
  using Block = BlockQ5_1;
  using YBlock = BlockQ8_1;
  static constexpr int kOffset = 0;
  static constexpr bool kHasMin = true;
  static __m512i decode(const Block* a, const Block* b) {
    return add_fifth_bits(nibbles_2(a->qs, b ? b->qs : nullptr), a->qh, b ? b->qh : nullptr);
  }
};

// The 16 IQ4_NL levels + 128, so that they are unsigned bytes (1..241); looked up per 128-bit lane
// with vpshufb (16 entries fit one lane, so VBMI's vpermb would buy nothing here).
struct IQ4_NLW {
  using Block = BlockIQ4_NL;
  using YBlock = BlockQ8_0;
  static constexpr int kOffset = 128;
  static constexpr bool kHasMin = false;
  static __m512i decode(const Block* a, const Block* b) {
    const __m512i table = _mm512_broadcast_i32x4(_mm_set_epi8(
        static_cast<char>(113 + 128), static_cast<char>(89 + 128), static_cast<char>(69 + 128),
        static_cast<char>(53 + 128), static_cast<char>(38 + 128), static_cast<char>(25 + 128),
        static_cast<char>(13 + 128), static_cast<char>(1 + 128), static_cast<char>(-10 + 128),
        static_cast<char>(-22 + 128), static_cast<char>(-35 + 128), static_cast<char>(-49 + 128),
        static_cast<char>(-65 + 128), static_cast<char>(-83 + 128), static_cast<char>(-104 + 128),
        static_cast<char>(-127 + 128)));
    return _mm512_shuffle_epi8(table, nibbles_2(a->qs, b ? b->qs : nullptr));
  }
};
static_assert(quant::kIQ4NLValues[0] == -127 && quant::kIQ4NLValues[15] == 113,
              "IQ4_NLW's table must follow kIQ4NLValues");

// ---- one group of up to 16 blocks ---------------------------------------------------------------

// Two pair vectors (blocks 4h..4h+1 and 4h+2..4h+3) -> lane k holds 4 partials of block 4h+k.
__m512i combine(__m512i p0, __m512i p1) {
  const __m512i even = _mm512_shuffle_i32x4(p0, p1, _MM_SHUFFLE(2, 0, 2, 0));
  const __m512i odd = _mm512_shuffle_i32x4(p0, p1, _MM_SHUFFLE(3, 1, 3, 1));
  return _mm512_add_epi32(even, odd);
}

// reduce4 of four combined vectors (blocks 0-3, 4-7, 8-11, 12-15 by lane) -> dword 4k+j = sum of
// block 4j+k, in two steps so that a caller can take the first as soon as two inputs exist:
// reduce_pair(a, b) and reduce_pair(c, d), then reduce_halves of the two.
__m512i reduce_pair(__m512i a, __m512i b) {
  return _mm512_add_epi32(_mm512_unpacklo_epi32(a, b), _mm512_unpackhi_epi32(a, b));
}
__m512i reduce_halves(__m512i ab, __m512i cd) {
  return _mm512_add_epi32(_mm512_unpacklo_epi64(ab, cd), _mm512_unpackhi_epi64(ab, cd));
}

// reduce4 leaves the sum of block kBlockOfLane[i] in dword i.
constexpr int kBlockOfLane[kGroup] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

// The f16 words at the start of 16 consecutive blocks of `S` bytes (d, and with kWords = 2 the
// m or s that follows it), in reduce4's lane order: word i = d of block kBlockOfLane[i], word
// 16 + i its second half. vpgatherdd would do it in one instruction but costs about a third of
// the whole kernel on Zen 4; this loads the span in 64-byte chunks (masked past its end, so it
// never reads beyond the last word it needs) and picks the words with vpermt2w, 128 bytes at a
// time.
template <int S, int kWords>
struct HeadWords {
  static_assert(S % 2 == 0, "block heads must be 16-bit aligned");
  static constexpr int kSpan = (kGroup - 1) * S + 2 * kWords;  // bytes up to the last word used
  static constexpr int kChunks = (kSpan + 63) / 64;
  static constexpr int kPairs = (kChunks + 1) / 2;
  struct Table {
    uint16_t index[kPairs][32] = {};
    uint32_t mask[kPairs] = {};
  };
  static constexpr Table table() {
    Table t;
    for (int w = 0; w < 16 * kWords; ++w) {
      const int word = kBlockOfLane[w % 16] * (S / 2) + w / 16;  // in the span
      const int pair = word / 64;
      t.index[pair][w] = static_cast<uint16_t>(word % 64);
      t.mask[pair] |= 1u << w;
    }
    return t;
  }
  static __m512i chunk(const uint8_t* base, int c) {
    if (c >= kChunks) return _mm512_setzero_si512();
    if (64 * (c + 1) <= kSpan) return _mm512_loadu_si512(base + 64 * c);
    return _mm512_maskz_loadu_epi8((1ULL << (kSpan - 64 * c)) - 1, base + 64 * c);
  }
  static __m512i load(const void* blocks) {
    static constexpr Table kTable = table();
    const auto* base = static_cast<const uint8_t*>(blocks);
    __m512i out = _mm512_setzero_si512();
    for (int p = 0; p < kPairs; ++p) {
      const __m512i index = _mm512_loadu_si512(kTable.index[p]);
      const __m512i picked =
          _mm512_permutex2var_epi16(chunk(base, 2 * p), index, chunk(base, 2 * p + 1));
      out = _mm512_mask_mov_epi16(out, kTable.mask[p], picked);
    }
    return out;
  }
};

// The same 16 head words with vpinsrw from memory, 8 per xmm: cheaper than HeadWords for the
// 34- and 36-byte activation and Q8_0 blocks, whose span needs 4-5 permutes (18% more one-row
// Q8_0 speed on Zen 4), dearer for the short blocks.
template <typename Block, int kWords>
void insert_head_words(const Block* blocks, __m256i* h) {
  const auto* p = reinterpret_cast<const uint8_t*>(blocks);
  auto word = [p](int lane, int w) {
    uint16_t v;
    std::memcpy(&v, p + kBlockOfLane[lane] * sizeof(Block) + 2 * w, 2);
    return static_cast<int>(v);
  };
  for (int w = 0; w < kWords; ++w) {
    __m128i lo = _mm_cvtsi32_si128(word(0, w)), hi = _mm_cvtsi32_si128(word(8, w));
    lo = _mm_insert_epi16(lo, word(1, w), 1);
    hi = _mm_insert_epi16(hi, word(9, w), 1);
    lo = _mm_insert_epi16(lo, word(2, w), 2);
    hi = _mm_insert_epi16(hi, word(10, w), 2);
    lo = _mm_insert_epi16(lo, word(3, w), 3);
    hi = _mm_insert_epi16(hi, word(11, w), 3);
    lo = _mm_insert_epi16(lo, word(4, w), 4);
    hi = _mm_insert_epi16(hi, word(12, w), 4);
    lo = _mm_insert_epi16(lo, word(5, w), 5);
    hi = _mm_insert_epi16(hi, word(13, w), 5);
    lo = _mm_insert_epi16(lo, word(6, w), 6);
    hi = _mm_insert_epi16(hi, word(14, w), 6);
    lo = _mm_insert_epi16(lo, word(7, w), 7);
    hi = _mm_insert_epi16(hi, word(15, w), 7);
    h[w] = _mm256_inserti128_si256(_mm256_castsi128_si256(lo), hi, 1);
  }
}

// The f16 head halves of 16 blocks as floats in reduce4's lane order: d, and m or s where the
// format has one (kWords = 2). Blocks at or past `count` give 0 and are not read.
template <typename Block, int kWords, bool kFull>
void load_scales(const Block* blocks, int count, __m512& d, __m512& m) {
  if constexpr (kFull && HeadWords<sizeof(Block), kWords>::kPairs > 3) {
    __m256i h[kWords];
    insert_head_words<Block, kWords>(blocks, h);
    d = _mm512_cvtph_ps(h[0]);
    if constexpr (kWords == 2) m = _mm512_cvtph_ps(h[1]);
  } else if constexpr (kFull) {
    const __m512i words = HeadWords<sizeof(Block), kWords>::load(blocks);
    d = _mm512_cvtph_ps(_mm512_castsi512_si256(words));
    if constexpr (kWords == 2) m = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(words, 1));
  } else {
    // The last, short group of a row: a masked gather reads only the blocks that exist.
    const __m512i lane_block =
        _mm512_set_epi32(15, 11, 7, 3, 14, 10, 6, 2, 13, 9, 5, 1, 12, 8, 4, 0);
    const __m512i offsets = _mm512_mullo_epi32(lane_block, _mm512_set1_epi32(sizeof(Block)));
    const __mmask16 live = _mm512_cmplt_epi32_mask(lane_block, _mm512_set1_epi32(count));
    const __m512i g = _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, offsets, blocks, 1);
    d = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(g));
    if constexpr (kWords == 2) m = _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(g, 16)));
  }
}

// Accumulates the terms of `count` (1..16) blocks starting at x[r] / y into acc[r], for R rows.
// reduce4 runs in two halves as the products come (blocks 0-7, then 8-15), so a row keeps two
// vectors live instead of four and a tile of 8 rows fits in the 32 registers.
template <typename W, int R, bool kFull>
void group(const typename W::Block* const* x, const typename W::YBlock* y, int count_,
           __m512* acc) {
  const int count = kFull ? kGroup : count_;
  using Block = typename W::Block;
  const __m512i zero = _mm512_setzero_si512();
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(W::kOffset));
  __m512i half[R][2];  // reduce4's ab (blocks 0-7) and cd (blocks 8-15) of each row
  __m512i prev[R];     // the combined vector of the even h, waiting for the odd one
  __m512i corr_half[2], corr_prev = zero;
  // Unrolled by pragma: at -O2 GCC 12 kept these loops rolled, with the per-row vectors on the
  // stack (a store and a reload per product), about 8% of the kernel's time in L2.
#pragma GCC unroll 4
  for (int h = 0; h < 4; ++h) {
    const int b0 = 4 * h;
    __m512i ya = zero, yb = zero;
    // Pair loads: both blocks, the first only, or nothing (past the end of a short group).
    if (b0 + 1 < count) {
      ya = load_2x256(y[b0].qs, y[b0 + 1].qs);
    } else if (b0 < count) {
      ya = load_2x256(y[b0].qs, nullptr);
    }
    if (b0 + 3 < count) {
      yb = load_2x256(y[b0 + 2].qs, y[b0 + 3].qs);
    } else if (b0 + 2 < count) {
      yb = load_2x256(y[b0 + 2].qs, nullptr);
    }
    if constexpr (W::kOffset != 0) {
      const __m512i c =
          combine(_mm512_dpbusd_epi32(zero, offset, ya), _mm512_dpbusd_epi32(zero, offset, yb));
      if (h % 2 == 0) {
        corr_prev = c;
      } else {
        corr_half[h / 2] = reduce_pair(corr_prev, c);
      }
    }
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const Block* xb = x[r] + b0;
      __m512i pa = zero, pb = zero;
      if (b0 < count)
        pa = _mm512_dpbusd_epi32(zero, W::decode(xb, b0 + 1 < count ? xb + 1 : nullptr), ya);
      if (b0 + 2 < count) {
        pb = _mm512_dpbusd_epi32(zero, W::decode(xb + 2, b0 + 3 < count ? xb + 3 : nullptr), yb);
      }
      const __m512i c = combine(pa, pb);
      if (h % 2 == 0) {
        prev[r] = c;
      } else {
        half[r][h / 2] = reduce_pair(prev[r], c);
      }
    }
  }
  __m512i corr_sum = zero;
  if constexpr (W::kOffset != 0) corr_sum = reduce_halves(corr_half[0], corr_half[1]);
  constexpr int kWords = W::kHasMin ? 2 : 1;
  __m512 dy, sy = _mm512_setzero_ps();
  load_scales<typename W::YBlock, kWords, kFull>(y, count, dy, sy);
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    __m512i isum = reduce_halves(half[r][0], half[r][1]);
    if constexpr (W::kOffset != 0) isum = _mm512_sub_epi32(isum, corr_sum);
    __m512 dx, mx = _mm512_setzero_ps();
    load_scales<Block, kWords, kFull>(x[r], count, dx, mx);
    // The reference's term, rounding for rounding: isum * (dx * dy) [+ mx * sy].
    __m512 term = _mm512_mul_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(dx, dy));
    if constexpr (W::kHasMin) term = _mm512_add_ps(term, _mm512_mul_ps(mx, sy));
    acc[r] = _mm512_add_ps(acc[r], term);
  }
}

// The row drivers shared with the AVX2 tier, over this tier's accumulator.
using Acc = __m512;
inline Acc acc_zero() { return _mm512_setzero_ps(); }
inline float acc_sum(Acc a) { return _mm512_reduce_add_ps(a); }
#include "kernels/cpu/legacy_rows.inc"

// ---- float types: 4 × 16 lanes of FMA; n need not be a multiple of anything -----------------

#include "kernels/cpu/float_tile_avx512.inc"

template <typename L>
float dot_float(int64_t n, const void* x, const void* y) {
  float s;
  float_tile<L, 1, 1>(n, static_cast<const uint8_t*>(x), 0, static_cast<const uint8_t*>(y), 0, &s,
                      1);
  return s;
}

// ---- activation quantizers ----------------------------------------------------------------------

// The reference's round_to_int8: roundf (ties away from zero) saturated to ±127, NaN -> 0.
__m512i round_to_int8(__m512 v) {
  const __mmask16 is_nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
  const __m512 c = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
  __m512 t = _mm512_roundscale_ps(c, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
  const __m512 frac = _mm512_sub_ps(c, t);  // exact
  const __m512 one = _mm512_set1_ps(1.0f);
  t = _mm512_mask_add_ps(t, _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ), t, one);
  t = _mm512_mask_sub_ps(t, _mm512_cmp_ps_mask(frac, _mm512_set1_ps(-0.5f), _CMP_LE_OQ), t, one);
  return _mm512_maskz_mov_epi32(static_cast<__mmask16>(~is_nan), _mm512_cvttps_epi32(t));
}

// max(|x|) over 32 values, skipping NaNs as the reference's std::max(amax, |x|) does (vmaxps
// returns its second operand when the first is NaN).
float absmax32(__m512 a, __m512 b) {
  const __m512 m = _mm512_max_ps(_mm512_abs_ps(a), _mm512_setzero_ps());
  return _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(b), m));
}

// Q8_0 and Q8_1 share everything but the sum.
template <bool kSum>
void quantize_q8_block(const float* x, uint16_t& d_out, int8_t* qs, uint16_t* s_out) {
  const __m512 a = _mm512_loadu_ps(x), b = _mm512_loadu_ps(x + 16);
  const float d = absmax32(a, b) / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  d_out = float_to_half(d);
  const __m512 vid = _mm512_set1_ps(id);
  const __m512i qa = round_to_int8(_mm512_mul_ps(a, vid));
  const __m512i qb = round_to_int8(_mm512_mul_ps(b, vid));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_cvtepi32_epi8(qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_cvtepi32_epi8(qb));
  if constexpr (kSum) {
    const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
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

void vec_dot_q8_0_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  // Tiles of 4: from memory Q8_0 is bound by the streaming, not by the kernel, and 8 rows side
  // by side read rows of 10944 weights slower (24 against 26-27 GB/s; docs/PERF.md, "Kernels
  // one by one").
  dot_many<Q8_0W, 4>(n, x, stride, rows, y, out);
}
void vec_dot_q4_0_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q4_0W, 8>(n, x, stride, rows, y, out);
}
void vec_dot_q5_0_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q5_0W, 8>(n, x, stride, rows, y, out);
}
void vec_dot_iq4_nl_q8_0_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                              float* out) {
  dot_many<IQ4_NLW, 8>(n, x, stride, rows, y, out);
}
void vec_dot_q4_1_q8_1_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q4_1W>(n, x, stride, rows, y, out);
}
void vec_dot_q5_1_q8_1_rows(int64_t n, const void* x, size_t stride, int64_t rows, const void* y,
                            float* out) {
  dot_many<Q5_1W>(n, x, stride, rows, y, out);
}

float vec_dot_f32(int64_t n, const void* x, const void* y) { return dot_float<F32L>(n, x, y); }
float vec_dot_f16(int64_t n, const void* x, const void* y) { return dot_float<F16L>(n, x, y); }
float vec_dot_bf16(int64_t n, const void* x, const void* y) { return dot_float<BF16L>(n, x, y); }

void quantize_row_q8_0(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_0*>(y);
  for (int64_t b = 0; b < n / 32; ++b)
    quantize_q8_block<false>(x + 32 * b, out[b].d, out[b].qs, nullptr);
}

void quantize_row_q8_1(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_1*>(y);
  for (int64_t b = 0; b < n / 32; ++b)
    quantize_q8_block<true>(x + 32 * b, out[b].d, out[b].qs, &out[b].s);
}

void quantize_row_q8_K(const float* x, void* y, int64_t n) {
  auto* out = static_cast<BlockQ8_K*>(y);
  for (int64_t i = 0; i < n / quant::kQK_K; ++i, x += quant::kQK_K) {
    BlockQ8_K& blk = out[i];
    __m512 m = _mm512_setzero_ps();
    for (int v = 0; v < 16; ++v) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * v)), m);
    const float amax = _mm512_reduce_max_ps(m);
    if (amax == 0.0f) {
      std::memset(&blk, 0, sizeof blk);
      continue;
    }
    // The reference keeps the first element of largest magnitude (a later tie does not replace
    // it), with its sign.
    float max = 0.0f;
    for (int v = 0; v < 16; ++v) {
      const __mmask16 hit = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + 16 * v)),
                                               _mm512_set1_ps(amax), _CMP_EQ_OQ);
      if (hit != 0) {
        max = x[16 * v + __builtin_ctz(hit)];
        break;
      }
    }
    const float iscale = -127.0f / max;
    const __m512 vs = _mm512_set1_ps(iscale);
    for (int v = 0; v < 16; ++v) {
      // nearest_int is nearbyint (the current rounding mode: to nearest even) = vcvtps2dq; then
      // min(127, q) and the int8 cast keep the low byte, as the reference's casts do.
      __m512i q = _mm512_cvtps_epi32(_mm512_mul_ps(vs, _mm512_loadu_ps(x + 16 * v)));
      q = _mm512_min_epi32(q, _mm512_set1_epi32(127));
      const __m128i q8 = _mm512_cvtepi32_epi8(q);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(blk.qs + 16 * v), q8);
      blk.bsums[v] = static_cast<int16_t>(_mm512_reduce_add_epi32(_mm512_cvtepi8_epi32(q8)));
    }
    blk.d = 1 / iscale;
  }
}

void quantize_row_f16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 m = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    // vcvtps2ph rounds to nearest even and quiets NaNs keeping their top payload bits, as
    // quant::f32_to_fp16 does.
    const __m256i h = _mm512_cvtps_ph(_mm512_maskz_loadu_ps(m, x + i),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm256_mask_storeu_epi16(out + i, m, h);
  }
}

// Integer rounding as quant::f32_to_bf16 (not vcvtneps2bf16, which flushes subnormals).
void quantize_row_bf16(const float* x, void* y, int64_t n) {
  auto* out = static_cast<uint16_t*>(y);
  for (int64_t i = 0; i < n; i += 16) {
    const int64_t left = n - i;
    const __mmask16 m = left >= 16 ? 0xFFFF : static_cast<__mmask16>((1u << left) - 1);
    const __m512i b = _mm512_castps_si512(_mm512_maskz_loadu_ps(m, x + i));
    const __m512i hi = _mm512_srli_epi32(b, 16);
    const __m512i rounded = _mm512_srli_epi32(
        _mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff),
                                             _mm512_and_si512(hi, _mm512_set1_epi32(1)))),
        16);
    const __mmask16 nan = _mm512_cmpgt_epu32_mask(
        _mm512_and_si512(b, _mm512_set1_epi32(0x7fffffff)), _mm512_set1_epi32(0x7f800000));
    const __m512i r = _mm512_mask_or_epi32(rounded, nan, hi, _mm512_set1_epi32(64));
    _mm256_mask_storeu_epi16(out + i, m, _mm512_cvtepi32_epi16(r));
  }
}

}  // namespace ktx::kernels::cpu::avx512
