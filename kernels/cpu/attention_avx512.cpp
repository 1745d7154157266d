// attention.h's kernels for AVX-512: 16-lane f32 vectors, 32 registers. Scores in tiles of
// 4 heads × 4 positions (16 accumulators, 8 loads per 16 FMAs); the weighted sum in tiles of
// 4 heads × 64 columns (16 accumulators, 4 loads and 4 broadcasts per 16 FMAs).
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/avx512_gcc_warnings.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx512 {
namespace {

struct Vec {
  using T = __m512;
  static constexpr int kLanes = 16;
  static T zero() { return _mm512_setzero_ps(); }
  static T load(const float* p) { return _mm512_loadu_ps(p); }
  // Masked: the lanes past n are not read, so a row may end at an unreadable page.
  static T load_n(const float* p, int64_t n) {
    return _mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1), p);
  }
  static T set1(float x) { return _mm512_set1_ps(x); }
  static T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  static void store(float* p, T v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, T v, int64_t n) {
    _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
  }
  static T mul(T a, T b) { return _mm512_mul_ps(a, b); }
  static T add(T a, T b) { return _mm512_add_ps(a, b); }
  // 16 int8 codes widened to floats (exact).
  static T codes(const int8_t* p) {
    return _mm512_cvtepi32_ps(
        _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
  }
  // Codes of 4 bits minus a bias, as floats. vpermps picks each float from a table by the low
  // 4 bits of its index, so neither a mask nor a conversion is needed (on Zen 4 this beat
  // shifts, masks and conversions of the same codes: 2.8 against 3.4 cycles a vector).
  struct Nibbles {
    __m512 table;
    explicit Nibbles(int bias)
        : table(_mm512_sub_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                              _mm512_set1_ps(static_cast<float>(bias)))) {}
    // A group of 32 from its 16 bytes: elements 0..15 from the low nibbles, 16..31 the high.
    void group(const uint8_t* p, T (&out)[2]) const {
      const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
      out[0] = _mm512_permutexvar_ps(v, table);
      out[1] = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
    }
  };
  // The sums of 16 vectors at once: lane j of the result is the sum of v[j]'s lanes. Three
  // rounds of adding halves (128-bit quarters across vectors, then lanes within quarters), 43
  // instructions where 16 calls of sum() take ~140. Quarters first: w[i] holds v[i]'s and
  // v[i + 8]'s quarter sums q0 + q2, q1 + q3; then x[i] the 4-lane partial sums of the vectors
  // at slots i, i + 8, i + 4, i + 12, one per quarter; then a 4 × 4 transpose-add within each
  // quarter. The slots are filled so that the lanes come out in v's order.
  static constexpr bool kSum16 = true;
  static T sum16(const T (&v)[16]) {
    constexpr int kSlot[16] = {0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 12, 13, 14, 15};
    T w[8], x[4];
#pragma GCC unroll 8
    for (int i = 0; i < 8; ++i) {
      const T a = v[kSlot[i]], b = v[kSlot[i + 8]];
      w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
    }
#pragma GCC unroll 4
    for (int i = 0; i < 4; ++i) {
      x[i] = _mm512_add_ps(_mm512_shuffle_f32x4(w[i], w[i + 4], 0x88),
                           _mm512_shuffle_f32x4(w[i], w[i + 4], 0xDD));
    }
    const T t0 = _mm512_add_ps(_mm512_unpacklo_ps(x[0], x[1]), _mm512_unpackhi_ps(x[0], x[1]));
    const T t1 = _mm512_add_ps(_mm512_unpacklo_ps(x[2], x[3]), _mm512_unpackhi_ps(x[2], x[3]));
    return _mm512_add_ps(_mm512_shuffle_ps(t0, t1, 0x44), _mm512_shuffle_ps(t0, t1, 0xEE));
  }
  // Halves, then as AVX2 does. _mm512_reduce_add_ps and _mm512_castps512_ps256 trip GCC 12's
  // -Wmaybe-uninitialized (its headers self-initialise an undefined register) once inlined here.
  static float sum(T v) {
    const __m256 h = _mm256_add_ps(_mm512_extractf32x8_ps(v, 0), _mm512_extractf32x8_ps(v, 1));
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

constexpr int kScoreHeads = 4;
constexpr int kScorePositions = 4;
constexpr int kSumHeads = 4;
constexpr int kAffineSumVecs = 8;
constexpr int kAffineScoreRows = 4;
constexpr int kSumVecs = 4;

}  // namespace

#include "kernels/cpu/attention_kernels.inc"

}  // namespace ktx::kernels::cpu::avx512
