// attention.h's kernels for AVX2 + FMA: 8-lane f32 vectors, 16 registers. Scores in tiles of
// 2 heads × 4 positions (8 accumulators); the weighted sum in tiles of 4 heads × 16 columns
// (8 accumulators), so loads, broadcasts and accumulators fit the 16 ymm registers.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu::avx2 {
namespace {

struct Vec {
  using T = __m256;
  static constexpr int kLanes = 8;
  static __m256i mask(int64_t n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(static_cast<int>(n)),
                              _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  static T zero() { return _mm256_setzero_ps(); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  // vmaskmovps does not fault on the masked-off lanes: a row may end at an unreadable page.
  static T load_n(const float* p, int64_t n) { return _mm256_maskload_ps(p, mask(n)); }
  static T set1(float x) { return _mm256_set1_ps(x); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, T v, int64_t n) { _mm256_maskstore_ps(p, mask(n), v); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  // 8 int8 codes widened to floats (exact).
  static T codes(const int8_t* p) {
    return _mm256_cvtepi32_ps(
        _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
  }
  // Codes of 4 bits minus a bias, as floats.
  struct Nibbles {
    __m256i bias;
    explicit Nibbles(int b) : bias(_mm256_set1_epi32(b)) {}
    // A group of 32 from its 16 bytes: elements 0..15 from the low nibbles, 16..31 the high.
    void group(const uint8_t* p, T (&out)[4]) const {
      const __m256i mask = _mm256_set1_epi32(15);
      for (int half = 0; half < 2; ++half) {
        const __m256i v =
            _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * half)));
        out[half] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_and_si256(v, mask), bias));
        out[2 + half] = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_srli_epi32(v, 4), bias));
      }
    }
  };

  static constexpr bool kSum16 = false;  // no sum16: scores tiles of 2 × 4 use sum()
  static float sum(T v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
};

constexpr int kScoreHeads = 2;
constexpr int kScorePositions = 4;
constexpr int kSumHeads = 4;
constexpr int kAffineSumVecs = 4;
constexpr int kAffineScoreRows = 4;
constexpr int kSumVecs = 2;

}  // namespace

#include "kernels/cpu/attention_kernels.inc"

}  // namespace ktx::kernels::cpu::avx2
