// AVX-512 VNNI GEMMs over row tiles (quant/row_tiles.h): 16 weight rows in the lanes of a vector,
// as in the decode tile kernels (row_tiles_avx512.cpp), times one or two panels of 8 tokens. Each
// weight vector is unpacked once and multiplied with the 16 (or 8) tokens' activations (4-byte
// broadcasts from memory, which cost a load and no shuffle), so a block's integer sum builds up in
// its row's lane for every token, and nothing crosses lanes. The file-layout GEMMs
// (gemm_kquants_avx512.cpp, gemm_legacy_avx512.cpp) hold one row's block in a vector instead and
// must bring its lanes together once per block, row and token: for Q4_K that reduction costs nearly
// one operation for each vpdpbusd (docs/PERF.md, "The experts' GEMMs against their own ceiling").
//
// Every lane performs the reference's operations in its order (quant::vec_dot_q4_K_q8_K,
// vec_dot_q5_0_q8_0, vec_dot_q8_0_q8_0: integer sums, then float(isum) * (d * yd) ... added block
// after block from 0), so every output is the reference's dot bit for bit, the same as the tile
// GEMV's. Built with -ffp-contract=off.
//
// Panels (gemm.h's GemmPackFn, one layout per weight type: each holds what its kernel needs per
// token beside the quants, computed once per batch), 8 tokens each, tokens past the count zero:
//   Q4_K × Q8_K, per super-block (kQ4KPanelUnit bytes):
//     [0, 2048)     token t's 256 quants at 256 t
//     [2048, 2080)  token t's d (float) at 2048 + 4 t
//     [2080, 2208)  token t's sums of each two sub-blocks of 32 (for the mins), as vpdpwssd's
//                   pairs: dword 2080 + 16 t + 4 p = sum(sub-block 2p) | sum(sub-block 2p + 1) <<
//                   16
//     [2208, 2240)  zero
//   Q5_0 and Q8_0 × Q8_0, per block of 32 (kLegacyPanelUnit bytes):
//     [0, 256)      token t's 32 quants at 32 t
//     [256, 288)    token t's d (float) at 256 + 4 t
//     [288, 320)    token t's offset correction (int32) at 288 + 4 t: the kernels take the weights
//                   as unsigned codes (Q5_0's stored 5 bits, Q8_0's + 128), so the integer sum
//                   starts at -16 · Σ quants (Q5_0) or -128 · Σ quants (Q8_0)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

#include "kernels/cpu/tile_units_avx512.inc"

using quant::BlockQ8_0;
using quant::BlockQ8_K;
using quant::kQK8_0;
using quant::kQK_K;

constexpr int kTokens = static_cast<int>(kGemmTokens);
static_assert(kTokens == 8, "the panels hold 8 tokens");

constexpr size_t kQ4KUnit = 16 * sizeof(quant::BlockQ4_K);   // a tile's super-block
constexpr size_t kQ5_0Unit = 16 * sizeof(quant::BlockQ5_0);  // a tile's block
constexpr size_t kQ8_0Unit = 16 * sizeof(quant::BlockQ8_0);
constexpr size_t kQ4KPanelUnit = 2240;
constexpr size_t kLegacyPanelUnit = 320;
static_assert(kQ4KPanelUnit == kGemmTilesPanelQ8KBytes &&
                  kLegacyPanelUnit == kGemmTilesPanelQ8_0Bytes,
              "gemm.h's sizes");

inline __m512i load64(const uint8_t* p) { return _mm512_loadu_si512(p); }

// The 4 bytes at p in every lane: a broadcast load.
inline __m512i bcast4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// acc + vpdpbusd(w, the 4 bytes at p in every lane), the broadcast as the instruction's memory
// operand ({1to16}). Inline asm because GCC 12 emits a separate vpbroadcastd for the intrinsics,
// one more instruction per multiply-add: with them, one core in cache (64 rows × 48 tokens) ran
// Q4_K at 55% of the int8 peak, Q8_0 at 43% and Q5_0 at 40%, against 60%, 54-56% and 52% so.
inline __m512i dpbusd_bcast(__m512i acc, __m512i w, const uint8_t* p) {
  __asm__("vpdpbusd %2%{1to16%}, %1, %0"
          : "+v"(acc)
          : "v"(w), "m"(*reinterpret_cast<const int32_t*>(p)));
  return acc;
}

// How far ahead the block kernels fetch their tiles' lines: a block of 16 tokens computes in
// ~100 cycles, so the next block would come too late; ~2 KiB ahead (as the tile GEMVs) covers a
// memory latency. (The Q4_K kernel's unit is 2304 bytes and takes ~15 times as long: it fetches
// the next one.)
constexpr size_t kLegacyAhead = 2048;

// kLines cache lines from p on into L1 (a prefetch never faults: past the last tile it fetches
// lines no one reads).
template <int kLines>
inline void prefetch_lines(const uint8_t* p) {
#pragma GCC unroll 16
  for (int l = 0; l < kLines; ++l)
    _mm_prefetch(reinterpret_cast<const char*>(p + 64 * l), _MM_HINT_T0);
}

// A zero vector by the zero idiom (vpxord of a register with itself), which the renamer
// resolves without an execution port. For _mm512_setzero_si512() GCC copies a zero register
// (vmovdqa64) instead, and the Q4_K kernel, which starts two sums from zero per sub-block and
// token, ran at 43-46% of the int8 peak against 60% (one core, in cache).
inline __m512i zero_idiom() {
  __m512i z;
  __asm__("vpxord %0, %0, %0" : "=v"(z));
  return z;
}

inline __m512 bcastf(const uint8_t* p) {
  float v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_ps(v);
}

// 16 f16 values at p as floats.
inline __m512 halves16(const uint8_t* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}

// Up to two panels side by side: the kernels take 16 tokens a step where there are, so that
// each weight vector unpacked serves 16 tokens. The unpacking (shifts and masks) runs on the same
// two vector ports as vpdpbusd: per 8 tokens it is ~12% of the Q4_K kernel's operations.
template <int kPanels>
struct Panels {
  static constexpr int kN = kTokens * kPanels;
  const uint8_t* base[kPanels];
  // Byte `offset` of the panel that holds token t (the caller's offset includes the token's
  // place, t % 8, within the panel's unit).
  const uint8_t* unit(int t, size_t offset) const { return base[t / kTokens] + offset; }
};

// Every (tile, step of up to 2 panels) pair: body(tile, panels, acc) fills the step's tokens'
// results for the tile's 16 rows. The panels are the inner loop: a tile's bytes stay in L1/L2
// while every panel passes.
template <typename Body>
void for_tiles_and_panels(const void* tiles, size_t tile_stride, int64_t n_tiles,
                          const void* panels, size_t panel_bytes, int64_t tokens, float* out,
                          size_t ldo, Body body) {
  const auto* tile0 = static_cast<const uint8_t*>(tiles);
  const auto* panel0 = static_cast<const uint8_t*>(panels);
  auto store = [&](const __m512* acc, int64_t t0, int64_t count, int64_t i) {
    float* o = out + static_cast<size_t>(t0) * ldo + 16 * i;
    for (int64_t t = 0; t < count; ++t) _mm512_storeu_ps(o + static_cast<size_t>(t) * ldo, acc[t]);
  };
  for (int64_t i = 0; i < n_tiles; ++i) {
    const uint8_t* tile = tile0 + static_cast<size_t>(i) * tile_stride;
    int64_t t0 = 0;
    for (; t0 + kTokens < tokens; t0 += 2 * kTokens) {  // a second panel has tokens
      const uint8_t* p = panel0 + static_cast<size_t>(t0 / kTokens) * panel_bytes;
      __m512 acc[2 * kTokens];
      body(tile, Panels<2>{{p, p + panel_bytes}}, acc);
      store(acc, t0, std::min<int64_t>(2 * kTokens, tokens - t0), i);
    }
    if (t0 < tokens) {
      __m512 acc[kTokens];
      body(tile, Panels<1>{{panel0 + static_cast<size_t>(t0 / kTokens) * panel_bytes}}, acc);
      store(acc, t0, tokens - t0, i);
    }
  }
}

// One Q4_K tile times a step's panels, all super-blocks: acc[t] = row r · token t in lane r.
template <int kPanels>
void q4_K_tile_panels(int64_t nb, const uint8_t* tile, Panels<kPanels> panels,
                      __m512 (&acc)[Panels<kPanels>::kN]) {
  constexpr int kN = Panels<kPanels>::kN;
  const __m512i m4 = _mm512_set1_epi8(0x0F);
  for (int t = 0; t < kN; ++t) acc[t] = _mm512_setzero_ps();
  for (int64_t ib = 0; ib < nb; ++ib) {
    const uint8_t* u = tile + static_cast<size_t>(ib) * kQ4KUnit;
    const size_t yu = static_cast<size_t>(ib) * kQ4KPanelUnit;
    // Row r's scale words (row_tiles.h) in lane r.
    const __m512i a = load64(u + 64), b = load64(u + 128), c = load64(u + 192);
    const uint8_t* chunks = u + 256;
    // The 8 sub-blocks' scales, row r's in lane r, through memory: the sub-block loop below is
    // not unrolled (unrolled for 16 tokens it was ~14 KB of code, which the core could not
    // decode as fast as it ran: 44% of the int8 peak, against 60% so), so each iteration takes
    // its scale from here.
    alignas(64) __m512i scales[8];
    q4_K_tile_scales(a, b, c, scales);
    __m512i isum[kN];
    for (int t = 0; t < kN; ++t) isum[t] = _mm512_setzero_si512();
#pragma GCC unroll 1
    for (int s = 0; s < 8; ++s) {
      const __m512i scale = scales[s];
      // The next unit's lines (the next tile's first after the last unit) into L1, 5 of its 36
      // a sub-block: the first panel step over a tile reads it from memory, and the hardware
      // prefetchers alone left that step waiting for it (cold, 42% of the int8 peak at 48
      // tokens against 60% in cache).
      prefetch_lines<5>(u + kQ4KUnit + 320 * s);
      // Sub-block s: chunks 4s..4s+3; chunk ch's low nibbles are elements 8ch..8ch+3 of each
      // row, its high nibbles 8ch+4..8ch+7.
      __m512i lo[4], hi[4];
#pragma GCC unroll 4
      for (int k = 0; k < 4; ++k) {
        const __m512i q = load64(chunks + 64 * (4 * s + k));
        lo[k] = _mm512_and_si512(q, m4);
        hi[k] = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
      }
#pragma GCC unroll 16
      for (int t = 0; t < kN; ++t) {
        const uint8_t* yq = panels.unit(t, yu + 256 * (t % kTokens)) + 32 * s;
        __m512i s0 = dpbusd_bcast(zero_idiom(), lo[0], yq);
        __m512i s1 = dpbusd_bcast(zero_idiom(), hi[0], yq + 4);
#pragma GCC unroll 3
        for (int k = 1; k < 4; ++k) {
          s0 = dpbusd_bcast(s0, lo[k], yq + 8 * k);
          s1 = dpbusd_bcast(s1, hi[k], yq + 8 * k + 4);
        }
        // s0 and s1 are sums of 16 products of a 4-bit code and an int8: |s| <= 30720, so each
        // fits the low 16 bits of its lane, and vpdpwssd against the scale (< 64, high half 0)
        // adds exactly s · scale.
        isum[t] = _mm512_dpwssd_epi32(isum[t], s0, scale);
        isum[t] = _mm512_dpwssd_epi32(isum[t], s1, scale);
      }
    }
    // msum = Σ_j min_j · (sum of sub-block j's quants): pairs of mins against the panel's pairs
    // of sums, 16 bits each.
    __m512i mins[4];
    q4_K_tile_min_pairs(a, b, mins);
    const __m512 d = halves16(u), dmin = halves16(u + 32);
#pragma GCC unroll 16
    for (int t = 0; t < kN; ++t) {
      const uint8_t* pairs = panels.unit(t, yu + 2080 + 16 * (t % kTokens));
      __m512i msum = _mm512_dpwssd_epi32(zero_idiom(), mins[0], bcast4(pairs));
      msum = _mm512_dpwssd_epi32(msum, mins[1], bcast4(pairs + 4));
      msum = _mm512_dpwssd_epi32(msum, mins[2], bcast4(pairs + 8));
      msum = _mm512_dpwssd_epi32(msum, mins[3], bcast4(pairs + 12));
      const __m512 yd = bcastf(panels.unit(t, yu + 2048 + 4 * (t % kTokens)));
      // float(isum) * (d * yd) - float(msum) * (dmin * yd), added to the row's sum.
      const __m512 term =
          _mm512_sub_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(isum[t]), _mm512_mul_ps(d, yd)),
                        _mm512_mul_ps(_mm512_cvtepi32_ps(msum), _mm512_mul_ps(dmin, yd)));
      acc[t] = _mm512_add_ps(acc[t], term);
    }
  }
}

// The 32-element block formats, one block of a step's tokens from 8 vectors of unsigned codes
// (w[c]: elements 4c..4c+3 of each row, in the order of the activations): the integer sums
// start from the panel's correction, then acc[t] += float(isum) * (dx * dy[t]).
template <int kPanels>
inline void legacy_block(const __m512i (&w)[8], const uint8_t* u, Panels<kPanels> panels, size_t yu,
                         __m512 (&acc)[Panels<kPanels>::kN]) {
  const __m512 dx = halves16(u);
#pragma GCC unroll 16
  for (int t = 0; t < Panels<kPanels>::kN; ++t) {
    const int slot = t % kTokens;
    const uint8_t* yq = panels.unit(t, yu + 32 * slot);
    __m512i s = bcast4(panels.unit(t, yu + 288 + 4 * slot));
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) s = dpbusd_bcast(s, w[c], yq + 4 * c);
    const __m512 dxdy = _mm512_mul_ps(dx, bcastf(panels.unit(t, yu + 256 + 4 * slot)));
    acc[t] = _mm512_add_ps(acc[t], _mm512_mul_ps(_mm512_cvtepi32_ps(s), dxdy));
  }
}

template <int kPanels>
void q8_0_tile_panels(int64_t nb, const uint8_t* tile, Panels<kPanels> panels,
                      __m512 (&acc)[Panels<kPanels>::kN]) {
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (__m512& v : acc) v = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* u = tile + static_cast<size_t>(b) * kQ8_0Unit;
    prefetch_lines<kQ8_0Unit / 64>(u + kLegacyAhead);
    // Chunk c (row_tiles.h): elements 4c..4c+3 of each row, signed; + 128 as unsigned codes.
    __m512i w[8];
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) w[c] = _mm512_xor_si512(load64(u + 32 + 64 * c), flip);
    legacy_block(w, u, panels, static_cast<size_t>(b) * kLegacyPanelUnit, acc);
  }
}

template <int kPanels>
void q5_0_tile_panels(int64_t nb, const uint8_t* tile, Panels<kPanels> panels,
                      __m512 (&acc)[Panels<kPanels>::kN]) {
  for (__m512& v : acc) v = _mm512_setzero_ps();
  for (int64_t b = 0; b < nb; ++b) {
    const uint8_t* u = tile + static_cast<size_t>(b) * kQ5_0Unit;
    prefetch_lines<(kQ5_0Unit + 63) / 64>(u + kLegacyAhead);
    // w[c]: elements 4c..4c+3 of each row, the stored 5-bit codes (tile_units_avx512.inc).
    __m512i w[8];
#pragma GCC unroll 4
    for (int ch = 0; ch < 4; ++ch) q5_0_tile_codes(u, ch, w[2 * ch], w[2 * ch + 1]);
    legacy_block(w, u, panels, static_cast<size_t>(b) * kLegacyPanelUnit, acc);
  }
}

// The 32-element panels: quants, d as a float and the correction `offset` · Σ quants.
void pack_legacy(int64_t n, const void* const* yv, int64_t count, void* panel, int32_t offset) {
  const int64_t nb = n / kQK8_0;
  auto* out = static_cast<uint8_t*>(panel);
  std::memset(out, 0, static_cast<size_t>(nb) * kLegacyPanelUnit);
  for (int64_t t = 0; t < count; ++t) {
    const auto* y = static_cast<const BlockQ8_0*>(yv[t]);
    for (int64_t b = 0; b < nb; ++b) {
      uint8_t* unit = out + static_cast<size_t>(b) * kLegacyPanelUnit;
      std::memcpy(unit + 32 * t, y[b].qs, kQK8_0);
      const float d = _cvtsh_ss(y[b].d);
      int32_t sum = 0;
      for (int j = 0; j < kQK8_0; ++j) sum += y[b].qs[j];
      const int32_t correction = offset * sum;
      std::memcpy(unit + 256 + 4 * t, &d, 4);
      std::memcpy(unit + 288 + 4 * t, &correction, 4);
    }
  }
}

}  // namespace

void gemm_tiles_q4_K(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                     const void* panels, int64_t tokens, float* out, size_t ldo) {
  const int64_t nb = n / kQK_K;
  for_tiles_and_panels(tiles, tile_stride, n_tiles, panels, static_cast<size_t>(nb) * kQ4KPanelUnit,
                       tokens, out, ldo, [nb](const uint8_t* tile, auto step, auto& acc) {
                         q4_K_tile_panels(nb, tile, step, acc);
                       });
}

void gemm_tiles_q5_0(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                     const void* panels, int64_t tokens, float* out, size_t ldo) {
  const int64_t nb = n / kQK8_0;
  for_tiles_and_panels(
      tiles, tile_stride, n_tiles, panels, static_cast<size_t>(nb) * kLegacyPanelUnit, tokens, out,
      ldo,
      [nb](const uint8_t* tile, auto step, auto& acc) { q5_0_tile_panels(nb, tile, step, acc); });
}

void gemm_tiles_q8_0(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                     const void* panels, int64_t tokens, float* out, size_t ldo) {
  const int64_t nb = n / kQK8_0;
  for_tiles_and_panels(
      tiles, tile_stride, n_tiles, panels, static_cast<size_t>(nb) * kLegacyPanelUnit, tokens, out,
      ldo,
      [nb](const uint8_t* tile, auto step, auto& acc) { q8_0_tile_panels(nb, tile, step, acc); });
}

void gemm_tiles_q4_K_pack(int64_t n, const void* const* yv, int64_t count, void* panel) {
  const int64_t nb = n / kQK_K;
  auto* out = static_cast<uint8_t*>(panel);
  std::memset(out, 0, static_cast<size_t>(nb) * kQ4KPanelUnit);
  for (int64_t t = 0; t < count; ++t) {
    const auto* y = static_cast<const BlockQ8_K*>(yv[t]);
    for (int64_t i = 0; i < nb; ++i) {
      uint8_t* unit = out + static_cast<size_t>(i) * kQ4KPanelUnit;
      std::memcpy(unit + 256 * t, y[i].qs, kQK_K);
      std::memcpy(unit + 2048 + 4 * t, &y[i].d, 4);
      for (int p = 0; p < 4; ++p) {
        const int32_t even = y[i].bsums[4 * p] + y[i].bsums[4 * p + 1];
        const int32_t odd = y[i].bsums[4 * p + 2] + y[i].bsums[4 * p + 3];
        const uint32_t pair =
            (static_cast<uint32_t>(even) & 0xFFFF) | (static_cast<uint32_t>(odd) << 16);
        std::memcpy(unit + 2080 + 16 * t + 4 * p, &pair, 4);
      }
    }
  }
}

void gemm_tiles_q5_0_pack(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_legacy(n, y, count, panel, -16);
}

void gemm_tiles_q8_0_pack(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_legacy(n, y, count, panel, -128);
}

}  // namespace ktx::kernels::cpu::avx512
