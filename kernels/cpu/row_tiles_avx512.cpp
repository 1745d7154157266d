// AVX-512 VNNI dot products of row tiles (quant/row_tiles.h) with one activation row: 16 weight
// rows per tile, one row per 32-bit lane. A vpdpbusd takes 4 codes of each row against the same 4
// activations (a 4-byte broadcast from memory, which costs a load and no shuffle), so a block's
// integer sum builds up in its row's lane; the reference's float steps then run once per block
// for all 16 rows. No step moves data across lanes: on Zen 4 the file-layout kernels are bound by
// exactly those moves (the shuffle ports), these by the vpdpbusd port. Q4_K, Q5_0 and Q8_0 take
// two tiles at a time, so that each activation broadcast (a load) serves 32 rows.
//
// Every lane performs the reference's operations in its order (quant::vec_dot_q4_K_q8_K,
// vec_dot_q6_K_q8_K, vec_dot_q5_0_q8_0: integer sums, then float(isum) * (d * yd) ... added block
// after block), so each row's result is the reference's bit for bit. Built with
// -ffp-contract=off.
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

#include "kernels/cpu/tile_units_avx512.inc"

using quant::BlockQ8_0;
using quant::BlockQ8_K;
using quant::kQK_K;

constexpr size_t kQ4KUnit = 16 * sizeof(quant::BlockQ4_K);
constexpr size_t kQ6KUnit = 16 * sizeof(quant::BlockQ6_K);
constexpr size_t kQ5_0Unit = 16 * sizeof(quant::BlockQ5_0);
constexpr size_t kQ8_0Unit = 16 * sizeof(quant::BlockQ8_0);

// The 4 activation bytes at p in every lane.
inline __m512i bcast4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

inline __m512i load64(const uint8_t* p) { return _mm512_loadu_si512(p); }

// 16 f16 values at p as floats.
inline __m512 halves16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Unit i (super-block i) of T tiles: the reference's isum and msum per lane, tile by tile. Each
// activation broadcast serves the T tiles, and each chunk is loaded once for its two masks (GCC
// otherwise folds the load into both vpandd: two loads of the same 64 bytes). On Emerald Rapids
// the kernel looks bound by its loads (a unit: 64 chunk loads, 64 broadcasts, 36 prefetches;
// shorter dependency chains made it slower, fewer loads faster). In a throwaway harness (256 rows
// of 2048 in L2, one thread) the one load took it from 36.5 to 41.5 GB/s and two tiles to 43.4;
// streaming many matrices from memory, two tiles against the old kernel: 9.2 -> 10.8 GB/s on one
// thread, 20.3 -> 22.8 on two (two tiles also read two streams at once). Whole decode steps showed
// no difference this VM could resolve: docs/PERF.md, "Row tiles two at a time".
template <int T>
inline void q4_K_units(const uint8_t* const (&u)[T], const BlockQ8_K& y, __m512i (&isum)[T],
                       __m512i (&msum)[T]) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i mf0 = _mm512_set1_epi8(static_cast<char>(0xF0));
  // Row r's scale words (row_tiles.h) in lane r.
  __m512i scale[T][8];
#pragma GCC unroll 2
  for (int t = 0; t < T; ++t) {
    q4_K_tile_scales(load64(u[t] + 64), load64(u[t] + 128), load64(u[t] + 192), scale[t]);
    isum[t] = _mm512_setzero_si512();
  }
#pragma GCC unroll 8
  for (int s = 0; s < 8; ++s) {
    // Sub-block s: elements 32s..32s+31 are chunks 4s..4s+3. The high nibbles stay in place
    // (16 times their value): their sum is exactly 16 times theirs, shifted back below.
    __m512i s0[T], s1[T];
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int k = 0; k < 4; ++k) {
      const int ch = 4 * s + k;
      const __m512i y_lo = bcast4(y.qs + 8 * ch), y_hi = bcast4(y.qs + 8 * ch + 4);
#pragma GCC unroll 2
      for (int t = 0; t < T; ++t) {
        __m512i q = load64(u[t] + 256 + 64 * ch);
        __asm__("" : "+v"(q));  // in a register: one load for both masks
        s0[t] = _mm512_dpbusd_epi32(s0[t], _mm512_and_si512(q, m4), y_lo);
        s1[t] = _mm512_dpbusd_epi32(s1[t], _mm512_and_si512(q, mf0), y_hi);
      }
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) {
      const __m512i qsum = _mm512_add_epi32(s0[t], _mm512_srai_epi32(s1[t], 4));
      isum[t] = _mm512_add_epi32(isum[t], _mm512_mullo_epi32(qsum, scale[t][s]));
    }
  }
  // msum = Σ_j min_j * q8_K_sum32(j): pairs of mins against pairs of sums, 16 bits each (a sum
  // of 32 int8 fits).
  __m512i sums[4];
#pragma GCC unroll 4
  for (int p = 0; p < 4; ++p) {
    const int32_t even = y.bsums[4 * p] + y.bsums[4 * p + 1];
    const int32_t odd = y.bsums[4 * p + 2] + y.bsums[4 * p + 3];
    sums[p] = _mm512_set1_epi32(static_cast<int32_t>((static_cast<uint32_t>(even) & 0xFFFF) |
                                                     (static_cast<uint32_t>(odd) << 16)));
  }
#pragma GCC unroll 2
  for (int t = 0; t < T; ++t) {
    __m512i mins[4];
    q4_K_tile_min_pairs(load64(u[t] + 64), load64(u[t] + 128), mins);
    msum[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int p = 0; p < 4; ++p) msum[t] = _mm512_dpwssd_epi32(msum[t], mins[p], sums[p]);
  }
}

// One Q6_K unit (super-block i of 16 rows): the reference's isum per lane,
//   Σ_j scale_j · Σ_{e in sub-block j} (q_e - 32) · y_e
// with each sub-block's codes rebuilt as 6-bit bytes (low nibble | high 2 bits << 4), summed
// against y by vpdpbusd as unsigned, and 32 · Σ y (the block sum y.bsums[j]) taken back out:
// the same integers.
inline __m512i q6_K_unit(const uint8_t* u, const BlockQ8_K& y) {
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  const __m512i m6 = _mm512_set1_epi8(0x3F);
  // (q & 0x0F) | (h & ~0x0F) (0xCA: the bitwise select m4 ? q : h), then the top 2 bits
  // cleared: 6-bit codes.
  const auto code6 = [&](__m512i h, __m512i q) {
    return _mm512_and_si512(_mm512_ternarylogic_epi32(m4, q, h, 0xCA), m6);
  };
  __m512i isum = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (int j = 0; j < 16; ++j) {
    const uint8_t* group = u + 288 + 192 * j;  // chunks 2j and 2j + 1, the high bits
    const __m512i q0 = load64(group);
    const __m512i q1 = load64(group + 64);
    const __m512i h = load64(group + 128);
    // Elements 16j + 4m + k for m = 0..3: the low nibble of q0, its high nibble, the low and
    // high nibbles of q1; their high bits, bits 2m of h, moved to bits 4..5 (16-bit shifts: what
    // crosses into the neighbouring byte lands in bits the masks clear).
    const __m512i w0 = code6(_mm512_slli_epi16(h, 4), q0);
    const __m512i w1 = code6(_mm512_slli_epi16(h, 2), _mm512_srli_epi16(q0, 4));
    const __m512i w2 = code6(h, q1);
    const __m512i w3 = code6(_mm512_srli_epi16(h, 2), _mm512_srli_epi16(q1, 4));
    __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w0, bcast4(y.qs + 16 * j));
    __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w1, bcast4(y.qs + 16 * j + 4));
    s0 = _mm512_dpbusd_epi32(s0, w2, bcast4(y.qs + 16 * j + 8));
    s1 = _mm512_dpbusd_epi32(s1, w3, bcast4(y.qs + 16 * j + 12));
    const __m512i qsum =
        _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(32 * y.bsums[j]));
    const __m512i scale =
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(u + 32 + 16 * j)));
    isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(qsum, scale));
  }
  return isum;
}

// Block b of T tiles of Q5_0: the reference's isum per lane, tile by tile, each activation
// broadcast serving the T tiles (q4_K_units). ysum: Σ y.qs.
struct Q5_0Units {
  template <int T>
  void operator()(const uint8_t* const (&u)[T], const BlockQ8_0& y, int32_t ysum,
                  __m512i (&isum)[T]) const {
    __m512i s0[T], s1[T];
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int ch = 0; ch < 4; ++ch) {
      const __m512i y_lo = bcast4(y.qs + 8 * ch), y_hi = bcast4(y.qs + 8 * ch + 4);
#pragma GCC unroll 2
      for (int t = 0; t < T; ++t) {
        __m512i lo, hi;
        q5_0_tile_codes(u[t], ch, lo, hi);
        s0[t] = _mm512_dpbusd_epi32(s0[t], lo, y_lo);
        s1[t] = _mm512_dpbusd_epi32(s1[t], hi, y_hi);
      }
    }
    // The codes were the stored 5-bit values; the reference's are those minus 16.
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) {
      isum[t] = _mm512_sub_epi32(_mm512_add_epi32(s0[t], s1[t]), _mm512_set1_epi32(16 * ysum));
    }
  }
};

// Block b of T tiles of Q8_0, likewise. The signed weights go in as unsigned (+128); ysum: Σ y.qs,
// to take the 128s back out.
struct Q8_0Units {
  template <int T>
  void operator()(const uint8_t* const (&u)[T], const BlockQ8_0& y, int32_t ysum,
                  __m512i (&isum)[T]) const {
    const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
    __m512i s0[T], s1[T];
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) s0[t] = s1[t] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int ch = 0; ch < 8; ch += 2) {
      const __m512i y0 = bcast4(y.qs + 4 * ch), y1 = bcast4(y.qs + 4 * (ch + 1));
#pragma GCC unroll 2
      for (int t = 0; t < T; ++t) {
        s0[t] = _mm512_dpbusd_epi32(s0[t], _mm512_xor_si512(load64(u[t] + 32 + 64 * ch), flip), y0);
        s1[t] = _mm512_dpbusd_epi32(s1[t],
                                    _mm512_xor_si512(load64(u[t] + 32 + 64 * (ch + 1)), flip), y1);
      }
    }
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) {
      isum[t] = _mm512_sub_epi32(_mm512_add_epi32(s0[t], s1[t]), _mm512_set1_epi32(128 * ysum));
    }
  }
};

float half_to_float(uint16_t h) { return _cvtsh_ss(h); }

// Σ y.qs of each of nb Q8_0 activation blocks, for the offset corrections: once per call.
class BlockSums {
 public:
  BlockSums(const BlockQ8_0* y, int64_t nb) {
    if (nb > kStack) {
      heap_.resize(static_cast<size_t>(nb));
      sums_ = heap_.data();
    }
    for (int64_t b = 0; b < nb; ++b) {
      int32_t s = 0;
      for (int j = 0; j < quant::kQK8_0; ++j) s += y[b].qs[j];
      sums_[b] = s;
    }
  }
  int32_t operator[](int64_t b) const { return sums_[b]; }

 private:
  static constexpr int64_t kStack = 1024;  // rows of up to 32768 elements: on the stack
  int32_t stack_[kStack];
  std::vector<int32_t> heap_;
  int32_t* sums_ = stack_;
};

// How far ahead of the unit being read its lines are fetched into L2. A tile kernel computes
// between its loads, so fewer of them are in flight than in a plain read loop, and the hardware
// prefetchers alone keep too few lines coming: on Emerald Rapids one core streamed Q4_K tiles at
// 9-12 GB/s, against 13.5-14.5 for the read probe. Fetching every line 2 KiB ahead took a decode
// step's expert time down by ~11% (docs/PERF.md, "Tile prefetch"); 1 and 4 KiB did about as
// well, every other line or every fourth did not. On Zen 4, 1-16 KiB ahead changed nothing
// measurable.
constexpr size_t kPrefetchAhead = 2048;

// Every line of the kUnit bytes at p + kPrefetchAhead into L2. Inline asm: GCC 12 drops
// __builtin_prefetch from fully unrolled loops. Past the end of the tiles it fetches lines no one
// reads (a prefetch never faults).
template <size_t kUnit>
inline void prefetch_unit(const uint8_t* p) {
  const uint8_t* ahead = p + kPrefetchAhead;
#pragma GCC unroll 64
  for (size_t off = 0; off < kUnit; off += 64)
    __asm__ volatile("prefetcht1 %0" : : "m"(ahead[off]));
}

// T consecutive tiles' 16 rows each: acc += term for the `units` units of each row in order, as
// the references add their block terms. terms(u, i, out) gives unit i's term of each tile, u[t]
// its bytes in tile t (fetched ahead first).
template <int T, size_t kUnit, typename TermsFn>
void tile_group(int64_t units, const uint8_t* tiles, size_t tile_stride, float* out,
                TermsFn terms) {
  __m512 acc[T];
#pragma GCC unroll 2
  for (int t = 0; t < T; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t i = 0; i < units; ++i) {
    const uint8_t* u[T];
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) {
      u[t] = tiles + static_cast<size_t>(t) * tile_stride + static_cast<size_t>(i) * kUnit;
      prefetch_unit<kUnit>(u[t]);
    }
    __m512 term[T];
    terms(u, i, term);
#pragma GCC unroll 2
    for (int t = 0; t < T; ++t) acc[t] = _mm512_add_ps(acc[t], term[t]);
  }
#pragma GCC unroll 2
  for (int t = 0; t < T; ++t) _mm512_storeu_ps(out + 16 * t, acc[t]);
}

// Every tile: two at a time with kPairs (each activation load then serves both), the last one
// alone. `terms` is generic over the number of tiles T.
template <size_t kUnit, bool kPairs, typename TermsFn>
void all_tiles(int64_t units, const void* tiles, size_t tile_stride, int64_t n_tiles, float* out,
               TermsFn terms) {
  const auto* base = static_cast<const uint8_t*>(tiles);
  int64_t t = 0;
  if constexpr (kPairs) {
    for (; t + 2 <= n_tiles; t += 2) {
      tile_group<2, kUnit>(units, base + static_cast<size_t>(t) * tile_stride, tile_stride,
                           out + 16 * t, terms);
    }
  }
  for (; t < n_tiles; ++t) {
    tile_group<1, kUnit>(units, base + static_cast<size_t>(t) * tile_stride, tile_stride,
                         out + 16 * t, terms);
  }
}

// The legacy formats' terms: float(isum) * (dx * dy), two tiles at a time.
template <size_t kUnit, typename Units>
void legacy_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles, const void* yv,
                  float* out, Units units) {
  const auto* y = static_cast<const BlockQ8_0*>(yv);
  const int64_t nb = n / quant::kQK8_0;
  const BlockSums ysum(y, nb);
  all_tiles<kUnit, /*kPairs=*/true>(
      nb, tiles, tile_stride, n_tiles, out,
      [&]<int T>(const uint8_t* const(&u)[T], int64_t b, __m512(&term)[T]) {
        __m512i isum[T];
        units.template operator()<T>(u, y[b], ysum[b], isum);
        const __m512 dy = _mm512_set1_ps(half_to_float(y[b].d));
#pragma GCC unroll 2
        for (int t = 0; t < T; ++t) {
          const __m512 dxdy = _mm512_mul_ps(halves16(u[t]), dy);
          term[t] = _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), dxdy);
        }
      });
}

}  // namespace

void vec_dot_q4_K_q8_K_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* yv, float* out) {
  const auto* y = static_cast<const BlockQ8_K*>(yv);
  all_tiles<kQ4KUnit, /*kPairs=*/true>(
      n / kQK_K, tiles, tile_stride, n_tiles, out,
      [&]<int T>(const uint8_t* const(&u)[T], int64_t i, __m512(&term)[T]) {
        __m512i isum[T], msum[T];
        q4_K_units<T>(u, y[i], isum, msum);
        const __m512 yd = _mm512_set1_ps(y[i].d);
#pragma GCC unroll 2
        for (int t = 0; t < T; ++t) {
          // float(isum) * (d * yd) - float(msum) * (dmin * yd).
          term[t] = _mm512_sub_ps(
              _mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(halves16(u[t]), yd)),
              _mm512_mul_ps(_mm512_cvtepi32_ps(msum[t]), _mm512_mul_ps(halves16(u[t] + 32), yd)));
        }
      });
}

void vec_dot_q6_K_q8_K_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* yv, float* out) {
  const auto* y = static_cast<const BlockQ8_K*>(yv);
  all_tiles<kQ6KUnit, /*kPairs=*/false>(
      n / kQK_K, tiles, tile_stride, n_tiles, out,
      [&]<int T>(const uint8_t* const(&u)[T], int64_t i, __m512(&term)[T]) {
#pragma GCC unroll 2
        for (int t = 0; t < T; ++t) {
          // float(isum) * (d * yd).
          const __m512 dyd = _mm512_mul_ps(halves16(u[t]), _mm512_set1_ps(y[i].d));
          term[t] = _mm512_mul_ps(_mm512_cvtepi32_ps(q6_K_unit(u[t], y[i])), dyd);
        }
      });
}

void vec_dot_q5_0_q8_0_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out) {
  legacy_tiles<kQ5_0Unit>(n, tiles, tile_stride, n_tiles, y, out, Q5_0Units{});
}

void vec_dot_q8_0_q8_0_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out) {
  legacy_tiles<kQ8_0Unit>(n, tiles, tile_stride, n_tiles, y, out, Q8_0Units{});
}

}  // namespace ktx::kernels::cpu::avx512
