// AVX-512 VNNI GEMM kernels (gemm.h) for the 32-element block quants Q4_0, Q5_0, Q8_0 and IQ4_NL ×
// Q8_0 activations and Q4_1, Q5_1 × Q8_1 activations, and the packers of their panels. Built with
// the avx512 tier's flags; internal linkage or namespace avx512 only.
//
// The reference (and the GEMV kernel, legacy_avx512.cpp) forms one float term per 32-element
// block, float(isum) * (dx * dy) (+ mx * sy for the types with a minimum), and adds the terms. The
// GEMV kernel keeps 16 blocks in the 16 lanes of a float accumulator, lane i holding block
// kBlockOfLane[i] of each group of 16. Here a K-step (64 bytes) holds 4 bytes of each of those 16
// blocks, in the same lane order:
//
//   K-step k (0..7), dword lane l, byte i  <->  element 4k + i of block 16g + kBlockOfLane[l]
//
// so 8 vpdpbusd per (row, token) leave each block's integer sum in its own lane, with no
// horizontal adds; the term and the accumulation are then the GEMV kernel's, lane for lane, and
// the results are bit-identical to it. The weights get into that order by a 4 x 4 dword transpose
// within 128-bit lanes of 16 blocks, once per row and group, shared by every token.
//
// As in gemm_kquants_avx512.cpp the panels hold y + 128 and the weights their signed value q, and
// each row starts its tokens at -128 · Σq per block.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/gemm.h"
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

constexpr int kGroup = 16;  // blocks per group: one lane each
constexpr int kTileTokens = static_cast<int>(kGemmTokens);

// ---- the Q8_0 panel: one group of 16 blocks of 8 tokens -------------------------------------
//   qs  [token t][K-step k][64]: byte 4l + i = y_t[16g + kBlockOfLane[l]].qs[4k + i] + 128
//   dy  [token t][16 floats]: lane l = that block's d
// and the Q8_1 panel the same, then
//   sy  [token t][16 floats]: lane l = that block's s (d · Σqs, as the block stores it)
// Blocks past the row's end and tokens past the real count are zeros (y = 0, d = 0, s = 0).
constexpr size_t kQsBytes = static_cast<size_t>(kTileTokens) * 8 * 64;
constexpr size_t kDyOffset = kQsBytes;
constexpr size_t kSyOffset = kDyOffset + static_cast<size_t>(kTileTokens) * 64;
constexpr size_t kGroupBytes = kSyOffset;                                              // 4608
constexpr size_t kGroupBytesQ8_1 = kSyOffset + static_cast<size_t>(kTileTokens) * 64;  // 5120
static_assert(kGroupBytes == kGemmPanelQ8_0Bytes, "gemm.h's size");
static_assert(kGroupBytesQ8_1 == kGemmPanelQ8_1Bytes, "gemm.h's size");

// Tokens (in panels) and rows per pass. A group of 4 panels is 18 KB and the float accumulators of
// 8 rows x 32 tokens 16 KB: about L1's size. Measured on Zen 4 (Q5_0, 2048 x 10944 x 512 tokens):
// 4 panels 177 GOP/s, 2 panels 145 (the unpacking, heavier for Q5_0, is shared by fewer tokens),
// 6 or 8 panels 165-170.
constexpr int kMaxPanels = 4;
// A last chunk of up to this many panels is taken whole rather than split (48 tokens, an expert's
// usual share of a 512-token prefill: 32 + 16 unpacked every row twice, 9% slower than 48 once).
constexpr int kMaxLastPanels = 6;
constexpr int kRows = 8;
static_assert(kRows % 2 == 0, "rows go in pairs");

// The lane order of legacy_avx512.cpp's reduce4: lane i holds block 4 (i % 4) + i / 4.
constexpr int kBlockOfLane[kGroup] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};

inline __m512i load64(const void* p) { return _mm512_loadu_si512(p); }
inline __m128i load16(const uint8_t* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}

// 16 bytes at `offset` of blocks 4j..4j+3, one block per 128-bit lane; blocks at or past `count`
// are zeros and are not read (masked loads do not fault).
template <typename Block>
inline __m512i four_blocks(const Block* b, int count, int j, size_t offset) {
  const auto* p = reinterpret_cast<const uint8_t*>(b + 4 * j) + offset;
  auto chunk = [&](int m) {
    const __mmask8 live = 4 * j + m < count ? 0xF : 0;
    return _mm_maskz_loadu_epi32(live, p + m * sizeof(Block));
  };
  __m512i z = _mm512_castsi128_si512(chunk(0));
  z = _mm512_inserti32x4(z, chunk(1), 1);
  z = _mm512_inserti32x4(z, chunk(2), 2);
  return _mm512_inserti32x4(z, chunk(3), 3);
}

// The 16-byte chunks at `offset` of 16 blocks -> r[k], lane l = dword k of block kBlockOfLane[l].
// Z_j's 128-bit lane m is block 4j + m; a 4 x 4 dword transpose within lanes puts it in lane
// 4m + j, which is kBlockOfLane's order.
template <typename Block>
inline void transpose_chunks(const Block* b, int count, size_t offset, __m512i r[4]) {
  const __m512i z0 = four_blocks(b, count, 0, offset), z1 = four_blocks(b, count, 1, offset);
  const __m512i z2 = four_blocks(b, count, 2, offset), z3 = four_blocks(b, count, 3, offset);
  const __m512i t0 = _mm512_unpacklo_epi32(z0, z1), t1 = _mm512_unpackhi_epi32(z0, z1);
  const __m512i t2 = _mm512_unpacklo_epi32(z2, z3), t3 = _mm512_unpackhi_epi32(z2, z3);
  r[0] = _mm512_unpacklo_epi64(t0, t2);
  r[1] = _mm512_unpackhi_epi64(t0, t2);
  r[2] = _mm512_unpacklo_epi64(t1, t3);
  r[3] = _mm512_unpackhi_epi64(t1, t3);
}

// The dword at `offset` of each of 16 blocks, in lane order; 0 for blocks at or past `count`.
template <typename Block>
inline __m512i gather_heads(const Block* b, int count, int offset) {
  const __m512i block = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  const __m512i index = _mm512_add_epi32(
      _mm512_mullo_epi32(block, _mm512_set1_epi32(static_cast<int>(sizeof(Block)))),
      _mm512_set1_epi32(offset));
  const __mmask16 live = _mm512_cmplt_epi32_mask(block, _mm512_set1_epi32(count));
  return _mm512_mask_i32gather_epi32(_mm512_setzero_si512(), live, index, b, 1);
}

// The f16 d at the start of each of 16 blocks as floats, in lane order (0 past `count`, as the
// GEMV kernel's masked loads give: such lanes add terms of +0); block_minimums: the f16 after it
// (Q4_1 / Q5_1's m, Q8_1's s).
template <typename Block>
inline __m512 block_scales(const Block* b, int count) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(gather_heads(b, count, 0)));
}
template <typename Block>
inline __m512 block_minimums(const Block* b, int count) {
  return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srli_epi32(gather_heads(b, count, 0), 16)));
}

// 4-bit codes: dword k of the 16 qs bytes holds elements 4k.. (low nibbles) and 16 + 4k..
// (high nibbles), i.e. K-steps k and k + 4.
inline void split_nibbles(const __m512i r[4], __m512i w[8]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    w[k] = _mm512_and_si512(r[k], m4);
    w[k + 4] = _mm512_and_si512(_mm512_srli_epi32(r[k], 4), m4);
  }
}

// The fifth bits of K-step k of Q5_0 / Q5_1 blocks (qh of 16 blocks in lane order, gather_heads):
// element 4k + i's bit is bit 4k + i of qh, in byte k / 2 at bit 4 (k % 2) + i. One mask bit per
// byte of the K-step's vector.
inline __mmask64 fifth_bits(__m512i qh, int k) {
  const char c = static_cast<char>(k / 2);
  const __m512i spread = _mm512_shuffle_epi8(
      qh, _mm512_broadcast_i32x4(_mm_setr_epi8(c, c, c, c, c + 4, c + 4, c + 4, c + 4, c + 8, c + 8,
                                               c + 8, c + 8, c + 12, c + 12, c + 12, c + 12)));
  const __m512i bits = _mm512_set1_epi32(k % 2 == 0 ? 0x08040201 : static_cast<int>(0x80402010u));
  return _mm512_test_epi8_mask(spread, bits);
}

// ---- weight formats: up to 16 blocks -> 8 K-steps of signed bytes ------------------------------
// Lanes of blocks at or past `count` may hold anything finite: their activations and d are 0.

// Q8_0 weights, and the activations' Q8_0 / Q8_1 blocks in the packers: 32 signed bytes at qs.
template <typename B>
struct Int8Format {
  using Block = B;
  static constexpr bool kHasMin = false;
  static void weights(const Block* b, int count, __m512i w[8]) {
    transpose_chunks(b, count, offsetof(Block, qs), w);
    transpose_chunks(b, count, offsetof(Block, qs) + 16, w + 4);
  }
};
using Q8_0Format = Int8Format<BlockQ8_0>;

struct Q4_0Format {
  using Block = BlockQ4_0;
  static constexpr bool kHasMin = false;
  static void weights(const Block* b, int count, __m512i w[8]) {
    __m512i r[4];
    transpose_chunks(b, count, offsetof(Block, qs), r);
    split_nibbles(r, w);
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_sub_epi8(w[k], _mm512_set1_epi8(8));
  }
};

struct Q5_0Format {
  using Block = BlockQ5_0;
  static constexpr bool kHasMin = false;
  static void weights(const Block* b, int count, __m512i w[8]) {
    __m512i r[4];
    transpose_chunks(b, count, offsetof(Block, qs), r);
    split_nibbles(r, w);
    // Where the fifth bit is clear the code is the nibble - 16, where set the nibble itself.
    const __m512i qh = gather_heads(b, count, offsetof(Block, qh));
    // Unrolled, so that fifth_bits' controls are constants and w stays in registers: as a loop
    // (GCC 12, -O2) it built them at run time and kept w on the stack, and this function took a
    // third of the Q5_0 GEMM's time at 48 tokens.
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
      w[k] = _mm512_mask_sub_epi8(w[k], ~fifth_bits(qh, k), w[k], _mm512_set1_epi8(16));
    }
  }
};

struct IQ4_NLFormat {
  using Block = BlockIQ4_NL;
  static constexpr bool kHasMin = false;
  static void weights(const Block* b, int count, __m512i w[8]) {
    __m512i r[4];
    transpose_chunks(b, count, offsetof(Block, qs), r);
    split_nibbles(r, w);
    const __m512i levels = _mm512_broadcast_i32x4(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(quant::kIQ4NLValues)));
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) w[k] = _mm512_shuffle_epi8(levels, w[k]);
  }
};

// Unsigned codes plus a minimum: the nibble (Q4_1), or the nibble and the fifth bit as 16 (Q5_1).
struct Q4_1Format {
  using Block = BlockQ4_1;
  static constexpr bool kHasMin = true;
  static void weights(const Block* b, int count, __m512i w[8]) {
    __m512i r[4];
    transpose_chunks(b, count, offsetof(Block, qs), r);
    split_nibbles(r, w);
  }
};

struct Q5_1Format {
  using Block = BlockQ5_1;
  static constexpr bool kHasMin = true;
  static void weights(const Block* b, int count, __m512i w[8]) {
    __m512i r[4];
    transpose_chunks(b, count, offsetof(Block, qs), r);
    split_nibbles(r, w);
    // Where the fifth bit is set the code is the nibble + 16.
    const __m512i qh = gather_heads(b, count, offsetof(Block, qh));
#pragma GCC unroll 8  // as Q5_0's
    for (int k = 0; k < 8; ++k) {
      w[k] = _mm512_mask_add_epi8(w[k], fifth_bits(qh, k), w[k], _mm512_set1_epi8(16));
    }
  }
};

// ---- the tile: 2 rows × 4 tokens per step, rows' weights in registers --------------------------

// One group of rows a and b (unpacked: wa, wb) against `tokens` tokens (a multiple of 4) starting
// at token t0 of the panels: their terms are added to acc_a[t], acc_b[t]. Each activation load
// feeds both rows (one 64-byte load per two vpdpbusd: loads, not multiply-adds, limit these
// kernels), and the 16 unpacked weight vectors stay in registers for every token.
// The first group sets the accumulators instead (the GEMV kernel's 0 + term: +0 for a term of -0),
// so that they need no zeroing pass.
template <bool kFirst, bool kHasMin>
inline void tokens_of_group(const __m512i wa[8], const __m512i wb[8], __m512i start_a,
                            __m512i start_b, __m512 dx_a, __m512 dx_b, __m512 mx_a, __m512 mx_b,
                            const uint8_t* panels, size_t panel_bytes, size_t group_offset,
                            int tokens, __m512* acc_a, __m512* acc_b) {
  constexpr int kT = 4;
  for (int t0 = 0; t0 < tokens; t0 += kT) {
    const uint8_t* group =
        panels + static_cast<size_t>(t0 / kTileTokens) * panel_bytes + group_offset;
    const int tp = t0 % kTileTokens;  // the first token's place in its panel
    __m512i ia[kT], ib[kT];
#pragma GCC unroll 4
    for (int t = 0; t < kT; ++t) {
      ia[t] = start_a;
      ib[t] = start_b;
    }
#pragma GCC unroll 8
    for (int k = 0; k < 8; ++k) {
#pragma GCC unroll 4
      for (int t = 0; t < kT; ++t) {
        const __m512i y = load64(group + 512 * (tp + t) + 64 * k);
        ia[t] = _mm512_dpbusd_epi32(ia[t], y, wa[k]);
        ib[t] = _mm512_dpbusd_epi32(ib[t], y, wb[k]);
      }
    }
#pragma GCC unroll 4
    for (int t = 0; t < kT; ++t) {
      const __m512 dy = _mm512_loadu_ps(group + kDyOffset + 64 * (tp + t));
      // The GEMV kernel's term, rounding for rounding: isum * (dx * dy) [+ mx * sy].
      __m512 ta = _mm512_mul_ps(_mm512_cvtepi32_ps(ia[t]), _mm512_mul_ps(dx_a, dy));
      __m512 tb = _mm512_mul_ps(_mm512_cvtepi32_ps(ib[t]), _mm512_mul_ps(dx_b, dy));
      if constexpr (kHasMin) {
        const __m512 sy = _mm512_loadu_ps(group + kSyOffset + 64 * (tp + t));
        ta = _mm512_add_ps(ta, _mm512_mul_ps(mx_a, sy));
        tb = _mm512_add_ps(tb, _mm512_mul_ps(mx_b, sy));
      }
      const __m512 base_a = kFirst ? _mm512_setzero_ps() : acc_a[t0 + t];
      const __m512 base_b = kFirst ? _mm512_setzero_ps() : acc_b[t0 + t];
      acc_a[t0 + t] = _mm512_add_ps(base_a, ta);
      acc_b[t0 + t] = _mm512_add_ps(base_b, tb);
    }
  }
}

// The sums of 16 float vectors v[0..15], lane j = _mm512_reduce_add_ps(v[j]) bit for bit: the same
// pairings ((0+8) + (4+12)) + ((2+10) + (6+14)) + the odd lanes' in the same shape, done for 16
// vectors at once with shuffles (a reduction per vector cost ~9 instructions and a scalar store
// per output, a tenth of the whole kernel).
inline __m512 reduce16(const __m512 v[16]) {
  auto add_halves = [](__m512 a, __m512 b) {  // lanes i + (i + 8) of a, then of b
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  };
  auto add_quarters = [](__m512 a, __m512 b) {  // then (i) + (i + 4)
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x88), _mm512_shuffle_f32x4(a, b, 0xDD));
  };
  __m512 h[8], q[4];
  // Vector j must sit at position 4 (j % 4) + j / 4 for lane j to come out as its sum.
  constexpr int kAt[16] = {0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15};
  // Unrolled, so that kAt is resolved at compile time and v stays in registers (rolled, GCC 12
  // indexed a stack copy of v through the table: a tenth of the Q8_0 GEMM's time on Emerald
  // Rapids).
#pragma GCC unroll 8
  for (int i = 0; i < 8; ++i) h[i] = add_halves(v[kAt[2 * i]], v[kAt[2 * i + 1]]);
#pragma GCC unroll 4
  for (int i = 0; i < 4; ++i) q[i] = add_quarters(h[2 * i], h[2 * i + 1]);
  // Within 128-bit lanes: (0) + (2), (1) + (3), then the two results.
  auto add_pairs = [](__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x44), _mm512_shuffle_ps(a, b, 0xEE));
  };
  auto add_neighbours = [](__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_ps(a, b, 0x88), _mm512_shuffle_ps(a, b, 0xDD));
  };
  return add_neighbours(add_pairs(q[0], q[1]), add_pairs(q[2], q[3]));
}

// Prefetches `count` blocks into L1. The kernel walks 8 rows side by side, one group each, too many
// short streams for the hardware prefetchers: from memory (an expert's weights) it ran 20% slower
// without this. Inline asm: GCC 12 drops __builtin_prefetch from unrolled loops.
template <typename Block>
inline void prefetch_blocks(const Block* b, int64_t count) {
  const char* p = reinterpret_cast<const char*>(b);
  const size_t bytes = static_cast<size_t>(count) * sizeof(Block);
  for (size_t off = 0; off < bytes; off += 64) __asm__ volatile("prefetcht0 %0" : : "m"(p[off]));
}

// One row's group unpacked, with what its tokens start from.
struct GroupRow {
  __m512i w[8];
  __m512i start;  // -128 · Σq per block
  __m512 dx;
  __m512 mx;  // the minimums (types with one), else unused
};

template <typename F>
inline void unpack_group(const typename F::Block* blocks, int count, GroupRow& g) {
  const __m512i bias = _mm512_set1_epi8(static_cast<char>(0x80));  // 128, unsigned
  F::weights(blocks, count, g.w);
  // Two chains: a chain of 8 vpdpbusd delayed every group.
  __m512i c0 = _mm512_setzero_si512(), c1 = _mm512_setzero_si512();
  for (int k = 0; k < 8; k += 2) {
    c0 = _mm512_dpbusd_epi32(c0, bias, g.w[k]);
    c1 = _mm512_dpbusd_epi32(c1, bias, g.w[k + 1]);
  }
  g.start = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_add_epi32(c0, c1));
  g.dx = block_scales(blocks, count);
  if constexpr (F::kHasMin) g.mx = block_minimums(blocks, count);
}

template <typename F>
void gemm_legacy(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels,
                 int64_t tokens, float* out, size_t ldo) {
  using Block = typename F::Block;
  constexpr size_t kPanelGroup = F::kHasMin ? kGroupBytesQ8_1 : kGroupBytes;
  const int64_t nb = n / 32;
  const size_t panel_bytes = static_cast<size_t>((nb + kGroup - 1) / kGroup) * kPanelGroup;
  const auto* base = static_cast<const uint8_t*>(x);
  const auto* pbase = static_cast<const uint8_t*>(panels);
  auto row = [&](int64_t r) {
    return reinterpret_cast<const Block*>(base + static_cast<size_t>(r) * x_stride);
  };
  // Group outer, rows inner: one group of a chunk's panels stays in L1 while kRows rows pass over
  // it, with the float accumulators of kRows x chunk (row, token) pairs.
  constexpr int kChunk = kMaxPanels * kTileTokens, kLastChunk = kMaxLastPanels * kTileTokens;
  __m512 acc[kRows][kLastChunk];
  for (int64_t t0 = 0; t0 < tokens;) {
    const int64_t left = tokens - t0;
    const int nt = static_cast<int>(left <= kLastChunk ? left : kChunk);
    const int nt4 = (nt + 3) & ~3;  // whole tiles of 4: padded tokens are zeros in the panels
    const uint8_t* pp = pbase + static_cast<size_t>(t0 / kTileTokens) * panel_bytes;
    for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
      // Rows past the matrix's end are reduced with the others (and not stored): give them zeros.
      for (int r = (nr + 1) & ~1; r < kRows; ++r)
        for (int t = 0; t < nt4; ++t) acc[r][t] = _mm512_setzero_ps();
      for (int64_t g = 0; g * kGroup < nb; ++g) {
        const int count = static_cast<int>(std::min<int64_t>(kGroup, nb - g * kGroup));
        for (int r = 0; r < nr; r += 2) {
          const int rb = r + 1 < nr ? r + 1 : r;  // an odd last row pairs with itself
          // The same rows' next group, or after the last group the next block's first rows.
          if ((g + 1) * kGroup < nb) {
            const int64_t next = std::min<int64_t>(kGroup, nb - (g + 1) * kGroup);
            prefetch_blocks(row(r0 + r) + (g + 1) * kGroup, next);
            prefetch_blocks(row(r0 + rb) + (g + 1) * kGroup, next);
          } else if (r0 + kRows + r + 1 < rows) {
            prefetch_blocks(row(r0 + kRows + r), std::min<int64_t>(kGroup, nb));
            prefetch_blocks(row(r0 + kRows + r + 1), std::min<int64_t>(kGroup, nb));
          }
          GroupRow a, b;
          unpack_group<F>(row(r0 + r) + g * kGroup, count, a);
          unpack_group<F>(row(r0 + rb) + g * kGroup, count, b);
          // acc[r + 1] exists (r is even, kRows even): for a lone last row it takes row b's
          // duplicate sums, which are never read.
          if (g == 0) {
            tokens_of_group<true, F::kHasMin>(a.w, b.w, a.start, b.start, a.dx, b.dx, a.mx, b.mx,
                                              pp, panel_bytes, 0, nt4, acc[r], acc[r + 1]);
          } else {
            tokens_of_group<false, F::kHasMin>(
                a.w, b.w, a.start, b.start, a.dx, b.dx, a.mx, b.mx, pp, panel_bytes,
                static_cast<size_t>(g) * kPanelGroup, nt4, acc[r], acc[r + 1]);
          }
        }
      }
      // Two tokens' sums of the block's rows per reduction: lanes 0..7 token t, 8..15 token t + 1.
      // Rows past nr hold leftovers; each output lane depends on its own vector only.
      static_assert(kRows == 8, "reduce16 takes 8 rows x 2 tokens");
      const __mmask16 row_mask = static_cast<__mmask16>((1u << nr) - 1);
      for (int t = 0; t < nt; t += 2) {
        __m512 v[16];
#pragma GCC unroll 8
        for (int r = 0; r < kRows; ++r) {
          v[r] = acc[r][t];
          v[kRows + r] = acc[r][t + 1];  // t + 1 < nt4 <= kLastChunk: inside the array
        }
        const __m512 sums = reduce16(v);
        float* o = out + static_cast<size_t>(t0 + t) * ldo + static_cast<size_t>(r0);
        _mm512_mask_storeu_ps(o, row_mask, sums);
        if (t + 1 < nt) {
          _mm512_mask_storeu_ps(o + ldo - kRows, static_cast<__mmask16>(row_mask << kRows), sums);
        }
      }
    }
    t0 += nt;
  }
}

// ---- the Q8_0 and Q8_1 packers ------------------------------------------------------------------

// Q8_1 blocks differ from Q8_0 ones by their s after d; their qs transposes the same way.
template <typename Block>
void pack_panel(int64_t n, const void* const* y, int64_t count, void* panel) {
  using F = Int8Format<Block>;
  constexpr bool kWithS = std::is_same_v<Block, BlockQ8_1>;
  constexpr size_t kBytes = kWithS ? kGroupBytesQ8_1 : kGroupBytes;
  const int64_t nb = n / 32;
  auto* out = static_cast<uint8_t*>(panel);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t g = 0; g * kGroup < nb; ++g) {
    uint8_t* p = out + static_cast<size_t>(g) * kBytes;
    const int64_t blocks = std::min<int64_t>(kGroup, nb - g * kGroup);
    for (int t = 0; t < kTileTokens; ++t) {
      if (t >= count) {
        std::memset(p + 512 * t, 0x80, 512);  // y = 0
        std::memset(p + kDyOffset + 64 * t, 0, 64);
        if constexpr (kWithS) std::memset(p + kSyOffset + 64 * t, 0, 64);
        continue;
      }
      // The activations' blocks have the layout of Q8_0 weights: the same transpose. Blocks past
      // the row's end come out as zeros: y = 0, d = 0 (and s = 0).
      const Block* src = static_cast<const Block*>(y[t]) + g * kGroup;
      const int live = static_cast<int>(blocks);
      __m512i q[8];
      F::weights(src, live, q);
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        _mm512_storeu_si512(p + 512 * t + 64 * k, _mm512_xor_si512(q[k], flip));
      _mm512_storeu_ps(p + kDyOffset + 64 * t, block_scales(src, live));
      if constexpr (kWithS) _mm512_storeu_ps(p + kSyOffset + 64 * t, block_minimums(src, live));
    }
  }
}

}  // namespace

void gemm_pack_q8_0(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_panel<BlockQ8_0>(n, y, count, panel);
}

void gemm_pack_q8_1(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_panel<BlockQ8_1>(n, y, count, panel);
}

KTX_DEFINE_GEMM_KERNEL(gemm_q8_0, gemm_legacy<Q8_0Format>)
KTX_DEFINE_GEMM_KERNEL(gemm_q4_0, gemm_legacy<Q4_0Format>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_0, gemm_legacy<Q5_0Format>)
KTX_DEFINE_GEMM_KERNEL(gemm_iq4_nl, gemm_legacy<IQ4_NLFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_q4_1, gemm_legacy<Q4_1Format>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_1, gemm_legacy<Q5_1Format>)

}  // namespace ktx::kernels::cpu::avx512
