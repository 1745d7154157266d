// AVX2 GEMM kernels (gemm.h) for the 32-element block quants Q4_0, Q5_0, Q8_0 and IQ4_NL × Q8_0
// activations and Q4_1, Q5_1 × Q8_1 activations, and the packers of this tier's panels. Built
// with the avx2 tier's flags; internal linkage or namespace avx2 only.
//
// The GEMV kernel (legacy_avx2.cpp) works in groups of 8 blocks: one ymm of int32 partial sums
// per block, a hadd tree (reduce8) leaving block b's integer sum in lane b, the term
// float(isum) * (dx * dy) (+ mx * sy) per lane, added to an 8-lane accumulator, and a horizontal
// sum at the end. A GEMM tile does exactly that per (row, token), with the row's 8 blocks unpacked
// once and used for every token of the pass, and the offset correction of Q4_0 / Q5_0 (offset ·
// Σy per block) formed once per token and shared by the rows: the same integer sums, terms and
// additions, so the results are the GEMV kernel's bit for bit.
//
// The file is built with -ffp-contract=off, so no multiply and add are fused.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "kernels/cpu/gemm.h"
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

constexpr int kGroup = 8;  // blocks per group, as in legacy_avx2.cpp

#include "kernels/cpu/legacy_formats_avx2.inc"

// ---- this tier's Q8_0 panel: 16 blocks (two groups) of 8 tokens (gemm.h's size) ---------------
//   qs  [token t][block b][32]: y_t's block 16G + b, as it stores them
//   dy  [token t][16 floats]: those blocks' d
// and the Q8_1 panel the same, then
//   sy  [token t][16 floats]: those blocks' s (d · Σqs, as the block stores it)
// Blocks past the row's end and tokens past the real count are zeros.
constexpr int kTileTokens = static_cast<int>(kGemmTokens);
constexpr int kPanelBlocks = 16;
constexpr size_t kQsBytes = static_cast<size_t>(kTileTokens) * kPanelBlocks * 32;
constexpr size_t kDyOffset = kQsBytes;
constexpr size_t kSyOffset = kDyOffset + static_cast<size_t>(kTileTokens) * kPanelBlocks * 4;
constexpr size_t kGroupBytes = kSyOffset;  // 4608
constexpr size_t kGroupBytesQ8_1 = kSyOffset + static_cast<size_t>(kTileTokens) * kPanelBlocks * 4;
static_assert(kGroupBytes == kGemmPanelQ8_0Bytes, "gemm.h's size");
static_assert(kGroupBytesQ8_1 == kGemmPanelQ8_1Bytes, "gemm.h's size");

// Panels and rows per pass: the float accumulators of 8 rows × 32 tokens take 8 KB, and a group
// of 4 panels' activations 4.6 KB.
constexpr int kMaxPanels = 4;
constexpr int kRows = 8;
constexpr int kPassTokens = kMaxPanels * kTileTokens;

// Q4_0 / Q5_0: offset · Σy of a group's `count` blocks for each of `ntok` tokens, summed by the
// GEMV kernel's tree; the same for every row, so formed once per pass and group.
template <typename W>
void offset_sums(int count, const uint8_t* const* y, int ntok, __m256i* corr) {
  for (int t = 0; t < ntok; ++t) {
    __m256i c[kGroup];
    for (int b = 0; b < kGroup; ++b) {
      c[b] = b < count ? offset_partials<W>(load32(y[t] + 32 * b)) : _mm256_setzero_si256();
    }
    corr[t] = reduce8(c);
  }
}

// One pass over group g (8 blocks, `count` of them real: all but maybe the last group) for `nr`
// rows and `ntok` tokens (whole panels). acc[r][t] is row r's, token t's accumulator; corr[t]
// token t's offset sums (Q4_0 / Q5_0).
template <typename W, bool kFull>
void group_pass(const typename W::Block* const* x, int nr, int count_, const uint8_t* const* y,
                const uint8_t* const* scales, const __m256i* corr, int ntok,
                __m256 (*acc)[kPassTokens]) {
  constexpr bool kSigned = W::kSigned;
  constexpr int kWords = W::kHasMin ? 2 : 1;
  const int count = kFull ? kGroup : count_;
  const __m256i zero = _mm256_setzero_si256();
  const __m256i ones = _mm256_set1_epi16(1);

  for (int r = 0; r < nr; ++r) {
    // The row's 8 blocks, unpacked once for every token: unsigned codes, or (signed formats) |q|
    // with q kept for the activations' signs.
    __m256i code[kGroup], sign[kGroup];
    for (int b = 0; b < kGroup; ++b) {
      if (b >= count) {
        code[b] = sign[b] = zero;
        continue;
      }
      const __m256i q = W::decode(x[r] + b);
      code[b] = kSigned ? _mm256_sign_epi8(q, q) : q;
      sign[b] = q;
    }
    __m256 dx, mx = _mm256_setzero_ps();
    load_scales<typename W::Block, kWords, kFull>(x[r], count, dx, mx);
    for (int t = 0; t < ntok; ++t) {
      __m256i parts[kGroup];
#pragma GCC unroll 8
      for (int b = 0; b < kGroup; ++b) {
        if (b >= count) {
          parts[b] = zero;
          continue;
        }
        const __m256i yb = load32(y[t] + 32 * b);
        const __m256i p16 = kSigned ? _mm256_maddubs_epi16(code[b], _mm256_sign_epi8(yb, sign[b]))
                                    : _mm256_maddubs_epi16(code[b], yb);
        parts[b] = _mm256_madd_epi16(p16, ones);
      }
      __m256i isum = reduce8(parts);
      if constexpr (W::kOffset != 0) isum = _mm256_sub_epi32(isum, corr[t]);
      const __m256 dy = _mm256_loadu_ps(reinterpret_cast<const float*>(scales[t]));
      __m256 sy = _mm256_setzero_ps();
      if constexpr (W::kHasMin) {
        sy = _mm256_loadu_ps(reinterpret_cast<const float*>(scales[t] + (kSyOffset - kDyOffset)));
      }
      acc[r][t] = _mm256_add_ps(acc[r][t], block_terms<W>(isum, dx, dy, mx, sy));
    }
  }
}

template <typename W>
void gemm_legacy(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels,
                 int64_t tokens, float* out, size_t ldo) {
  using Block = typename W::Block;
  const size_t group_bytes = W::kHasMin ? kGroupBytesQ8_1 : kGroupBytes;
  const int64_t nb = n / 32;
  const int64_t n_groups = (nb + kGroup - 1) / kGroup;
  const size_t panel_bytes =
      static_cast<size_t>((nb + kPanelBlocks - 1) / kPanelBlocks) * group_bytes;
  const int64_t n_panels = (tokens + kTileTokens - 1) / kTileTokens;
  const auto* base = static_cast<const uint8_t*>(x);
  const auto* pbase = static_cast<const uint8_t*>(panels);
  __m256 acc[kRows][kPassTokens];
  // Offset sums per group and token of a pass (Q4_0 / Q5_0), shared by all its row blocks.
  struct GroupSums {
    __m256i token[kPassTokens];
  };
  std::vector<GroupSums> corr(W::kOffset != 0 ? static_cast<size_t>(n_groups) : 0);
  for (int64_t p0 = 0; p0 < n_panels; p0 += kMaxPanels) {
    const int np = static_cast<int>(std::min<int64_t>(kMaxPanels, n_panels - p0));
    const int ntok = np * kTileTokens;
    // Where each token's 8 blocks of group g and their d start in its panel.
    const auto locate = [&](int64_t g, const uint8_t** y, const uint8_t** scales) {
      const size_t group_off = static_cast<size_t>(g / 2) * group_bytes;
      const int first = static_cast<int>(g % 2) * kGroup;
      for (int t = 0; t < ntok; ++t) {
        const uint8_t* p =
            pbase + static_cast<size_t>(p0 + t / kTileTokens) * panel_bytes + group_off;
        const int tt = t % kTileTokens;
        y[t] = p + static_cast<size_t>(tt * kPanelBlocks + first) * 32;
        scales[t] = p + kDyOffset + static_cast<size_t>(tt * kPanelBlocks + first) * 4;
      }
    };
    const auto group_count = [&](int64_t g) {
      return static_cast<int>(std::min<int64_t>(kGroup, nb - kGroup * g));
    };
    if constexpr (W::kOffset != 0) {
      for (int64_t g = 0; g < n_groups; ++g) {
        const uint8_t* y[kPassTokens];
        const uint8_t* scales[kPassTokens];
        locate(g, y, scales);
        offset_sums<W>(group_count(g), y, ntok, corr[static_cast<size_t>(g)].token);
      }
    }
    for (int64_t r0 = 0; r0 < rows; r0 += kRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kRows, rows - r0));
      for (int r = 0; r < nr; ++r)
        for (int t = 0; t < ntok; ++t) acc[r][t] = _mm256_setzero_ps();
      for (int64_t g = 0; g < n_groups; ++g) {
        const int count = group_count(g);
        const Block* xg[kRows];
        for (int r = 0; r < nr; ++r) {
          xg[r] = reinterpret_cast<const Block*>(base + static_cast<size_t>(r0 + r) * x_stride) +
                  kGroup * g;
          // The next group of the row: the rows of a pass are short streams side by side, which
          // the hardware prefetchers do not follow.
          if (g + 1 < n_groups) {
            const char* next = reinterpret_cast<const char*>(xg[r] + kGroup);
            const int64_t next_count = std::min<int64_t>(kGroup, nb - kGroup * (g + 1));
            for (size_t off = 0; off < static_cast<size_t>(next_count) * sizeof(Block); off += 64)
              __asm__ volatile("prefetcht0 %0" : : "m"(next[off]));
          }
        }
        const uint8_t* y[kPassTokens];
        const uint8_t* scales[kPassTokens];
        locate(g, y, scales);
        const __m256i* c = corr.empty() ? nullptr : corr[static_cast<size_t>(g)].token;
        if (count == kGroup) {
          group_pass<W, true>(xg, nr, count, y, scales, c, ntok, acc);
        } else {
          group_pass<W, false>(xg, nr, count, y, scales, c, ntok, acc);
        }
      }
      for (int r = 0; r < nr; ++r) {
        for (int t = 0; t < ntok; ++t) {
          const int64_t token = p0 * kTileTokens + t;
          if (token < tokens) out[static_cast<size_t>(token) * ldo + r0 + r] = hsum(acc[r][t]);
        }
      }
    }
  }
}

// Q8_0 and Q8_1 panels: kSum adds the s array (Q8_1).
template <typename YBlock, bool kSum>
void pack_q8(int64_t n, const void* const* y, int64_t count, void* panel) {
  const int64_t nb = n / 32;
  const int64_t n_groups = (nb + kPanelBlocks - 1) / kPanelBlocks;
  const size_t group_bytes = kSum ? kGroupBytesQ8_1 : kGroupBytes;
  auto* out = static_cast<uint8_t*>(panel);
  for (int64_t g = 0; g < n_groups; ++g) {
    uint8_t* p = out + static_cast<size_t>(g) * group_bytes;
    for (int t = 0; t < kTileTokens; ++t) {
      float d[kPanelBlocks] = {}, s[kPanelBlocks] = {};
      uint8_t* qs = p + static_cast<size_t>(t) * kPanelBlocks * 32;
      for (int b = 0; b < kPanelBlocks; ++b) {
        const int64_t i = g * kPanelBlocks + b;
        if (t >= count || i >= nb) {
          std::memset(qs + 32 * b, 0, 32);
          continue;
        }
        const YBlock& blk = static_cast<const YBlock*>(y[t])[i];
        std::memcpy(qs + 32 * b, blk.qs, 32);
        d[b] = _cvtsh_ss(blk.d);
        if constexpr (kSum) s[b] = _cvtsh_ss(blk.s);
      }
      std::memcpy(p + kDyOffset + static_cast<size_t>(t) * sizeof d, d, sizeof d);
      if constexpr (kSum)
        std::memcpy(p + kSyOffset + static_cast<size_t>(t) * sizeof s, s, sizeof s);
    }
  }
}

}  // namespace

void gemm_pack_q8_0(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_q8<BlockQ8_0, false>(n, y, count, panel);
}
void gemm_pack_q8_1(int64_t n, const void* const* y, int64_t count, void* panel) {
  pack_q8<BlockQ8_1, true>(n, y, count, panel);
}

KTX_DEFINE_GEMM_KERNEL(gemm_q4_0, gemm_legacy<Q4_0W>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_0, gemm_legacy<Q5_0W>)
KTX_DEFINE_GEMM_KERNEL(gemm_q8_0, gemm_legacy<Q8_0W>)
KTX_DEFINE_GEMM_KERNEL(gemm_iq4_nl, gemm_legacy<IQ4_NLW>)
KTX_DEFINE_GEMM_KERNEL(gemm_q4_1, gemm_legacy<Q4_1W>)
KTX_DEFINE_GEMM_KERNEL(gemm_q5_1, gemm_legacy<Q5_1W>)

}  // namespace ktx::kernels::cpu::avx2
