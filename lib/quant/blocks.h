// Byte layouts of the GGUF block formats, field for field as ggml stores them. Half-precision
// scales are kept as raw uint16_t bits (see fp16.h). Sizes are pinned by static_assert so a
// layout can never drift from the files.
#pragma once

#include <cstdint>

namespace ktx::quant {

constexpr int kQK4_0 = 32, kQK4_1 = 32, kQK5_0 = 32, kQK5_1 = 32, kQK8_0 = 32, kQK8_1 = 32;
constexpr int kQK_K = 256;      // super-block of the K-quants and IQ4_XS
constexpr int kQK4_NL = 32;
constexpr int kKScaleSize = 12;  // packed 6-bit scales and mins of Q4_K / Q5_K

struct BlockQ4_0 {
  uint16_t d;            // scale
  uint8_t qs[kQK4_0 / 2];  // nibbles: element j in low half of qs[j], element j+16 in high half
};
struct BlockQ4_1 {
  uint16_t d, m;  // scale, minimum
  uint8_t qs[kQK4_1 / 2];
};
struct BlockQ5_0 {
  uint16_t d;
  uint8_t qh[4];  // fifth bits, element j at bit j (little-endian u32)
  uint8_t qs[kQK5_0 / 2];
};
struct BlockQ5_1 {
  uint16_t d, m;
  uint8_t qh[4];
  uint8_t qs[kQK5_1 / 2];
};
struct BlockQ8_0 {
  uint16_t d;
  int8_t qs[kQK8_0];
};
struct BlockQ8_1 {
  uint16_t d;  // scale
  uint16_t s;  // d * sum(qs): lets Q4_1/Q5_1 dots fold in their minimum
  int8_t qs[kQK8_1];
};
struct BlockQ2_K {
  uint8_t scales[kQK_K / 16];  // low nibble scale, high nibble min, per 16 elements
  uint8_t qs[kQK_K / 4];
  uint16_t d, dmin;
};
struct BlockQ3_K {
  uint8_t hmask[kQK_K / 8];
  uint8_t qs[kQK_K / 4];
  uint8_t scales[12];  // 16 six-bit scales
  uint16_t d;
};
struct BlockQ4_K {
  uint16_t d, dmin;
  uint8_t scales[kKScaleSize];  // 8 six-bit scales and 8 six-bit mins
  uint8_t qs[kQK_K / 2];
};
struct BlockQ5_K {
  uint16_t d, dmin;
  uint8_t scales[kKScaleSize];
  uint8_t qh[kQK_K / 8];
  uint8_t qs[kQK_K / 2];
};
struct BlockQ6_K {
  uint8_t ql[kQK_K / 2];
  uint8_t qh[kQK_K / 4];
  int8_t scales[kQK_K / 16];
  uint16_t d;
};
struct BlockQ8_K {
  float d;  // a float, not a half: the activation side of K-quant dots
  int8_t qs[kQK_K];
  int16_t bsums[kQK_K / 16];  // sums of each 16 quants, for the K-quants' minimums
};
struct BlockIQ4_NL {
  uint16_t d;
  uint8_t qs[kQK4_NL / 2];  // indices into the non-linear table kIQ4NLValues
};
struct BlockIQ4_XS {
  uint16_t d;
  uint16_t scales_h;              // high 2 bits of the 8 six-bit block scales
  uint8_t scales_l[kQK_K / 64];   // low 4 bits
  uint8_t qs[kQK_K / 2];
};

static_assert(sizeof(BlockQ4_0) == 18);
static_assert(sizeof(BlockQ4_1) == 20);
static_assert(sizeof(BlockQ5_0) == 22);
static_assert(sizeof(BlockQ5_1) == 24);
static_assert(sizeof(BlockQ8_0) == 34);
static_assert(sizeof(BlockQ8_1) == 36);
static_assert(sizeof(BlockQ2_K) == 84);
static_assert(sizeof(BlockQ3_K) == 110);
static_assert(sizeof(BlockQ4_K) == 144);
static_assert(sizeof(BlockQ5_K) == 176);
static_assert(sizeof(BlockQ6_K) == 210);
static_assert(sizeof(BlockQ8_K) == 292);
static_assert(sizeof(BlockIQ4_NL) == 18);
static_assert(sizeof(BlockIQ4_XS) == 136);

// The 16 levels of IQ4_NL and IQ4_XS (a non-uniform 4-bit code; values from the format).
inline constexpr int8_t kIQ4NLValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                            1,    13,   25,  38,  53,  69,  89,  113};

}  // namespace ktx::quant
