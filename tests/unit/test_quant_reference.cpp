// Tests of the scalar reference formats (include/ktx/quant.h): every type on fresh random data each
// run (the seed is printed on failure), awkward lengths (1, 3 and 7 blocks), outputs poisoned
// before each call. Bit-exactness against the gguf package is checked in
// tests/python/test_quant_reference.py; these tests check bounds, dots and argument handling.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

namespace {

using ktx::ErrorCode;
using ktx::TensorType;
namespace q = ktx::quant;

const std::vector<TensorType> kDequantTypes = {
    TensorType::F32,    TensorType::F16,   TensorType::BF16, TensorType::Q4_0, TensorType::Q4_1,
    TensorType::Q5_0,   TensorType::Q5_1,  TensorType::Q8_0, TensorType::Q8_1, TensorType::Q2_K,
    TensorType::Q3_K,   TensorType::Q4_K,  TensorType::Q5_K, TensorType::Q6_K, TensorType::Q8_K,
    TensorType::IQ4_NL, TensorType::IQ4_XS};

// Quantizers written in lib/quant (the K-quants and IQ4_XS come from k_quantize.cpp).
const std::vector<TensorType> kOwnQuantTypes = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16,  TensorType::Q4_0,
    TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1,  TensorType::Q8_0,
    TensorType::Q8_1, TensorType::Q8_K, TensorType::IQ4_NL};

const std::vector<TensorType> kKQuantTypes = {TensorType::Q2_K, TensorType::Q3_K,
                                              TensorType::Q4_K, TensorType::Q5_K,
                                              TensorType::Q6_K, TensorType::IQ4_XS};

const std::vector<TensorType> kDotTypes = {
    TensorType::F32,  TensorType::F16,  TensorType::BF16, TensorType::Q4_0,   TensorType::Q4_1,
    TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0, TensorType::Q2_K,   TensorType::Q3_K,
    TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS};

const int kBlockCounts[] = {1, 3, 7};
constexpr int kGuard = 8;                // elements / bytes after the row that must stay untouched
constexpr float kGuardValue = -777.25f;  // sentinel in the guard of float outputs
const float kNaN = std::numeric_limits<float>::quiet_NaN();

std::string name(TensorType t) { return std::string(ktx::type_name(t)); }
int64_t block_size(TensorType t) { return ktx::traits(t).block_size; }

// ---- random data ------------------------------------------------------------------------------

struct Random {
  uint32_t seed = std::random_device{}();
  std::mt19937 gen{seed};

  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
  float sign() { return integer(0, 1) ? 1.0f : -1.0f; }

  // Any finite half: random bits, rejecting exponent 31 (inf / NaN). Includes subnormals and ±0.
  uint16_t any_finite_half() {
    for (;;) {
      const auto h = static_cast<uint16_t>(integer(0, 0xFFFF));
      if ((h & 0x7C00u) != 0x7C00u) return h;
    }
  }
  // A scale of ordinary size (2^-10 .. 1, either sign): used where blocks are compared by value.
  uint16_t moderate_half() {
    return q::f32_to_fp16(sign() * uniform(0.5f, 1.0f) * std::ldexp(1.0f, integer(-9, 0)));
  }
  // f32 rows with a different magnitude per 32 elements and an occasional outlier.
  std::vector<float> activations(int64_t n) {
    std::vector<float> x(static_cast<size_t>(n));
    float scale = 1.0f;
    for (int64_t i = 0; i < n; ++i) {
      if (i % 32 == 0) scale = std::ldexp(1.0f, integer(-6, 6));
      x[i] = normal() * scale * (integer(0, 63) == 0 ? 8.0f : 1.0f);
    }
    return x;
  }
};

void put_u16(uint8_t* p, uint16_t v) { std::memcpy(p, &v, 2); }
uint16_t get_u16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, 2);
  return v;
}

// Byte offsets, inside one block, of the fields that scale the dequantized values (each one
// multiplies a separate term: d and m for Q4_1, d and dmin for the K-quants with minimums).
std::vector<size_t> scale_fields(TensorType t) {
  using namespace ktx::quant;
  switch (t) {
    case TensorType::Q4_0:
      return {offsetof(BlockQ4_0, d)};
    case TensorType::Q4_1:
      return {offsetof(BlockQ4_1, d), offsetof(BlockQ4_1, m)};
    case TensorType::Q5_0:
      return {offsetof(BlockQ5_0, d)};
    case TensorType::Q5_1:
      return {offsetof(BlockQ5_1, d), offsetof(BlockQ5_1, m)};
    case TensorType::Q8_0:
      return {offsetof(BlockQ8_0, d)};
    case TensorType::Q8_1:
      return {offsetof(BlockQ8_1, d)};
    case TensorType::Q2_K:
      return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case TensorType::Q3_K:
      return {offsetof(BlockQ3_K, d)};
    case TensorType::Q4_K:
      return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case TensorType::Q5_K:
      return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case TensorType::Q6_K:
      return {offsetof(BlockQ6_K, d)};
    case TensorType::IQ4_NL:
      return {offsetof(BlockIQ4_NL, d)};
    case TensorType::IQ4_XS:
      return {offsetof(BlockIQ4_XS, d)};
    default:
      return {};
  }
}

enum class Scales { kAnyFinite, kModerate };

// A row of valid blocks: random bytes for the quants, random finite halves for the scales (Q8_1's
// s included), and for Q8_K a finite f32 d and bsums that agree with qs.
std::vector<uint8_t> random_row(TensorType t, int64_t n, Random& rnd, Scales scales) {
  std::vector<uint8_t> row(ktx::row_size(t, n));
  for (auto& b : row) b = static_cast<uint8_t>(rnd.integer(0, 255));
  auto half = [&] {
    return scales == Scales::kAnyFinite ? rnd.any_finite_half() : rnd.moderate_half();
  };
  if (t == TensorType::F32) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = rnd.normal() * std::ldexp(1.0f, rnd.integer(-8, 8));
      std::memcpy(row.data() + 4 * i, &v, 4);
    }
    return row;
  }
  if (t == TensorType::F16) {
    for (int64_t i = 0; i < n; ++i) put_u16(row.data() + 2 * i, half());
    return row;
  }
  if (t == TensorType::BF16) {
    for (int64_t i = 0; i < n; ++i) {
      uint16_t h = q::f32_to_bf16(q::fp16_to_f32(half()));
      if (scales == Scales::kAnyFinite) {
        do h = static_cast<uint16_t>(rnd.integer(0, 0xFFFF));
        while ((h & 0x7F80u) == 0x7F80u);
      }
      put_u16(row.data() + 2 * i, h);
    }
    return row;
  }
  const size_t type_size = ktx::traits(t).type_size;
  for (size_t off = 0; off < row.size(); off += type_size) {
    uint8_t* block = row.data() + off;
    if (t == TensorType::Q8_K) {
      q::BlockQ8_K b;
      std::memcpy(&b, block, sizeof b);
      b.d = q::fp16_to_f32(half());
      for (int g = 0; g < q::kQK_K / 16; ++g) {
        int sum = 0;
        for (int e = 0; e < 16; ++e) sum += b.qs[16 * g + e];
        b.bsums[g] = static_cast<int16_t>(sum);
      }
      std::memcpy(block, &b, sizeof b);
      continue;
    }
    for (size_t f : scale_fields(t)) put_u16(block + f, half());
    if (t == TensorType::Q8_1) put_u16(block + offsetof(q::BlockQ8_1, s), half());
  }
  return row;
}

// ---- helpers around the API -------------------------------------------------------------------

// Dequantizes into a NaN-poisoned buffer with a guard after the row, and checks that every element
// was written (no NaN left, all finite) and nothing past the row was touched.
std::vector<float> dequantize_checked(TensorType t, const std::vector<uint8_t>& src, int64_t n) {
  std::vector<float> out(static_cast<size_t>(n) + kGuard, kNaN);
  std::fill(out.begin() + n, out.end(), kGuardValue);
  q::dequantize_row(t, src.data(), out.data(), n);
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(out[i])) {
      FAIL_CHECK(name(t) << " element " << i << " of " << n << " is " << out[i]);
      break;
    }
  }
  for (int g = 0; g < kGuard; ++g) REQUIRE(out[n + g] == kGuardValue);
  out.resize(static_cast<size_t>(n));
  return out;
}

// Quantizes twice, into buffers poisoned with 0xFF and with 0x00: equal results show that every
// byte of the row is written and depends only on the input; the guard shows nothing past it is.
std::vector<uint8_t> quantize_checked(TensorType t, const std::vector<float>& x) {
  const auto n = static_cast<int64_t>(x.size());
  const size_t size = ktx::row_size(t, n);
  std::vector<uint8_t> a(size + kGuard, 0xFF), b(size + kGuard, 0x00);
  q::quantize_row(t, x.data(), a.data(), n);
  q::quantize_row(t, x.data(), b.data(), n);
  for (int g = 0; g < kGuard; ++g) {
    REQUIRE(a[size + g] == 0xFF);
    REQUIRE(b[size + g] == 0x00);
  }
  a.resize(size);
  b.resize(size);
  REQUIRE(a == b);
  return a;
}

template <typename F>
ktx::Error expect_error(F&& f) {
  try {
    f();
  } catch (const ktx::Error& e) {
    return e;
  }
  FAIL("expected a ktx::Error");
  return ktx::Error(ErrorCode::kInternal, "unreachable");
}

// ---- quantization error bounds ----------------------------------------------------------------
//
// Round-to-nearest formats: |x - x'| <= |d|/2 per element, where d is the f32 scale the quantizer
// derives from its block (d = max/-8 for Q4_0 …), plus the f16 rounding of d (and m) times the
// largest level, plus a few f32 roundings. Q4_0 / Q5_0 put the block's extreme on the lowest level,
// so on the other side the top level is one short: values beyond level (top + 1/2) round to
// the top level with an error up to |d|. IQ4_NL is non-linear: see iq4_nl_bound below.

constexpr float kHalfUlp = 1.0f / 2048;  // relative rounding error of f32 -> f16 (2^-11)
constexpr float kF32Eps = 8 * FLT_EPSILON;

struct BlockStats {
  float signed_max = 0, amax = 0, min = FLT_MAX, max = -FLT_MAX;
};

BlockStats stats(const float* x, int64_t count) {
  BlockStats s;
  for (int64_t j = 0; j < count; ++j) {
    if (std::fabs(x[j]) > s.amax) {
      s.amax = std::fabs(x[j]);
      s.signed_max = x[j];
    }
    s.min = std::min(s.min, x[j]);
    s.max = std::max(s.max, x[j]);
  }
  return s;
}

// The bound for element x of a block with statistics s, or a negative value when the type has no
// per-element bound here.
double error_bound(TensorType t, const BlockStats& s, float x) {
  const double ax = std::fabs(x);
  switch (t) {
    case TensorType::F32:
      return 0.0;
    case TensorType::F16:
      return std::max(ax * kHalfUlp, 0x1p-25);  // 2^-25: subnormal half ulp/2
    case TensorType::BF16:
      return ax / 256;  // 8 significant bits: half an ulp is 2^-8
    case TensorType::Q4_0:
    case TensorType::Q5_0: {
      const int half_levels = t == TensorType::Q4_0 ? 8 : 16;
      const double d = std::fabs(s.signed_max) / half_levels;
      const double level = x / (s.signed_max / -half_levels);  // position on the level scale
      const double rounding = level > half_levels - 0.5 ? 1.0 : 0.5;
      return d * (rounding + half_levels * kHalfUlp) + kF32Eps * s.amax;
    }
    case TensorType::Q4_1:
    case TensorType::Q5_1: {
      const int top = t == TensorType::Q4_1 ? 15 : 31;
      const double d = (static_cast<double>(s.max) - s.min) / top;
      return d * (0.5 + top * kHalfUlp) + std::fabs(s.min) * kHalfUlp + kF32Eps * (s.amax + d);
    }
    case TensorType::Q8_0:
    case TensorType::Q8_1: {
      const double d = s.amax / 127.0;
      return d * (0.5 + 127 * kHalfUlp) + kF32Eps * s.amax;
    }
    case TensorType::Q8_K:
      return s.amax / 127.0 * 0.5 + kF32Eps * s.amax;  // d is stored as f32
    default:
      return -1.0;
  }
}

// IQ4_NL: with d the stored scale, an element whose x/d lies inside the level range [-127, 113]
// is within half the widest gap between neighbouring levels (24/2 = 12) of d, plus the f16
// rounding of d times the largest level. Elements outside the range (the scale search may clip
// the block's extreme to lower the total squared error) are within 20% of the block's absmax.
double iq4_nl_bound(float d, const BlockStats& s, float x) {
  const double ad = std::fabs(d);
  const double level = x / static_cast<double>(d);
  if (level >= -127.0 && level <= 113.0) return ad * (12.0 + 127 * 2 * kHalfUlp) + kF32Eps * s.amax;
  return 0.2 * s.amax;
}

// ---- golden data from independent implementations ---------------------------------------------
//
// Fixed inputs, made by a small LCG, and FNV-1a hashes of the outputs that the gguf package 0.19
// (dequantize; quantize for F16 … Q8_0) and llama.cpp's libggml-base (quantize_row_q8_1_ref,
// quantize_row_q8_K_ref, quantize_iq4_nl) produced for them; Q8_1 / Q8_K dequantization is d * q
// in numpy. The input hashes pin the generator, so a mismatch points at the format code.

struct Lcg {
  uint32_t state;
  uint32_t next() { return state = state * 1664525u + 1013904223u; }
};

uint64_t fnv1a(const void* data, size_t size) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < size; ++i) {
    h ^= static_cast<const uint8_t*>(data)[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

// x[i] = (u24 / 2^24 - 1/2) * 2^((i/32) % 7 - 3), all exact in f32, except elements 64..95, which
// are zero, and 96..127: 127 and then half-integers in [-127, 127], exact ties for the roundings.
std::vector<float> golden_floats(int64_t n) {
  Lcg g{12345};
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const uint32_t u = g.next() >> 8;
    float v = (static_cast<float>(u) / 16777216.0f - 0.5f) *
              std::ldexp(1.0f, static_cast<int>((i / 32) % 7) - 3);
    if (i >= 64 && i < 96) v = 0.0f;
    if (i >= 96 && i < 128)
      v = i == 96 ? 127.0f : static_cast<float>(static_cast<int>(u % 509) - 254) / 2;
    x[i] = v;
  }
  return x;
}

// LCG bytes with the f16 / bf16 fields' lowest exponent bit cleared (so never inf or NaN); for
// Q8_K a small f32 d and matching bsums; for F32 the golden floats.
std::vector<uint8_t> golden_bytes(TensorType t, int64_t n) {
  const std::string type_name = name(t);
  uint32_t seed = 777;
  for (char c : type_name) seed += static_cast<unsigned char>(c);
  Lcg g{seed};
  std::vector<uint8_t> row(ktx::row_size(t, n));
  for (auto& b : row) b = static_cast<uint8_t>(g.next() >> 24);
  if (t == TensorType::F32) {
    const auto x = golden_floats(n);
    std::memcpy(row.data(), x.data(), row.size());
    return row;
  }
  if (t == TensorType::F16) {
    for (size_t i = 1; i < row.size(); i += 2) row[i] &= 0xFB;
    return row;
  }
  if (t == TensorType::BF16) {
    for (size_t i = 0; i < row.size(); i += 2) row[i] &= 0x7F;
    return row;
  }
  const size_t ts = ktx::traits(t).type_size;
  const auto small = golden_floats(64);
  for (size_t off = 0, k = 0; off < row.size(); off += ts, ++k) {
    uint8_t* block = row.data() + off;
    if (t == TensorType::Q8_K) {
      q::BlockQ8_K b;
      std::memcpy(&b, block, sizeof b);
      b.d = small[1 + k] * 0.01f;
      for (int gi = 0; gi < 16; ++gi) {
        int sum = 0;
        for (int e = 0; e < 16; ++e) sum += b.qs[16 * gi + e];
        b.bsums[gi] = static_cast<int16_t>(sum);
      }
      std::memcpy(block, &b, sizeof b);
    }
    auto fields = scale_fields(t);
    if (t == TensorType::Q8_1) fields.push_back(offsetof(q::BlockQ8_1, s));
    for (size_t f : fields) block[f + 1] &= 0xFB;
  }
  return row;
}

}  // namespace

// ---- dequantize -------------------------------------------------------------------------------

TEST_CASE("quant: dequantize_row writes every element, finite, and nothing past the row",
          "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (TensorType t : kDequantTypes) {
    REQUIRE(q::can_dequantize(t));
    for (int blocks : kBlockCounts) {
      const int64_t n = blocks * block_size(t);
      INFO(name(t) << ", n = " << n);
      const auto src = random_row(t, n, rnd, Scales::kAnyFinite);
      dequantize_checked(t, src, n);
    }
  }
}

TEST_CASE("quant: the affine form gives dequantize_row's values bit for bit", "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int with_form = 0;
  for (TensorType t : kDequantTypes) {
    if (!q::has_affine_form(t)) continue;
    ++with_form;
    for (int blocks : kBlockCounts) {
      const int64_t n = blocks * block_size(t);
      INFO(name(t) << ", n = " << n);
      const auto src = random_row(t, n, rnd, Scales::kAnyFinite);
      const auto groups = static_cast<size_t>(n / q::kAffineGroup);
      std::vector<int8_t> code(static_cast<size_t>(n));
      std::vector<float> scale(groups, nan), offset(groups, nan);
      q::affine_row(t, src.data(), n, code.data(), scale.data(), offset.data());
      std::vector<float> want(static_cast<size_t>(n));
      q::dequantize_row(t, src.data(), want.data(), n);
      for (int64_t e = 0; e < n; ++e) {
        const auto g = static_cast<size_t>(e / q::kAffineGroup);
        float got = scale[g] * static_cast<float>(code[static_cast<size_t>(e)]);
        if (q::affine_has_offset(t)) got = got + offset[g];
        INFO("element " << e);
        REQUIRE(std::memcmp(&got, &want[static_cast<size_t>(e)], sizeof got) == 0);
      }
      // A type without a minimum never writes the offsets.
      if (!q::affine_has_offset(t)) {
        for (float o : offset) REQUIRE(std::isnan(o));
      }
    }
  }
  CHECK(with_form == 12);
  for (TensorType t :
       {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_1, TensorType::Q8_K}) {
    CHECK_FALSE(q::has_affine_form(t));
    std::vector<uint8_t> src(ktx::row_size(t, 256));
    std::vector<int8_t> code(256);
    std::vector<float> scale(16), offset(16);
    const ktx::Error e = expect_error(
        [&] { q::affine_row(t, src.data(), 256, code.data(), scale.data(), offset.data()); });
    CHECK(e.code() == ErrorCode::kUnsupported);
    CHECK(std::string(e.what()).find(name(t)) != std::string::npos);
  }
  std::vector<uint8_t> src(ktx::row_size(TensorType::Q4_K, 256));
  std::vector<int8_t> code(256);
  std::vector<float> scale(16);
  // Q4_K has minimums: leaving out the offsets is an argument error, as is a partial block.
  CHECK_THROWS_AS(
      q::affine_row(TensorType::Q4_K, src.data(), 256, code.data(), scale.data(), nullptr),
      ktx::Error);
  CHECK_THROWS_AS(
      q::affine_row(TensorType::Q6_K, src.data(), 100, code.data(), scale.data(), nullptr),
      ktx::Error);
}

TEST_CASE("quant: dequantize_row matches the gguf package on golden blocks", "[quant]") {
  struct Golden {
    TensorType type;
    int64_t n;
    uint64_t input_hash, output_hash;
  };
  const Golden golden[] = {
      {TensorType::F32, 64, 0x7a0108bccf146275ull, 0x7a0108bccf146275ull},
      {TensorType::F16, 64, 0x4ea53fd205a6e5caull, 0xf288b898f1dd4ff4ull},
      {TensorType::BF16, 64, 0x08cba2f4a8e0fcd1ull, 0xd1c9869316e93bb9ull},
      {TensorType::Q4_0, 64, 0x20d92bd7ec6e9c83ull, 0x66cc9e5359931503ull},
      {TensorType::Q4_1, 64, 0xb0536943279fad1cull, 0x4b8214a81c987c45ull},
      {TensorType::Q5_0, 64, 0xfe3fb01cb247cb9dull, 0x3fadfeea396f8145ull},
      {TensorType::Q5_1, 64, 0x76a1f360ae4efd0eull, 0x4aa4f995e5a1b555ull},
      {TensorType::Q8_0, 64, 0x984d0c89c27a8f0eull, 0xaf2a5905392296dfull},
      {TensorType::Q8_1, 64, 0x78fb6433db84cf45ull, 0x35a5c13a36a6d573ull},
      {TensorType::Q2_K, 512, 0x80e77322050cb01cull, 0x026841813c14af7cull},
      {TensorType::Q3_K, 512, 0xa9c3addf4c165ddfull, 0x935df07de1fd88e3ull},
      {TensorType::Q4_K, 512, 0x76c8828536ab336full, 0xc5f5bf5fae9170caull},
      {TensorType::Q5_K, 512, 0x4c4947e0c67e5f37ull, 0x49da021939c5b9e5ull},
      {TensorType::Q6_K, 512, 0x1bcab59568d8609cull, 0x92b9d7fd7b88eb8eull},
      {TensorType::Q8_K, 512, 0x68e0b2567273e079ull, 0x145f2a42a37710d4ull},
      {TensorType::IQ4_NL, 64, 0x3757f560b8bef790ull, 0x6a0215e67be4f744ull},
      {TensorType::IQ4_XS, 512, 0xdfbd6cae52af755aull, 0xad4cb8dfa6444835ull},
  };
  for (const Golden& g : golden) {
    INFO(name(g.type));
    const auto src = golden_bytes(g.type, g.n);
    REQUIRE(fnv1a(src.data(), src.size()) == g.input_hash);
    const auto y = dequantize_checked(g.type, src, g.n);
    CHECK(fnv1a(y.data(), y.size() * sizeof(float)) == g.output_hash);
  }
}

TEST_CASE("quant: dequantize_row of the float types is exact", "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16}) {
    const int64_t n = 37;
    INFO(name(t));
    const auto src = random_row(t, n, rnd, Scales::kAnyFinite);
    const auto y = dequantize_checked(t, src, n);
    for (int64_t i = 0; i < n; ++i) {
      float expected;
      if (t == TensorType::F32)
        std::memcpy(&expected, src.data() + 4 * i, 4);
      else if (t == TensorType::F16)
        expected = q::fp16_to_f32(get_u16(src.data() + 2 * i));
      else
        expected = q::bits_to_f32(static_cast<uint32_t>(get_u16(src.data() + 2 * i)) << 16);
      REQUIRE(q::f32_to_bits(y[i]) == q::f32_to_bits(expected));
    }
  }
}

// ---- quantize ---------------------------------------------------------------------------------

TEST_CASE("quant: quantize_row then dequantize_row stays within each format's error bound",
          "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (TensorType t : kOwnQuantTypes) {
    REQUIRE(q::can_quantize(t));
    for (int blocks : kBlockCounts) {
      // The float types (block size 1) are judged in groups of 32 as well.
      const int64_t bs = std::max<int64_t>(block_size(t), 32);
      const int64_t n = blocks * bs;
      INFO(name(t) << ", n = " << n);
      const auto x = rnd.activations(n);
      const auto bytes = quantize_checked(t, x);
      const auto y = dequantize_checked(t, bytes, n);
      for (int64_t b0 = 0; b0 < n; b0 += bs) {
        const BlockStats s = stats(x.data() + b0, bs);
        for (int64_t i = b0; i < b0 + bs; ++i) {
          double bound;
          if (t == TensorType::IQ4_NL) {
            const auto* blk = reinterpret_cast<const q::BlockIQ4_NL*>(bytes.data()) + b0 / 32;
            bound = iq4_nl_bound(q::fp16_to_f32(blk->d), s, x[i]);
          } else {
            bound = error_bound(t, s, x[i]);
          }
          const double err = std::fabs(static_cast<double>(x[i]) - y[i]);
          if (err > bound) {
            FAIL_CHECK("element " << i << ": x = " << x[i] << ", x' = " << y[i] << ", error " << err
                                  << " > bound " << bound);
            break;
          }
        }
      }
    }
  }
}

TEST_CASE("quant: quantize_row matches gguf and llama.cpp on a golden row", "[quant]") {
  const auto x = golden_floats(4096);
  REQUIRE(fnv1a(x.data(), x.size() * sizeof(float)) == 0xfd2a639f3c88308aull);
  const std::pair<TensorType, uint64_t> golden[] = {
      {TensorType::F16, 0x6a99d0a267838bcdull},  {TensorType::BF16, 0x676ddf398bc67254ull},
      {TensorType::Q4_0, 0xb324fac88aa3fd75ull}, {TensorType::Q4_1, 0x2599d88f2081ba77ull},
      {TensorType::Q5_0, 0x1c4d208868d45ec6ull}, {TensorType::Q5_1, 0xe91893ceb34de7dbull},
      {TensorType::Q8_0, 0xc6a1b76815a33ea5ull}, {TensorType::Q8_1, 0xa9c0ce6b394907b8ull},
      {TensorType::Q8_K, 0x93fa3b3ab2472b2aull}, {TensorType::IQ4_NL, 0xa6f711ff4f0a3f35ull},
  };
  for (const auto& [type, hash] : golden) {
    INFO(name(type));
    const auto bytes = quantize_checked(type, x);
    CHECK(fnv1a(bytes.data(), bytes.size()) == hash);
  }
}

TEST_CASE("quant: Q8_1's s and Q8_K's d and bsums describe their quants", "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (int blocks : kBlockCounts) {
    INFO("blocks " << blocks);
    const auto x1 = rnd.activations(blocks * 32);
    const auto b1 = quantize_checked(TensorType::Q8_1, x1);
    for (int i = 0; i < blocks; ++i) {
      q::BlockQ8_1 b;
      std::memcpy(&b, b1.data() + i * sizeof b, sizeof b);
      int sum = 0;
      for (int8_t v : b.qs) sum += v;
      const double exact = static_cast<double>(q::fp16_to_f32(b.d)) * sum;
      // s = f16(sum * d) with the unrounded d: two f16 roundings apart from d16 * sum.
      CHECK(std::fabs(q::fp16_to_f32(b.s) - exact) <= std::fabs(exact) * 2 * kHalfUlp + 1e-7);
    }

    const auto xk = rnd.activations(blocks * 256);
    const auto bk = quantize_checked(TensorType::Q8_K, xk);
    for (int i = 0; i < blocks; ++i) {
      q::BlockQ8_K b;
      std::memcpy(&b, bk.data() + i * sizeof b, sizeof b);
      const BlockStats s = stats(xk.data() + 256 * i, 256);
      CHECK(std::fabs(b.d * -127.0f - s.signed_max) <= 1e-6f * s.amax);
      for (int g = 0; g < 16; ++g) {
        int sum = 0;
        for (int e = 0; e < 16; ++e) sum += b.qs[16 * g + e];
        CHECK(b.bsums[g] == sum);
      }
      const auto lo = *std::min_element(std::begin(b.qs), std::end(b.qs));
      CHECK(lo >= -127);  // the extreme maps to exactly -127, nothing lower
    }
  }
}

TEST_CASE("quant: all-zero blocks quantize to exact zeros", "[quant]") {
  for (TensorType t : kOwnQuantTypes) {
    INFO(name(t));
    const int64_t n = 3 * std::max<int64_t>(block_size(t), 32);
    const std::vector<float> x(static_cast<size_t>(n), 0.0f);
    const auto bytes = quantize_checked(t, x);
    const auto y = dequantize_checked(t, bytes, n);
    for (float v : y) REQUIRE(v == 0.0f);
  }
}

// The K-quant and IQ4_XS quantizers belong to k_quantize.cpp and have their own tests; here only
// the wiring: reachable through quantize_row, every byte written, a dequantizable result.
TEST_CASE("quant: quantize_row reaches the K-quant and IQ4_XS quantizers", "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (TensorType t : kKQuantTypes) {
    REQUIRE(q::can_quantize(t));
    for (int blocks : kBlockCounts) {
      const int64_t n = blocks * 256;
      INFO(name(t) << ", n = " << n);
      const auto x = rnd.activations(n);
      const auto y = dequantize_checked(t, quantize_checked(t, x), n);
      for (int64_t b0 = 0; b0 < n; b0 += 256) {
        const float amax = stats(x.data() + b0, 256).amax;
        for (int64_t i = b0; i < b0 + 256; ++i) REQUIRE(std::fabs(x[i] - y[i]) <= amax);
      }
    }
  }
}

// ---- vec_dot ----------------------------------------------------------------------------------

TEST_CASE("quant: vec_dot_type pairs weights with llama.cpp's activation types", "[quant]") {
  using T = TensorType;
  const std::pair<T, T> pairs[] = {{T::F32, T::F32},   {T::F16, T::F16},     {T::BF16, T::BF16},
                                   {T::Q4_0, T::Q8_0}, {T::Q4_1, T::Q8_1},   {T::Q5_0, T::Q8_0},
                                   {T::Q5_1, T::Q8_1}, {T::Q8_0, T::Q8_0},   {T::Q2_K, T::Q8_K},
                                   {T::Q3_K, T::Q8_K}, {T::Q4_K, T::Q8_K},   {T::Q5_K, T::Q8_K},
                                   {T::Q6_K, T::Q8_K}, {T::IQ4_NL, T::Q8_0}, {T::IQ4_XS, T::Q8_K}};
  for (const auto& [weight, activation] : pairs) {
    INFO(name(weight));
    REQUIRE(q::vec_dot_type(weight) == activation);
  }
  for (T t : {T::Q8_1, T::Q8_K, T::IQ2_XXS, T::TQ1_0, T::I32}) {
    INFO(name(t));
    CHECK_FALSE(q::vec_dot_type(t).has_value());
  }
}

// vec_dot(x, y) against Σ dequant(x)_i * dequant(y)_i in double. Every float rounding in vec_dot
// is relative to one term of a block's sum (d·Σ or dmin·Σmin), so the tolerance is taken relative
// to "mag" = Σ_i |y_i| * Σ_terms |term_i|, where each term is the row dequantized with the other
// scale fields zeroed: 4 * (blocks + 4) f32 epsilons of it. Q4_1 and Q5_1 add the f16 rounding of
// Q8_1's s (s = f16(d * Σq), two f16 roundings away from the exact Σ y of the block).
TEST_CASE("quant: vec_dot equals the double-precision dot of the dequantized rows", "[quant]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for (TensorType t : kDotTypes) {
    const TensorType yt = *q::vec_dot_type(t);
    for (int blocks : kBlockCounts) {
      const int64_t n = blocks * std::max<int64_t>(block_size(t), 32);
      INFO(name(t) << " x " << name(yt) << ", n = " << n);
      const auto xb = random_row(t, n, rnd, Scales::kModerate);
      const auto ya = rnd.activations(n);
      const auto yb = quantize_checked(yt, ya);
      const auto xf = dequantize_checked(t, xb, n);
      const auto yf = dequantize_checked(yt, yb, n);

      double exact = 0.0;
      for (int64_t i = 0; i < n; ++i) exact += static_cast<double>(xf[i]) * yf[i];

      std::vector<std::vector<float>> terms;
      const auto fields = scale_fields(t);
      if (fields.size() <= 1) {
        terms.push_back(xf);
      } else {
        for (size_t keep : fields) {
          auto only = xb;
          const size_t ts = ktx::traits(t).type_size;
          for (size_t off = 0; off < only.size(); off += ts) {
            for (size_t f : fields) {
              if (f != keep) put_u16(only.data() + off + f, 0);
            }
          }
          terms.push_back(dequantize_checked(t, only, n));
        }
      }
      double mag = 0.0;
      for (const auto& term : terms) {
        for (int64_t i = 0; i < n; ++i) mag += std::fabs(static_cast<double>(term[i]) * yf[i]);
      }
      double tol = 4.0 * (blocks + 4) * FLT_EPSILON * mag;
      if (yt == TensorType::Q8_1) {
        for (int64_t b0 = 0; b0 < n; b0 += 32) {
          double ysum = 0.0;
          for (int64_t i = b0; i < b0 + 32; ++i) ysum += yf[i];
          tol +=
              std::fabs(terms[1][b0] * ysum) * 4 * kHalfUlp;  // terms[1] is m, constant per block
        }
      }

      const float got = q::vec_dot(t, n, xb.data(), yb.data());
      INFO("vec_dot " << got << ", exact " << exact << ", tolerance " << tol);
      CHECK(std::fabs(got - exact) <= tol);
    }
  }
}

// ---- argument checks --------------------------------------------------------------------------

TEST_CASE("quant: a length that is not a multiple of the block size is an invalid argument",
          "[quant]") {
  for (TensorType t : kDequantTypes) {
    const int64_t bad_n = block_size(t) == 1 ? -1 : block_size(t) + 1;
    INFO(name(t) << ", n = " << bad_n);
    std::vector<uint8_t> bytes(4096, 0);
    std::vector<float> floats(1024, 0.0f);
    auto check = [&](const ktx::Error& e) {
      CHECK(e.code() == ErrorCode::kInvalidArgument);
      const std::string msg = e.what();
      CHECK(msg.find(name(t)) != std::string::npos);
      CHECK(msg.find(std::to_string(bad_n)) != std::string::npos);
    };
    check(expect_error([&] { q::dequantize_row(t, bytes.data(), floats.data(), bad_n); }));
    if (q::can_quantize(t)) {
      check(expect_error([&] { q::quantize_row(t, floats.data(), bytes.data(), bad_n); }));
    }
    if (q::vec_dot_type(t)) {
      check(expect_error([&] { q::vec_dot(t, bad_n, bytes.data(), bytes.data()); }));
    }
  }
}

TEST_CASE("quant: a type without a reference is unsupported, and says which", "[quant]") {
  std::vector<uint8_t> bytes(4096, 0);
  std::vector<float> floats(1024, 0.0f);
  auto check = [](const ktx::Error& e, const std::string& type) {
    CHECK(e.code() == ErrorCode::kUnsupported);
    CHECK(std::string(e.what()).find(type) != std::string::npos);
  };
  for (TensorType t : {TensorType::IQ2_XXS, TensorType::TQ2_0, TensorType::MXFP4, TensorType::I8}) {
    INFO(name(t));
    CHECK_FALSE(q::can_dequantize(t));
    CHECK_FALSE(q::can_quantize(t));
    check(expect_error([&] { q::dequantize_row(t, bytes.data(), floats.data(), 256); }), name(t));
    check(expect_error([&] { q::quantize_row(t, floats.data(), bytes.data(), 256); }), name(t));
    check(expect_error([&] { q::vec_dot(t, 256, bytes.data(), bytes.data()); }), name(t));
  }
  // Activation types have no dot product of their own.
  for (TensorType t : {TensorType::Q8_1, TensorType::Q8_K}) {
    check(expect_error([&] { q::vec_dot(t, 256, bytes.data(), bytes.data()); }), name(t));
  }
  // An id ggml never assigned still gets a readable message.
  const auto bogus = static_cast<TensorType>(999);
  check(expect_error([&] { q::dequantize_row(bogus, bytes.data(), floats.data(), 32); }), "999");
}

TEST_CASE("quant: empty rows are allowed and null rows of nonzero length are not", "[quant]") {
  for (TensorType t : kDequantTypes) {
    INFO(name(t));
    q::dequantize_row(t, nullptr, nullptr, 0);
    if (q::can_quantize(t)) q::quantize_row(t, nullptr, nullptr, 0);
    if (q::vec_dot_type(t)) CHECK(q::vec_dot(t, 0, nullptr, nullptr) == 0.0f);
    std::vector<float> floats(static_cast<size_t>(block_size(t)));
    CHECK(expect_error([&] {
            q::dequantize_row(t, nullptr, floats.data(), block_size(t));
          }).code() == ErrorCode::kInvalidArgument);
  }
}
