// Tests of the GEMM kernels and panel packers (kernels/cpu/gemm.h, gemm_*_avx512.cpp,
// gemm_*_avx2.cpp) against the scalar references in lib/quant, on every tier this CPU runs: every
// type with a GEMM kernel, fresh random data each run (the seed is printed on failure;
// KTX_TEST_SEED=<n> replays one), outputs poisoned with NaN, rows and token counts that are not
// multiples of the tile (1, 2, 3, 5, 17 rows; 1 … 41 tokens, more panels than one pass takes), the
// last weight row ending at an unreadable page.
//
// What must match:
//   K-quants (Q4_K, Q5_K, Q6_K, IQ4_XS)   the reference's dot product bit for bit (NaN: any NaN),
//                                         also on raw random blocks and extreme f16 scales;
//   block quants (Q4_0, Q5_0, Q8_0, IQ4_NL, the same tier's one-row kernel bit for bit (so a
//   Q4_1, Q5_1)                           batch gives what the same tokens one at a time give),
//                                         and the reference within test_cpu_kernels.cpp's bound
//                                         (nb + nb/8 + 8) · 2^-24 · Σ|terms|; exactly where every
//                                         term and partial sum is exact (power-of-two scales);
//   float types (F32, F16, BF16)          the same tier's one-row kernel bit for bit, the
//                                         reference within f32 summation error.
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "guarded_memory.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

namespace {

namespace q = ktx::quant;
namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;

const TensorType kKQuantTypes[] = {TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K,
                                   TensorType::IQ4_XS};
const TensorType kBlockTypes[] = {TensorType::Q4_0,   TensorType::Q5_0, TensorType::Q8_0,
                                  TensorType::IQ4_NL, TensorType::Q4_1, TensorType::Q5_1};
const TensorType kFloatTypes[] = {TensorType::F32, TensorType::F16, TensorType::BF16};

bool is_k_quant(TensorType t) { return ktx::traits(t).block_size == 256; }
bool is_float(TensorType t) {
  return t == TensorType::F32 || t == TensorType::F16 || t == TensorType::BF16;
}

struct Random {
  uint32_t seed = initial_seed();
  std::mt19937 gen{seed};

  static uint32_t initial_seed() {
    if (const char* s = std::getenv("KTX_TEST_SEED"))
      return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
    return std::random_device{}();
  }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
  float sign() { return integer(0, 1) ? 1.0f : -1.0f; }
  float moderate() { return sign() * uniform(0.5f, 1.0f) * std::ldexp(1.0f, integer(-11, 2)); }
};

// Floats whose magnitude changes every 16 elements (so sub-block scales differ), with outliers.
std::vector<float> floats(Random& rnd, int64_t n) {
  std::vector<float> v(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t e = 0; e < n; ++e) {
    if (e % 16 == 0) scale = std::ldexp(1.0f, rnd.integer(-6, 3));
    float x = rnd.normal() * scale;
    if (rnd.integer(0, 63) == 0) x *= 50.0f;
    v[static_cast<size_t>(e)] = x;
  }
  return v;
}

void put_half(uint8_t* p, uint16_t h) { std::memcpy(p, &h, 2); }

// Offsets of a weight block's f16 scales: d, and dmin or SIZE_MAX.
struct Heads {
  size_t d, dmin;
};
Heads heads(TensorType t) {
  switch (t) {
    case TensorType::Q4_K:
      return {offsetof(q::BlockQ4_K, d), offsetof(q::BlockQ4_K, dmin)};
    case TensorType::Q5_K:
      return {offsetof(q::BlockQ5_K, d), offsetof(q::BlockQ5_K, dmin)};
    case TensorType::Q6_K:
      return {offsetof(q::BlockQ6_K, d), SIZE_MAX};
    case TensorType::IQ4_XS:
      return {offsetof(q::BlockIQ4_XS, d), SIZE_MAX};
    case TensorType::Q4_1:
      return {offsetof(q::BlockQ4_1, d), offsetof(q::BlockQ4_1, m)};
    case TensorType::Q5_1:
      return {offsetof(q::BlockQ5_1, d), offsetof(q::BlockQ5_1, m)};
    default:
      return {0, SIZE_MAX};  // the 32-element blocks start with d
  }
}

enum class Fill { kQuantized, kRaw, kExact };

// One weight row: quantized from floats, every byte random with moderate f16 scales, or (block
// quants) random bytes with power-of-two scales 2^-5 / 2^-4 so that every term is exact.
std::vector<uint8_t> weight_row(Random& rnd, TensorType t, int64_t n, Fill fill) {
  std::vector<uint8_t> row(ktx::row_size(t, n));
  if (fill == Fill::kQuantized) {
    const std::vector<float> x = floats(rnd, n);
    q::quantize_row(t, x.data(), row.data(), n);
    return row;
  }
  for (uint8_t& b : row) b = static_cast<uint8_t>(rnd.integer(0, 255));
  const Heads h = heads(t);
  const size_t block = ktx::traits(t).type_size;
  for (size_t off = 0; off < row.size(); off += block) {
    const float d =
        fill == Fill::kExact ? (rnd.integer(0, 1) ? 0.03125f : 0.0625f) : rnd.moderate();
    put_half(row.data() + off + h.d, q::f32_to_fp16(d));
    if (h.dmin != SIZE_MAX) put_half(row.data() + off + h.dmin, q::f32_to_fp16(rnd.moderate()));
  }
  return row;
}

// One activation row of the dot type: quantized from floats, or (kRaw) any int8 quants with
// consistent bsums and a moderate scale (Q8_K: -128 included, which the quantizer never writes),
// or (kExact) quants in [-127, 127] with a power-of-two Q8_0 scale.
std::vector<uint8_t> activation_row(Random& rnd, TensorType yt, int64_t n, Fill fill) {
  std::vector<uint8_t> row(ktx::row_size(yt, n));
  if (fill == Fill::kQuantized) {
    const std::vector<float> x = floats(rnd, n);
    q::quantize_row(yt, x.data(), row.data(), n);
    return row;
  }
  if (yt == TensorType::Q8_K) {
    auto* b = reinterpret_cast<q::BlockQ8_K*>(row.data());
    for (int64_t i = 0; i < n / 256; ++i) {
      b[i].d = rnd.moderate();
      for (int8_t& v : b[i].qs) v = static_cast<int8_t>(rnd.integer(-128, 127));
      for (int g = 0; g < 16; ++g) {
        int s = 0;
        for (int e = 16 * g; e < 16 * g + 16; ++e) s += b[i].qs[e];
        b[i].bsums[g] = static_cast<int16_t>(s);
      }
    }
  } else if (yt == TensorType::Q8_1) {
    // s = d · Σqs as the quantizer stores it (an f16): the kernels read it for the minimums.
    auto* b = reinterpret_cast<q::BlockQ8_1*>(row.data());
    for (int64_t i = 0; i < n / 32; ++i) {
      const float d =
          fill == Fill::kExact ? (rnd.integer(0, 1) ? 0.03125f : 0.0625f) : rnd.moderate();
      b[i].d = q::f32_to_fp16(d);
      int sum = 0;
      for (int8_t& v : b[i].qs) {
        v = static_cast<int8_t>(rnd.integer(-127, 127));
        sum += v;
      }
      b[i].s = q::f32_to_fp16(q::fp16_to_f32(b[i].d) * static_cast<float>(sum));
    }
  } else {
    auto* b = reinterpret_cast<q::BlockQ8_0*>(row.data());
    for (int64_t i = 0; i < n / 32; ++i) {
      const float d =
          fill == Fill::kExact ? (rnd.integer(0, 1) ? 0.03125f : 0.0625f) : rnd.moderate();
      b[i].d = q::f32_to_fp16(d);
      for (int8_t& v : b[i].qs) v = static_cast<int8_t>(rnd.integer(-127, 127));
    }
  }
  return row;
}

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return q::f32_to_bits(a) == q::f32_to_bits(b);
}

std::string hex(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a (%.9g)", static_cast<double>(f), static_cast<double>(f));
  return buf;
}

// Σ|terms| of a block-quant row, each term the reference on one block; and whether every term
// is a multiple of 2^-10 with Σ|terms| < 2^14 (then any summation order is exact).
struct Terms {
  double abs_sum = 0;
  bool exact = true;
};
Terms block_terms(TensorType t, int64_t n, const uint8_t* x, const uint8_t* y) {
  const TensorType yt = *q::vec_dot_type(t);
  const size_t xb = ktx::traits(t).type_size, yb = ktx::traits(yt).type_size;
  Terms terms;
  for (int64_t b = 0; b < n / 32; ++b) {
    const double term = q::vec_dot(t, 32, x + b * xb, y + b * yb);
    terms.abs_sum += std::fabs(term);
    if (term * 1024 != std::floor(term * 1024)) terms.exact = false;
  }
  if (terms.abs_sum >= 16384) terms.exact = false;
  return terms;
}

// The panels of `tokens` activation rows, packed twice into buffers poisoned differently: every
// byte must be written (the two agree).
std::vector<uint8_t> pack_panels(cpu::GemmPackFn pack, TensorType yt, int64_t n,
                                 const std::vector<std::vector<uint8_t>>& act) {
  const auto tokens = static_cast<int64_t>(act.size());
  const int64_t n_panels = (tokens + cpu::kGemmTokens - 1) / cpu::kGemmTokens;
  const size_t bytes = cpu::gemm_panel_bytes(yt, n);
  REQUIRE(bytes % 64 == 0);
  std::vector<uint8_t> a(bytes * static_cast<size_t>(n_panels) + 16, 0xA5);
  std::vector<uint8_t> b(a.size(), 0x5A);
  for (int64_t p = 0; p < n_panels; ++p) {
    const void* rows[cpu::kGemmTokens] = {};
    const int64_t count = std::min<int64_t>(cpu::kGemmTokens, tokens - p * cpu::kGemmTokens);
    for (int64_t i = 0; i < count; ++i)
      rows[i] = act[static_cast<size_t>(p * cpu::kGemmTokens + i)].data();
    pack(n, rows, count, a.data() + p * bytes);
    pack(n, rows, count, b.data() + p * bytes);
  }
  for (size_t g = a.size() - 16; g < a.size(); ++g) REQUIRE(a[g] == 0xA5);  // nothing past the end
  a.resize(a.size() - 16);
  b.resize(b.size() - 16);
  REQUIRE(a == b);
  return a;
}

struct Case {
  cpu::Isa isa;
  TensorType type;
  cpu::GemmFn gemm;
  cpu::GemmPackFn pack;
  cpu::VecDotFn one_row;  // the same tier's GEMV kernel
};

// Every type with a GEMM kernel on each tier this CPU and build can run (AVX-512 VNNI and AVX2),
// each with its own tier's packer and one-row kernel; a warning for the tiers that are missing.
std::vector<Case> cases(const TensorType* types, size_t count) {
  std::vector<Case> out;
  for (cpu::Isa isa : {cpu::Isa::kAvx512Vnni, cpu::Isa::kAvx2}) {
    if (!cpu::isa_available(isa)) {
      WARN("this CPU or build lacks " << cpu::isa_name(isa) << ": its GEMM kernels are not tested");
      continue;
    }
    for (size_t i = 0; i < count; ++i) {
      const TensorType t = types[i];
      const cpu::GemmFn gemm = cpu::isa_gemm(isa, t);
      const cpu::GemmPackFn pack = cpu::isa_gemm_pack(isa, *q::vec_dot_type(t));
      REQUIRE(gemm != nullptr);
      REQUIRE(pack != nullptr);
      // BF16's one-row kernel is AVX512_BF16's where the CPU has it (vec_dot_fn's choice).
      cpu::VecDotFn one_row = cpu::isa_vec_dot(isa, t);
      if (isa == cpu::Isa::kAvx512Vnni && t == TensorType::BF16 &&
          cpu::avx512bf16_vec_dot_bf16() != nullptr) {
        one_row = cpu::avx512bf16_vec_dot_bf16();
      }
      out.push_back({isa, t, gemm, pack, one_row});
    }
  }
  return out;
}

// rows × tokens through the GEMM against the per-(row, token) expectations; the output has gaps
// after each token's row block and one extra token row, all NaN, which must stay NaN.
void check_gemm(const Case& c, Random& rnd, int64_t n, int64_t rows, int64_t tokens, Fill wfill,
                Fill yfill) {
  const TensorType yt = *q::vec_dot_type(c.type);
  const size_t row_bytes = ktx::row_size(c.type, n);
  std::vector<uint8_t> all;
  for (int64_t r = 0; r < rows; ++r) {
    // Every third row raw bytes (not for the float types, where they are infinities and NaNs).
    const Fill f =
        wfill == Fill::kQuantized && r % 3 == 2 && !is_float(c.type) ? Fill::kRaw : wfill;
    const std::vector<uint8_t> row = weight_row(rnd, c.type, n, f);
    all.insert(all.end(), row.begin(), row.end());
  }
  const GuardedBytes x(all);
  std::vector<std::vector<uint8_t>> act;
  for (int64_t t = 0; t < tokens; ++t) act.push_back(activation_row(rnd, yt, n, yfill));
  const std::vector<uint8_t> panels = pack_panels(c.pack, yt, n, act);

  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int64_t ldo = rows + 3;
  std::vector<float> out(static_cast<size_t>((tokens + 1) * ldo), nan);
  c.gemm(n, x.data(), row_bytes, rows, panels.data(), tokens, out.data(), static_cast<size_t>(ldo));

  int failures = 0;
  for (int64_t t = 0; t < tokens && failures < 5; ++t) {
    for (int64_t r = 0; r < rows && failures < 5; ++r) {
      const uint8_t* xr = x.data() + static_cast<size_t>(r) * row_bytes;
      const float got = out[static_cast<size_t>(t * ldo + r)];
      const float ref = q::vec_dot(c.type, n, xr, act[static_cast<size_t>(t)].data());
      INFO(cpu::isa_name(c.isa) << " " << ktx::type_name(c.type) << ", n = " << n << ", " << rows
                                << " rows × " << tokens << " tokens: row " << r << ", token " << t
                                << ": gemm " << hex(got) << ", reference " << hex(ref));
      bool ok;
      if (is_k_quant(c.type)) {
        ok = same_float(got, ref);
      } else if (is_float(c.type)) {
        // The one-row kernel bit for bit; the reference (a double sum) within f32 summation
        // error over 16-64 lanes.
        const float one = c.one_row(n, xr, act[static_cast<size_t>(t)].data());
        INFO("one-row kernel " << hex(one));
        std::vector<float> xf(static_cast<size_t>(n)), yf(static_cast<size_t>(n));
        q::dequantize_row(c.type, xr, xf.data(), n);
        q::dequantize_row(yt, act[static_cast<size_t>(t)].data(), yf.data(), n);
        double abs_sum = 0;
        for (size_t e = 0; e < xf.size(); ++e) abs_sum += std::fabs(double(xf[e]) * yf[e]);
        const double tol = (n / 16.0 + 16) * 0x1p-24 * abs_sum;
        ok = same_float(got, one) && std::fabs(double(got) - ref) <= tol;
      } else {
        const float one = c.one_row(n, xr, act[static_cast<size_t>(t)].data());
        INFO("one-row kernel " << hex(one));
        const Terms terms = block_terms(c.type, n, xr, act[static_cast<size_t>(t)].data());
        const double tol = (n / 32.0 + n / 256.0 + 8) * 0x1p-24 * terms.abs_sum;
        ok = same_float(got, one) &&
             (terms.exact ? got == ref : std::fabs(double(got) - ref) <= tol);
        // (Q8_1's s is d · Σqs rounded to f16: the minimum terms of Q4_1 / Q5_1 need not be.)
        const bool with_min = c.type == TensorType::Q4_1 || c.type == TensorType::Q5_1;
        if (yfill == Fill::kExact && wfill == Fill::kExact && !with_min) REQUIRE(terms.exact);
      }
      CHECK(ok);
      if (!ok) ++failures;
    }
  }
  bool untouched = true;
  for (int64_t t = 0; t <= tokens; ++t) {
    for (int64_t r = t < tokens ? rows : 0; r < ldo; ++r) {
      untouched = untouched && std::isnan(out[static_cast<size_t>(t * ldo + r)]);
    }
  }
  CHECK(untouched);
}

const int64_t kRows[] = {1, 2, 3, 5, 17};
const int64_t kTokens[] = {1, 3, 8, 9, 17, 41};

}  // namespace

TEST_CASE("gemm: dispatch, panel sizes and the KTX_CPU_ISA cap", "[cpu_gemm]") {
  CHECK(cpu::gemm_panel_bytes(TensorType::Q8_K, 512) == 2 * cpu::kGemmPanelQ8KBytes);
  CHECK(cpu::gemm_panel_bytes(TensorType::Q8_0, 512) == cpu::kGemmPanelQ8_0Bytes);
  CHECK(cpu::gemm_panel_bytes(TensorType::Q8_0, 544) == 2 * cpu::kGemmPanelQ8_0Bytes);
  CHECK(cpu::gemm_panel_bytes(TensorType::F32, 512) == 8 * 512 * 4);
  CHECK(cpu::gemm_panel_bytes(TensorType::BF16, 3) == 64);  // 48 bytes, padded to 64
  CHECK(cpu::gemm_panel_bytes(TensorType::Q8_1, 512) == cpu::kGemmPanelQ8_1Bytes);
  CHECK(cpu::gemm_panel_bytes(TensorType::Q8_1, 544) == 2 * cpu::kGemmPanelQ8_1Bytes);
  for (TensorType t : {TensorType::Q2_K, TensorType::Q3_K}) {
    CHECK(cpu::gemm_fn(t) == nullptr);
  }
  CHECK(cpu::isa_gemm(cpu::Isa::kScalar, TensorType::Q4_K) == nullptr);
  CHECK(cpu::isa_gemm_pack(cpu::Isa::kScalar, TensorType::Q8_K) == nullptr);
  // The selected tier's kernels, unless KTX_GEMM=0 turns them off.
  const char* env = std::getenv("KTX_GEMM");
  const bool on = env == nullptr || std::string(env) != "0";
  const cpu::Isa isa = cpu::selected_isa();
  const bool quantized = on && isa != cpu::Isa::kScalar;
  const bool floats = quantized;
  for (TensorType t : kKQuantTypes) CHECK((cpu::gemm_fn(t) != nullptr) == quantized);
  for (TensorType t : kBlockTypes) CHECK((cpu::gemm_fn(t) != nullptr) == quantized);
  for (TensorType t : kFloatTypes) CHECK((cpu::gemm_fn(t) != nullptr) == floats);
  CHECK((cpu::gemm_pack_fn(TensorType::Q8_K) != nullptr) == quantized);
  CHECK((cpu::gemm_pack_fn(TensorType::Q8_0) != nullptr) == quantized);
  CHECK((cpu::gemm_pack_fn(TensorType::Q8_1) != nullptr) == quantized);
  CHECK((cpu::gemm_pack_fn(TensorType::F32) != nullptr) == floats);
  if (quantized) {
    CHECK(cpu::gemm_fn(TensorType::Q4_K) == cpu::isa_gemm(isa, TensorType::Q4_K));
    CHECK(cpu::gemm_pack_fn(TensorType::Q8_K) == cpu::isa_gemm_pack(isa, TensorType::Q8_K));
  }
}

TEST_CASE("gemm: K-quant tiles equal the reference bit for bit, awkward shapes", "[cpu_gemm]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Case& c : cases(kKQuantTypes, std::size(kKQuantTypes))) {
    for (int64_t rows : kRows) {
      for (int64_t tokens : kTokens) {
        const int64_t n = 256 * rnd.integer(1, 5);
        check_gemm(c, rnd, n, rows, tokens, Fill::kQuantized, Fill::kQuantized);
      }
    }
  }
}

TEST_CASE("gemm: K-quant tiles on raw random blocks and activations with -128", "[cpu_gemm]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Case& c : cases(kKQuantTypes, std::size(kKQuantTypes))) {
    for (int draw = 0; draw < 4; ++draw) {
      check_gemm(c, rnd, 256 * rnd.integer(1, 3), rnd.integer(1, 6), rnd.integer(1, 20), Fill::kRaw,
                 Fill::kRaw);
    }
  }
}

TEST_CASE("gemm: K-quant tiles with extreme scales keep the reference's infinities and NaNs",
          "[cpu_gemm]") {
  // Largest, smallest normal and subnormal halves, zeros and inf/NaN for d and dmin; the lanes of
  // one tile must not leak into each other.
  const uint16_t halves[] = {0x7BFF, 0xFBFF, 0x0400, 0x0001, 0x8000, 0x7C00, 0x7E00, 0x3C00};
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Case& c : cases(kKQuantTypes, std::size(kKQuantTypes))) {
    const int64_t n = 512, rows = 3, tokens = 11;
    const Heads h = heads(c.type);
    const size_t block = ktx::traits(c.type).type_size;
    std::vector<uint8_t> all;
    for (int64_t r = 0; r < rows; ++r) {
      std::vector<uint8_t> row = weight_row(rnd, c.type, n, Fill::kRaw);
      for (size_t off = 0; off < row.size(); off += block) {
        put_half(row.data() + off + h.d, halves[rnd.integer(0, 7)]);
        if (h.dmin != SIZE_MAX) put_half(row.data() + off + h.dmin, halves[rnd.integer(0, 7)]);
      }
      all.insert(all.end(), row.begin(), row.end());
    }
    std::vector<std::vector<uint8_t>> act;
    for (int64_t t = 0; t < tokens; ++t) {
      act.push_back(activation_row(rnd, TensorType::Q8_K, n, Fill::kRaw));
      auto* b = reinterpret_cast<q::BlockQ8_K*>(act.back().data());
      const float scales[] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, 0.0f, 1.0f};
      for (int64_t i = 0; i < n / 256; ++i) b[i].d = scales[rnd.integer(0, 5)];
    }
    const std::vector<uint8_t> panels = pack_panels(c.pack, TensorType::Q8_K, n, act);
    std::vector<float> out(static_cast<size_t>(tokens * rows),
                           std::numeric_limits<float>::quiet_NaN());
    c.gemm(n, all.data(), ktx::row_size(c.type, n), rows, panels.data(), tokens, out.data(),
           static_cast<size_t>(rows));
    for (int64_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float ref = q::vec_dot(c.type, n, all.data() + r * ktx::row_size(c.type, n),
                                     act[static_cast<size_t>(t)].data());
        const float got = out[static_cast<size_t>(t * rows + r)];
        INFO(cpu::isa_name(c.isa) << " " << ktx::type_name(c.type) << " row " << r << " token " << t
                                  << ": " << hex(got) << " vs " << hex(ref));
        CHECK(same_float(got, ref));
      }
    }
  }
}

TEST_CASE("gemm: block-quant tiles equal the one-row kernel and the reference, awkward shapes",
          "[cpu_gemm]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  // 1, 3, 16, 17 and 44 blocks: short rows, one full group of 16, a group and one, V2-Lite's
  // 1408-element expert down rows (two groups and a short one).
  const int64_t lengths[] = {32, 96, 512, 544, 1408};
  for (const Case& c : cases(kBlockTypes, std::size(kBlockTypes))) {
    for (int64_t rows : kRows) {
      for (int64_t tokens : kTokens) {
        const int64_t n = lengths[rnd.integer(0, 4)];
        check_gemm(c, rnd, n, rows, tokens, Fill::kQuantized, Fill::kQuantized);
      }
    }
    for (int draw = 0; draw < 4; ++draw) {
      check_gemm(c, rnd, lengths[rnd.integer(0, 4)], rnd.integer(1, 5), rnd.integer(1, 20),
                 Fill::kExact, Fill::kExact);
      check_gemm(c, rnd, lengths[rnd.integer(0, 4)], rnd.integer(1, 5), rnd.integer(1, 20),
                 Fill::kRaw, Fill::kRaw);
    }
  }
}

TEST_CASE("gemm: float tiles equal the one-row kernel and the reference, awkward shapes",
          "[cpu_gemm]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  // Lengths around the kernels' steps (AVX-512: 16 lanes, 64 per step, 128 for vdpbf16ps; AVX2:
  // 8 lanes, 32 per step): tails only, one step, a step and a masked tail, a step, an 8-element
  // step and a tail (47), V2-Lite's 1408 and a full hidden row.
  const int64_t lengths[] = {1, 7, 16, 47, 64, 129, 200, 1408, 2048};
  for (const Case& c : cases(kFloatTypes, std::size(kFloatTypes))) {
    for (int64_t n : lengths) check_gemm(c, rnd, n, 3, 9, Fill::kQuantized, Fill::kQuantized);
    for (int64_t rows : kRows) {
      for (int64_t tokens : kTokens) {
        const int64_t n = lengths[rnd.integer(0, 8)];
        check_gemm(c, rnd, n, rows, tokens, Fill::kQuantized, Fill::kQuantized);
      }
    }
  }
}

TEST_CASE("gemm: no rows or no tokens write nothing", "[cpu_gemm]") {
  std::vector<Case> all = cases(kKQuantTypes, std::size(kKQuantTypes));
  for (const Case& c : cases(kBlockTypes, std::size(kBlockTypes))) all.push_back(c);
  for (const Case& c : cases(kFloatTypes, std::size(kFloatTypes))) all.push_back(c);
  for (const Case& c : all) {
    float out[4] = {1, 2, 3, 4};
    std::vector<uint8_t> w(ktx::row_size(c.type, 256));
    std::vector<uint8_t> panel(cpu::gemm_panel_bytes(*q::vec_dot_type(c.type), 256));
    c.gemm(256, w.data(), w.size(), 0, panel.data(), 5, out, 1);
    c.gemm(256, w.data(), w.size(), 1, panel.data(), 0, out, 1);
    CHECK((out[0] == 1 && out[1] == 2 && out[2] == 3 && out[3] == 4));
  }
}
