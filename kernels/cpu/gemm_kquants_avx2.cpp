// AVX2 GEMM kernels (gemm.h) for K-quant and IQ4_XS weights × Q8_K activations, and the packer of
// this tier's Q8_K panels. Built with the avx2 tier's flags; internal linkage or namespace avx2
// only (isa_kernels.h says why).
//
// The GEMV kernels (k_quants_avx2.cpp) unpack every super-block of a row again for every token.
// Here a row's super-block is unpacked once into 8 vectors of codes (32 elements each, in element
// order) and 8 vectors of vpmaddwd scale words, and then multiplied with the 8 tokens of every
// panel in the pass:
//
//   per token t:   S_t = start + Σ_c vpmaddwd(vpmaddubsw(code[c], y_t[c]), scale[c])   (8 lanes)
//   8 tokens:      a hadd tree of S_0..S_7 -> I, lane t = the super-block's isum for token t
//   minimums:      the same with vpmaddwd(bsums_t, min words) -> M (Q4_K, Q5_K)
//   per lane:      acc += float(I) * (d * yd) - float(M) * (dmin * yd)
//
// The integer sums are exact (codes ≤ 63 times int8 never saturate vpmaddubsw's word pairs), so I
// and M are the reference's isum and msum, and the float steps are the reference's in its order
// for every lane: each output is lib/quant's dot product bit for bit, as the GEMV kernels' are.
// Q6_K's codes are unpacked without their -32; each token starts at -32 · Σ scale · bsum instead.
// IQ4_XS's levels are signed: |y| times the level carrying y's sign, as the GEMV kernel does.
//
// The file is built with -ffp-contract=off, so no multiply and add are fused.
#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "quant/blocks.h"

namespace ktx::kernels::cpu::avx2 {
namespace {

using quant::BlockIQ4_XS;
using quant::BlockQ4_K;
using quant::BlockQ5_K;
using quant::BlockQ6_K;
using quant::BlockQ8_K;
using quant::kQK_K;

#include "kernels/cpu/k_quants_avx2_shared.inc"

// ---- this tier's Q8_K panel: one super-block of 8 tokens (gemm.h's size) ----------------------
//   qs     [token t][256]: y_t.qs as the block stores them
//   yd     [8 floats]: lane t = token t's d; then 8 floats of zeros
//   bsums  [token t][16 int16]: y_t.bsums
// Tokens past the real count are zeros.
constexpr int kTileTokens = static_cast<int>(kGemmTokens);
constexpr size_t kQsBytes = static_cast<size_t>(kTileTokens) * kQK_K;
constexpr size_t kYdOffset = kQsBytes;
constexpr size_t kBsumsOffset = kYdOffset + 64;
constexpr size_t kSuperBytes = kBsumsOffset + static_cast<size_t>(kTileTokens) * 32;
static_assert(kSuperBytes == kGemmPanelQ8KBytes, "gemm.h's size");
static_assert(kTileTokens == 8, "one token per lane of an 8-float vector");

// Panels and rows per pass: a super-block of 4 panels (9.5 KB) stays in L1 while the rows of a
// block go by, and the float accumulators of 16 rows × 4 panels take 2 KB.
constexpr int kMaxPanels = 4;
constexpr int64_t kRowBlock = 16;

// One super-block of one row, unpacked for vpmaddubsw / vpmaddwd: code[c] holds elements
// 32c..32c+31 (unsigned codes, or IQ4_XS's levels), scale[c] the sub-block scales of those
// elements as words (a scale per 16 elements, in the 128-bit lane the elements sit in); extra is
// the min words (Q4_K, Q5_K) or Q6_K's -32 · scale words, for vpmaddwd with Q8_K's 16 bsums.
struct Unpacked {
  __m256i code[8];
  __m256i scale[8];
  __m256i extra;
};

// Q4_K / Q5_K: sub-blocks 2k and 2k+1 from k4_codes (as k_quants_avx2.cpp's dot_k4 unpacks them).
template <bool kFifthBit, typename Block>
inline void unpack_k4(const Block& b, Unpacked& u) {
  const __m128i sm = k4_scales_mins(b.scales);
  const __m256i scales = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
  __m256i qh = _mm256_setzero_si256();  // Q5_K's fifth bits, shifted right 2 per k
  if constexpr (kFifthBit) qh = load32(b.qh);
#pragma GCC unroll 4
  for (int k = 0; k < 4; ++k) {
    k4_codes<kFifthBit>(b.qs, k, qh, u.code[2 * k], u.code[2 * k + 1]);
    if constexpr (kFifthBit) qh = _mm256_srli_epi16(qh, 2);
    u.scale[2 * k] = _mm256_shuffle_epi8(scales, word_control(2 * k));
    u.scale[2 * k + 1] = _mm256_shuffle_epi8(scales, word_control(2 * k + 1));
  }
  u.extra = k4_min_words(sm);
}

template <bool kFifthBit, typename B>
struct K4Format {
  using Block = B;
  static constexpr bool kMin = true;
  static constexpr bool kStart = false;
  static constexpr bool kSigned = false;
  static void unpack(const Block& b, Unpacked& u) { unpack_k4<kFifthBit>(b, u); }
  static uint16_t d(const Block& b) { return b.d; }
  static uint16_t dmin(const Block& b) { return b.dmin; }
};
using Q4KFormat = K4Format<false, BlockQ4_K>;
using Q5KFormat = K4Format<true, BlockQ5_K>;

// Q6_K: chunk 4h + v holds elements 128h + 32v + j (q6_codes), 16-element sub-blocks 8h + 2v
// (lane 0) and 8h + 2v + 1 (lane 1).
struct Q6KFormat {
  using Block = BlockQ6_K;
  static constexpr bool kMin = false;
  static constexpr bool kStart = true;
  static constexpr bool kSigned = false;
  static void unpack(const Block& b, Unpacked& u) {
    const __m256i scales16 = _mm256_cvtepi8_epi16(load16(b.scales));
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      q6_codes(b, h, u.code + 4 * h);
      const __m256i scales = h == 0 ? low_lane_twice(scales16) : high_lane_twice(scales16);
#pragma GCC unroll 4
      for (int v = 0; v < 4; ++v)
        u.scale[4 * h + v] = _mm256_shuffle_epi8(scales, lanes_control(2 * v));
    }
    // -32 · scale fits a word (|scale| ≤ 128); with the bsums it is the codes' offset.
    u.extra = _mm256_sub_epi16(_mm256_setzero_si256(), _mm256_slli_epi16(scales16, 5));
  }
  static uint16_t d(const Block& b) { return b.d; }
  static uint16_t dmin(const Block&) { return 0; }
};

// IQ4_XS: sub-block ib is bytes 16ib..16ib+15, elements 0..15 in the low and 16..31 in the high
// nibbles, looked up in the 16 signed levels.
struct IQ4XSFormat {
  using Block = BlockIQ4_XS;
  static constexpr bool kMin = false;
  static constexpr bool kStart = false;
  static constexpr bool kSigned = true;
  static void unpack(const Block& b, Unpacked& u) {
    const __m256i levels = _mm256_broadcastsi128_si256(load16(quant::kIQ4NLValues));
    const __m256i scales = _mm256_broadcastsi128_si256(iq4_xs_scales(b));
#pragma GCC unroll 8
    for (int c = 0; c < 8; ++c) {
      u.code[c] = _mm256_shuffle_epi8(levels, nibbles(b.qs + 16 * c));
      u.scale[c] = _mm256_shuffle_epi8(scales, word_control(c));
    }
    u.extra = _mm256_setzero_si256();
  }
  static uint16_t d(const Block& b) { return b.d; }
  static uint16_t dmin(const Block&) { return 0; }
};

// ---- the tile: one row's super-block × the 8 tokens of a panel ---------------------------------

template <typename F>
inline __m256 super_block_terms(const Unpacked& u, const uint8_t* p, __m256 d, __m256 dmin) {
  __m256i s[kTileTokens];
#pragma GCC unroll 8
  for (int t = 0; t < kTileTokens; ++t) {
    s[t] = F::kStart ? _mm256_madd_epi16(load32(p + kBsumsOffset + 32 * t), u.extra)
                     : _mm256_setzero_si256();
  }
  // Chunk outer, tokens inner: the chunk's codes and scale words are loaded once for 8 tokens,
  // and 8 independent sums hide vpmaddwd's latency.
#pragma GCC unroll 8
  for (int c = 0; c < 8; ++c) {
    const __m256i code = u.code[c], scale = u.scale[c];
#pragma GCC unroll 8
    for (int t = 0; t < kTileTokens; ++t) {
      const __m256i y = load32(p + kQK_K * t + 32 * c);
      __m256i prod;
      if constexpr (F::kSigned) {
        // |y| (128 fits unsigned) times the level with y's sign (|level| ≤ 127): exact for every
        // int8 activation, -128 included; word pairs ≤ 2·128·127.
        prod = _mm256_maddubs_epi16(_mm256_abs_epi8(y), _mm256_sign_epi8(code, y));
      } else {
        prod = _mm256_maddubs_epi16(code, y);
      }
      s[t] = _mm256_add_epi32(s[t], _mm256_madd_epi16(prod, scale));
    }
  }
  const __m256 yd = _mm256_loadu_ps(reinterpret_cast<const float*>(p + kYdOffset));
  // Lane t: the reference's term for token t, rounding for rounding.
  __m256 term = _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8(s)), _mm256_mul_ps(d, yd));
  if constexpr (F::kMin) {
    __m256i m[kTileTokens];
#pragma GCC unroll 8
    for (int t = 0; t < kTileTokens; ++t)
      m[t] = _mm256_madd_epi16(load32(p + kBsumsOffset + 32 * t), u.extra);
    term =
        _mm256_sub_ps(term, _mm256_mul_ps(_mm256_cvtepi32_ps(reduce8(m)), _mm256_mul_ps(dmin, yd)));
  }
  return term;
}

inline __m256 half_to_lanes(uint16_t h) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(h)));
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
  __m256 acc[kRowBlock][kMaxPanels];
  for (int64_t p0 = 0; p0 < n_panels; p0 += kMaxPanels) {
    const int np = static_cast<int>(std::min<int64_t>(kMaxPanels, n_panels - p0));
    const uint8_t* pp = pbase + static_cast<size_t>(p0) * panel_bytes;
    for (int64_t r0 = 0; r0 < rows; r0 += kRowBlock) {
      const int64_t nr = std::min<int64_t>(kRowBlock, rows - r0);
      for (int64_t r = 0; r < nr; ++r)
        for (int q = 0; q < np; ++q) acc[r][q] = _mm256_setzero_ps();
      // Super-block outer, rows inner: super-block i of the pass's panels stays in L1 while the
      // rows go by.
      for (int64_t i = 0; i < nb; ++i) {
        for (int64_t r = 0; r < nr; ++r) {
          const Block& b = row(r0 + r)[i];
          if (i + 1 < nb) {
            // The next super-block of this row: many short streams side by side, which the
            // hardware prefetchers do not follow.
            const char* next = reinterpret_cast<const char*>(&b + 1);
            for (size_t off = 0; off < sizeof(Block); off += 64)
              __asm__ volatile("prefetcht0 %0" : : "m"(next[off]));
          }
          Unpacked u;
          F::unpack(b, u);
          const __m256 d = half_to_lanes(F::d(b));
          const __m256 dmin = F::kMin ? half_to_lanes(F::dmin(b)) : _mm256_setzero_ps();
          for (int q = 0; q < np; ++q) {
            const uint8_t* p =
                pp + static_cast<size_t>(q) * panel_bytes + static_cast<size_t>(i) * kSuperBytes;
            acc[r][q] = _mm256_add_ps(acc[r][q], super_block_terms<F>(u, p, d, dmin));
          }
        }
      }
      for (int64_t r = 0; r < nr; ++r) {
        for (int q = 0; q < np; ++q) {
          alignas(32) float v[kTileTokens];
          _mm256_store_ps(v, acc[r][q]);
          const int64_t t0 = (p0 + q) * kTileTokens;
          const int valid = static_cast<int>(std::min<int64_t>(kTileTokens, tokens - t0));
          for (int t = 0; t < valid; ++t) out[static_cast<size_t>(t0 + t) * ldo + r0 + r] = v[t];
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
  for (int64_t i = 0; i < nb; ++i) {
    uint8_t* p = out + static_cast<size_t>(i) * kSuperBytes;
    float yd[2 * kTileTokens] = {};
    for (int t = 0; t < kTileTokens; ++t) {
      uint8_t* qs = p + kQK_K * t;
      uint8_t* bsums = p + kBsumsOffset + 32 * t;
      if (t >= count) {
        std::memset(qs, 0, kQK_K);
        std::memset(bsums, 0, 32);
        continue;
      }
      const BlockQ8_K& b = static_cast<const BlockQ8_K*>(y[t])[i];
      std::memcpy(qs, b.qs, kQK_K);
      std::memcpy(bsums, b.bsums, 32);
      yd[t] = b.d;
    }
    std::memcpy(p + kYdOffset, yd, sizeof yd);
  }
}

KTX_DEFINE_GEMM_KERNEL(gemm_q4_K, gemm_k<Q4KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_K, gemm_k<Q5KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_q6_K, gemm_k<Q6KFormat>)
KTX_DEFINE_GEMM_KERNEL(gemm_iq4_xs, gemm_k<IQ4XSFormat>)

}  // namespace ktx::kernels::cpu::avx2
