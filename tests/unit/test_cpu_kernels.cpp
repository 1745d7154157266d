// Tests of the SIMD kernels in kernels/cpu/legacy_*.cpp (the 32-element block quants × Q8_0/Q8_1,
// F32/F16/BF16, the activation quantizers) and of the dispatch in vec_dot.h, against the scalar
// references in lib/quant. Every kernel of every tier this CPU can run (the others are skipped
// with a warning), fresh random data each run (the seed is printed on failure; KTX_TEST_SEED=<n>
// replays one), rows of 1, 3, 7, 16, 33 and 50 blocks placed so that they end at an unreadable
// page (an over-read crashes).
//
// What must match:
//   block dots   each block's term (float(isum) * (dx * dy) [+ mx * sy]) is the reference's, only
//                the order of adding the terms differs. With power-of-two scales every term and
//                every partial sum is exact, so the results must be equal: this checks the integer
//                sums. With ordinary scales: |kernel - ref| <= (nb + nb/8 + 8) · 2^-24 · Σ|terms|,
//                the two float summation-error bounds added.
//   float dots   the reference sums in double; the kernels in 32..64 f32 lanes:
//                |kernel - ref| <= (n/16 + 16) · 2^-24 · Σ|x·y|. Equal on small-integer data.
//   quantizers   byte-identical, also on NaN, ±inf, subnormals and exact rounding ties.
//   multi-row    bit-identical to the one-row kernel of the same tier, row by row.
//   matmul       lib/ops/cpu/linear.cpp's products equal the dispatched kernel bit for bit.
// The K-quant kernels have their own tests (test_cpu_kquant_kernels.cpp).
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "guarded_memory.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/onednn_matmul.h"
#include "quant/blocks.h"
#include "quant/fp16.h"
#include "runtime/thread_pool.h"

namespace {

namespace q = ktx::quant;
namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;

const TensorType kBlockTypes[] = {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0,
                                  TensorType::Q5_1, TensorType::Q8_0, TensorType::IQ4_NL};
const TensorType kFloatTypes[] = {TensorType::F32, TensorType::F16, TensorType::BF16};
const TensorType kActivationTypes[] = {TensorType::Q8_0, TensorType::Q8_1, TensorType::Q8_K,
                                       TensorType::F16, TensorType::BF16};
const int kBlockCounts[] = {1, 3, 7, 16, 33, 50};
const int64_t kFloatLengths[] = {1, 3, 7, 33, 100, 1056};

std::string name(TensorType t) { return std::string(ktx::type_name(t)); }

// ---- random data ------------------------------------------------------------------------------

struct Random {
  uint32_t seed = initial_seed();
  std::mt19937 gen{seed};

  static uint32_t initial_seed() {
    if (const char* s = std::getenv("KTX_TEST_SEED")) {
      return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
    }
    return std::random_device{}();
  }
  int integer(int lo, int hi) { return std::uniform_int_distribution<int>(lo, hi)(gen); }
  float uniform(float lo, float hi) { return std::uniform_real_distribution<float>(lo, hi)(gen); }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
  float sign() { return integer(0, 1) ? 1.0f : -1.0f; }
  // A scale of ordinary size, either sign (2^-12 .. 2^1).
  float moderate() { return sign() * uniform(0.5f, 1.0f) * std::ldexp(1.0f, integer(-11, 2)); }
};

// Exact mode: every scale 2^-5 or 2^-4 (m and s: a small integer times 2^-5), so that each term is
// a multiple of 2^-10 far below 2^14 and all partial sums are exact in f32 in any order. The
// scales still differ from block to block, so a block paired with the wrong scale shows.
enum class Mode { kExact, kRandom };

float exact_scale(Random& rnd) { return rnd.integer(0, 1) ? 0.03125f : 0.0625f; }
float exact_small(Random& rnd) { return 0.03125f * static_cast<float>(rnd.integer(-64, 64)); }

void put_half(uint8_t* p, float v) {
  const uint16_t h = q::f32_to_fp16(v);
  std::memcpy(p, &h, 2);
}

// Weight rows: random bytes for the quants (any code is valid, Q8_0's -128 included), then the
// scales: d, and m where the format has one.
std::vector<uint8_t> weight_row(TensorType t, int64_t n, Random& rnd, Mode mode) {
  std::vector<uint8_t> row(ktx::row_size(t, n));
  for (auto& b : row) b = static_cast<uint8_t>(rnd.integer(0, 255));
  const size_t block = ktx::traits(t).type_size;
  for (size_t off = 0; off < row.size(); off += block) {
    put_half(row.data() + off, mode == Mode::kExact ? exact_scale(rnd) : rnd.moderate());  // d
    if (t == TensorType::Q4_1 || t == TensorType::Q5_1) {                                  // m
      put_half(row.data() + off + 2, mode == Mode::kExact ? exact_small(rnd) : rnd.moderate());
    }
  }
  return row;
}

// Activation rows as the quantizers write them: Q8_0/Q8_1 quants in [-127, 127] (never -128), a
// d, and Q8_1's s (any value: the dot only multiplies it).
std::vector<uint8_t> activation_row(TensorType t, int64_t n, Random& rnd, Mode mode) {
  std::vector<uint8_t> row(ktx::row_size(t, n));
  const size_t block = ktx::traits(t).type_size;
  const size_t qs = t == TensorType::Q8_1 ? offsetof(q::BlockQ8_1, qs) : offsetof(q::BlockQ8_0, qs);
  for (size_t off = 0; off < row.size(); off += block) {
    for (size_t j = qs; j < block; ++j) row[off + j] = static_cast<uint8_t>(rnd.integer(-127, 127));
    put_half(row.data() + off, mode == Mode::kExact ? exact_scale(rnd) : rnd.moderate());
    if (t == TensorType::Q8_1) {
      put_half(row.data() + off + 2, mode == Mode::kExact ? exact_small(rnd) : rnd.moderate() * 64);
    }
  }
  return row;
}

// F32/F16/BF16 rows: normals of a few magnitudes, or small integers / 16 in exact mode.
std::vector<uint8_t> float_row(TensorType t, int64_t n, Random& rnd, Mode mode) {
  std::vector<uint8_t> row(ktx::row_size(t, n));
  for (int64_t i = 0; i < n; ++i) {
    const float v = mode == Mode::kExact ? 0.0625f * static_cast<float>(rnd.integer(-64, 64))
                                         : rnd.normal() * std::ldexp(1.0f, rnd.integer(-4, 4));
    if (t == TensorType::F32) {
      std::memcpy(row.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = t == TensorType::F16 ? q::f32_to_fp16(v) : q::f32_to_bf16(v);
      std::memcpy(row.data() + 2 * i, &h, 2);
    }
  }
  return row;
}

// `rows` rows of `cols` normal floats quantized to `t`, one after another.
std::vector<uint8_t> random_matrix(Random& rnd, TensorType t, int64_t rows, int64_t cols) {
  std::vector<uint8_t> bytes;
  for (int64_t r = 0; r < rows; ++r) {
    std::vector<float> v(static_cast<size_t>(cols));
    for (float& e : v) e = rnd.normal();
    std::vector<uint8_t> row(ktx::row_size(t, cols));
    q::quantize_row(t, v.data(), row.data(), cols);
    bytes.insert(bytes.end(), row.begin(), row.end());
  }
  return bytes;
}

// A tensor's description for weight_matrix(): [cols × rows] of `t` at `data`.
ktx::gguf::TensorInfo matrix_info(TensorType t, int64_t rows, int64_t cols, const uint8_t* data,
                                  size_t size) {
  ktx::gguf::TensorInfo info;
  info.name = "blk.0.test.weight";
  info.type = t;
  info.shape = {cols, rows};
  info.n_elements = static_cast<uint64_t>(cols * rows);
  info.n_bytes = size;
  info.data = data;
  return info;
}

// ---- rows that end at an unreadable page ------------------------------------------------------

// ---- the kernels under test -------------------------------------------------------------------

struct DotKernel {
  std::string name;
  cpu::VecDotFn fn;
};

// Every SIMD dot for `t` this CPU can run; the tiers it cannot are reported once per call.
std::vector<DotKernel> simd_dots(TensorType t) {
  std::vector<DotKernel> out;
  for (cpu::Isa isa : cpu::kAllIsas) {
    if (isa == cpu::Isa::kScalar) continue;
    if (!cpu::isa_available(isa)) {
      WARN("this CPU or build lacks " << cpu::isa_name(isa) << ": its kernels are not tested");
      continue;
    }
    const cpu::VecDotFn fn = cpu::isa_vec_dot(isa, t);
    REQUIRE(fn != nullptr);
    out.push_back({std::string(cpu::isa_name(isa)), fn});
  }
  if (t == TensorType::BF16) {
    if (const cpu::VecDotFn fn = cpu::avx512bf16_vec_dot_bf16()) {
      out.push_back({"avx512bf16", fn});
    } else {
      WARN("this CPU or build lacks AVX512_BF16: vdpbf16ps is not tested");
    }
  }
  return out;
}

// Σ|terms| of a block row, each term from the reference on that block alone; and whether their
// sum is exact in f32 in any order (every term a multiple of 2^-10, Σ|terms| < 2^14).
struct Terms {
  double abs_sum = 0;
  bool exact_in_any_order = true;
};

Terms block_terms(TensorType t, int64_t nb, const uint8_t* x, const uint8_t* y) {
  const TensorType yt = *q::vec_dot_type(t);
  const size_t xb = ktx::traits(t).type_size, yb = ktx::traits(yt).type_size;
  Terms terms;
  for (int64_t b = 0; b < nb; ++b) {
    const double term = q::vec_dot(t, 32, x + b * xb, y + b * yb);
    terms.abs_sum += std::fabs(term);
    if (term * 1024 != std::floor(term * 1024)) terms.exact_in_any_order = false;
  }
  if (terms.abs_sum >= 16384) terms.exact_in_any_order = false;
  return terms;
}

double float_abs_sum(TensorType t, int64_t n, const uint8_t* x, const uint8_t* y) {
  std::vector<float> a(static_cast<size_t>(n)), b(static_cast<size_t>(n));
  q::dequantize_row(t, x, a.data(), n);
  q::dequantize_row(t, y, b.data(), n);
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += std::fabs(static_cast<double>(a[i]) * b[i]);
  return s;
}

}  // namespace

TEST_CASE("cpu kernels: feature detection and the KTX_CPU_ISA names", "[cpu_kernels]") {
  const cpu::CpuFeatures& f = cpu::cpu_features();
  INFO("selected " << cpu::isa_name(cpu::selected_isa()) << ", avx2 " << f.avx2 << ", avx512f "
                   << f.avx512f << ", vnni " << f.avx512vnni << ", vbmi " << f.avx512vbmi
                   << ", bf16 " << f.avx512bf16);
  CHECK(cpu::isa_available(cpu::Isa::kScalar));
  for (cpu::Isa isa : cpu::kAllIsas) {
    CHECK(cpu::isa_from_name(cpu::isa_name(isa)) == isa);
    // A tier the CPU can run implies every lower one.
    if (cpu::isa_available(isa) && isa != cpu::Isa::kScalar) {
      CHECK(cpu::isa_available(static_cast<cpu::Isa>(static_cast<int>(isa) - 1)));
    }
  }
  CHECK_FALSE(cpu::isa_from_name("avx512").has_value());
  CHECK_FALSE(cpu::isa_from_name("").has_value());
  CHECK(cpu::isa_available(cpu::selected_isa()));
  CHECK(cpu::active_isa() == cpu::isa_name(cpu::selected_isa()));
  if (f.avx512vnni) CHECK(f.avx512f);
}

TEST_CASE("cpu kernels: the dispatch table covers every reference type", "[cpu_kernels]") {
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q4_0,
                       TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
                       TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
                       TensorType::Q6_K, TensorType::IQ4_NL, TensorType::IQ4_XS}) {
    INFO(name(t));
    REQUIRE(q::vec_dot_type(t).has_value());
    CHECK(cpu::vec_dot_fn(t) != nullptr);
    CHECK(cpu::isa_vec_dot(cpu::Isa::kScalar, t) != nullptr);
  }
  for (TensorType t : {TensorType::F32, TensorType::F16, TensorType::BF16, TensorType::Q8_0,
                       TensorType::Q8_1, TensorType::Q8_K}) {
    INFO(name(t));
    CHECK(cpu::quantize_row_fn(t) != nullptr);
  }
  // Activation-only and unsupported types have no dot.
  CHECK(cpu::vec_dot_fn(TensorType::Q8_K) == nullptr);
  CHECK(cpu::vec_dot_fn(TensorType::IQ2_XXS) == nullptr);
  CHECK(cpu::vec_dot_fn(static_cast<TensorType>(1000)) == nullptr);
}

TEST_CASE("cpu kernels: block-quant dots against the reference", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (TensorType t : kBlockTypes) {
    const TensorType yt = *q::vec_dot_type(t);
    for (const DotKernel& k : simd_dots(t)) {
      for (int nb : kBlockCounts) {
        for (Mode mode : {Mode::kExact, Mode::kRandom}) {
          const int64_t n = 32 * nb;
          INFO(k.name << " " << name(t) << " × " << name(yt) << ", " << nb << " blocks, "
                      << (mode == Mode::kExact ? "power-of-two scales" : "random scales"));
          const GuardedBytes x(weight_row(t, n, rnd, mode));
          const GuardedBytes y(activation_row(yt, n, rnd, mode));
          const float ref = q::vec_dot(t, n, x.data(), y.data());
          const float got = k.fn(n, x.data(), y.data());
          const Terms terms = block_terms(t, nb, x.data(), y.data());
          INFO("kernel " << got << ", reference " << ref << ", Σ|terms| " << terms.abs_sum);
          if (mode == Mode::kExact) {
            REQUIRE(terms.exact_in_any_order);  // the construction guarantees it
            CHECK(got == ref);
          } else {
            const double tol = (nb + nb / 8.0 + 8) * 0x1p-24 * terms.abs_sum;
            CHECK(std::fabs(static_cast<double>(got) - ref) <= tol);
          }
        }
      }
    }
  }
}

TEST_CASE("cpu kernels: float dots against the reference", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (TensorType t : kFloatTypes) {
    for (const DotKernel& k : simd_dots(t)) {
      for (int64_t n : kFloatLengths) {
        for (Mode mode : {Mode::kExact, Mode::kRandom}) {
          INFO(k.name << " " << name(t) << ", n = " << n << ", "
                      << (mode == Mode::kExact ? "small integers / 16" : "normals"));
          const GuardedBytes x(float_row(t, n, rnd, mode));
          const GuardedBytes y(float_row(t, n, rnd, mode));
          const float ref = q::vec_dot(t, n, x.data(), y.data());
          const float got = k.fn(n, x.data(), y.data());
          INFO("kernel " << got << ", reference " << ref);
          if (mode == Mode::kExact) {
            CHECK(got == ref);
          } else {
            const double tol = (n / 16.0 + 16) * 0x1p-24 * float_abs_sum(t, n, x.data(), y.data());
            CHECK(std::fabs(static_cast<double>(got) - ref) <= tol);
          }
        }
      }
    }
  }
}

namespace {

// Activations with everything a quantizer must round like the reference: several magnitudes,
// exact ties (blocks whose scale is exactly 1), equal maxima of both signs, zeros, subnormals,
// and with `specials` NaN, ±inf and huge values.
std::vector<float> quantizer_input(int64_t n, Random& rnd, bool specials) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t start = 0; start < n; start += 32) {
    const int64_t end = std::min<int64_t>(n, start + 32);
    const int kind = rnd.integer(0, 5);
    const float scale = std::ldexp(1.0f, rnd.integer(-20, 20));
    for (int64_t i = start; i < end; ++i) {
      float v = rnd.normal() * scale;
      switch (kind) {
        case 0:  // ties: with |max| = 127 the scale is 1, so x * id = k + 0.5 exactly
          v = static_cast<float>(rnd.integer(-126, 125)) + 0.5f;
          if (i == start) v = 127.0f * rnd.sign();
          break;
        case 1:  // a zero block
          v = 0.0f;
          break;
        case 2:  // subnormals
          v = static_cast<float>(rnd.integer(-1000, 1000)) * 0x1p-149f;
          break;
        case 3:  // equal maxima of both signs: the first one sets the sign
          if (rnd.integer(0, 3) == 0) v = 3.0f * rnd.sign() * scale;
          break;
        default:
          break;
      }
      if (specials && rnd.integer(0, 40) == 0) {
        const float inf = std::numeric_limits<float>::infinity();
        const float pick[] = {std::numeric_limits<float>::quiet_NaN(), inf, -inf, 3e38f, -0.0f};
        v = pick[rnd.integer(0, 4)];
      }
      x[static_cast<size_t>(i)] = v;
    }
  }
  return x;
}

// The quantizer's output into a buffer poisoned with `fill`, with a guard after the row that must
// stay untouched.
std::vector<uint8_t> quantized(cpu::QuantizeRowFn fn, TensorType t, const std::vector<float>& x,
                               uint8_t fill) {
  const auto n = static_cast<int64_t>(x.size());
  const size_t size = ktx::row_size(t, n);
  std::vector<uint8_t> out(size + 16, fill);
  fn(x.data(), out.data(), n);
  for (size_t g = size; g < out.size(); ++g) REQUIRE(out[g] == fill);
  out.resize(size);
  return out;
}

}  // namespace

TEST_CASE("cpu kernels: activation quantizers are byte-identical to the reference",
          "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (TensorType t : kActivationTypes) {
    const int64_t block = ktx::traits(t).block_size;
    std::vector<int64_t> lengths;
    if (block == 1) {
      lengths.assign(std::begin(kFloatLengths), std::end(kFloatLengths));
    } else {
      for (int nb : kBlockCounts) lengths.push_back(nb * block);
    }
    for (cpu::Isa isa : cpu::kAllIsas) {
      if (isa == cpu::Isa::kScalar) continue;
      if (!cpu::isa_available(isa)) {
        WARN("this CPU or build lacks " << cpu::isa_name(isa) << ": its quantizers are not tested");
        continue;
      }
      const cpu::QuantizeRowFn fn = cpu::isa_quantize_row(isa, t);
      REQUIRE(fn != nullptr);
      for (int64_t n : lengths) {
        for (bool specials : {false, true}) {
          INFO(cpu::isa_name(isa) << " " << name(t) << ", n = " << n
                                  << (specials ? ", with NaN/inf" : ""));
          const std::vector<float> x = quantizer_input(n, rnd, specials);
          std::vector<uint8_t> ref(ktx::row_size(t, n));
          q::quantize_row(t, x.data(), ref.data(), n);
          const std::vector<uint8_t> a = quantized(fn, t, x, 0xFF);
          const std::vector<uint8_t> b = quantized(fn, t, x, 0x00);
          CHECK(a == ref);
          CHECK(b == ref);
        }
      }
    }
  }
}

TEST_CASE("cpu kernels: multi-row dots equal the one-row kernel of their tier bit for bit",
          "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (TensorType t : kBlockTypes) {
    const TensorType yt = *q::vec_dot_type(t);
    for (cpu::Isa isa : cpu::kAllIsas) {
      const cpu::VecDotRowsFn rows_fn = cpu::isa_vec_dot_rows(isa, t);
      if (isa == cpu::Isa::kScalar) {
        CHECK(rows_fn == nullptr);
        continue;
      }
      if (!cpu::isa_available(isa)) {
        WARN("this CPU or build lacks " << cpu::isa_name(isa) << ": its kernels are not tested");
        continue;
      }
      if (rows_fn == nullptr) continue;  // a tier has multi-row kernels only where they pay
      const cpu::VecDotFn one = cpu::isa_vec_dot(isa, t);
      // Blocks: less than one group, exactly one (16), and V2-Lite's expert down (44: two groups
      // and a short one). Rows: every mix of the AVX-512 tiles of 8, the tile of 4 and single rows.
      for (int nb : {1, 7, 16, 33, 44}) {
        for (int64_t rows : {1, 3, 4, 5, 8, 9, 12, 13, 16, 17, 23}) {
          INFO(cpu::isa_name(isa) << " " << name(t) << ", " << nb << " blocks, " << rows
                                  << " rows");
          const int64_t n = 32 * nb;
          // Rows an awkward 6 bytes apart beyond their size; the last one ends at the guard.
          const size_t row_bytes = ktx::row_size(t, n), stride = row_bytes + 6;
          std::vector<uint8_t> all(stride * static_cast<size_t>(rows - 1) + row_bytes);
          for (int64_t r = 0; r < rows; ++r) {
            const std::vector<uint8_t> row = weight_row(t, n, rnd, Mode::kRandom);
            std::memcpy(all.data() + static_cast<size_t>(r) * stride, row.data(), row_bytes);
          }
          const GuardedBytes x(all);
          const GuardedBytes y(activation_row(yt, n, rnd, Mode::kRandom));
          std::vector<float> out(static_cast<size_t>(rows) + 4, nan);
          rows_fn(n, x.data(), stride, rows, y.data(), out.data());
          for (int64_t r = 0; r < rows; ++r) {
            const float want = one(n, x.data() + static_cast<size_t>(r) * stride, y.data());
            INFO("row " << r << ": " << out[static_cast<size_t>(r)] << " vs " << want);
            CHECK(std::memcmp(&out[static_cast<size_t>(r)], &want, sizeof want) == 0);
          }
          for (size_t g = static_cast<size_t>(rows); g < out.size(); ++g) CHECK(std::isnan(out[g]));
        }
      }
    }
  }
}

TEST_CASE("cpu kernels: matmul uses the dispatched kernels, outputs poisoned, gaps untouched",
          "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int threads = GENERATE(1, 3);
  ktx::runtime::ThreadPool pool(threads);
  const int64_t cols = 256, rows = 37;  // odd: the last chunk of rows is short
  for (TensorType t : {TensorType::Q4_0, TensorType::Q8_0, TensorType::IQ4_NL, TensorType::Q5_1,
                       TensorType::Q4_K, TensorType::F16, TensorType::F32}) {
    const TensorType yt = *q::vec_dot_type(t);
    const std::vector<uint8_t> bytes = random_matrix(rnd, t, rows, cols);
    const ktx::gguf::TensorInfo info = matrix_info(t, rows, cols, bytes.data(), bytes.size());
    const ktx::ops::cpu::WeightMatrix w = ktx::ops::cpu::weight_matrix(info);
    for (int64_t n : {1, 3, 17}) {
      INFO(name(t) << ", " << n << " tokens, " << threads << " threads");
      const int64_t ldx = cols + 5, ldy = rows + 3;  // gaps after each row
      std::vector<float> x(static_cast<size_t>(n * ldx));
      for (float& e : x) e = rnd.normal();
      std::vector<float> y(static_cast<size_t>(n * ldy), nan);
      ktx::ops::cpu::matmul(pool, w, n, x.data(), ldx, y.data(), ldy);
      std::vector<uint8_t> xq(ktx::row_size(yt, cols));
      bool exact = true, gaps_untouched = true;
      for (int64_t tok = 0; tok < n; ++tok) {
        q::quantize_row(yt, x.data() + tok * ldx, xq.data(), cols);
        for (int64_t r = 0; r < rows; ++r) {
          const float want =
              cpu::vec_dot_fn(t)(cols, bytes.data() + r * ktx::row_size(t, cols), xq.data());
          exact = exact && y[static_cast<size_t>(tok * ldy + r)] == want;
        }
        for (int64_t g = rows; g < ldy; ++g) {
          gaps_untouched = gaps_untouched && std::isnan(y[static_cast<size_t>(tok * ldy + g)]);
        }
      }
      // Products oneDNN takes are checked below (another summation order).
      ktx::ops::cpu::QuantizedRows xq_all;
      xq_all.quantize(&pool, yt, n, cols, x.data(), ldx);
      if (!ktx::ops::cpu::onednn_takes(w, xq_all, n)) CHECK(exact);
      CHECK(gaps_untouched);
    }
  }
}

TEST_CASE("cpu kernels: F32 and BF16 batches through oneDNN against a double reference",
          "[cpu_kernels]") {
  if (!ktx::ops::cpu::onednn_enabled()) {
    WARN("this build has no oneDNN (or KTX_ONEDNN=0): its products are not tested");
    return;
  }
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const int threads = GENERATE(1, 3);
  ktx::runtime::ThreadPool pool(threads);
  for (TensorType t : {TensorType::F32, TensorType::BF16}) {
    // Matrices of at least 2^20 weights (smaller ones stay with ktx's kernels).
    for (int64_t cols : {7, 200, 2048}) {
      for (int64_t rows : {(1 << 20) / cols + 1, (1 << 20) / cols + 37}) {
        // The matrix ends where an unreadable page begins: an over-read crashes.
        const std::vector<uint8_t> bytes = random_matrix(rnd, t, rows, cols);
        const GuardedBytes weights(bytes);
        const ktx::gguf::TensorInfo info = matrix_info(t, rows, cols, weights.data(), bytes.size());
        const ktx::ops::cpu::WeightMatrix w = ktx::ops::cpu::weight_matrix(info);
        for (int64_t n : {8, 9, 33}) {
          INFO(name(t) << ", " << rows << " rows × " << cols << " columns, " << n << " tokens, "
                       << threads << " threads");
          std::vector<float> x(static_cast<size_t>(n * cols));
          for (float& e : x) e = rnd.normal();
          ktx::ops::cpu::QuantizedRows xq;
          xq.quantize(&pool, t, n, cols, x.data(), cols);
          const int64_t ldy = rows + 3;  // gaps after each token's outputs
          std::vector<float> y(static_cast<size_t>(n * ldy), nan);
          REQUIRE(ktx::ops::cpu::onednn_takes(w, xq, n) ==
                  (t == TensorType::F32 || cpu::selected_isa() == cpu::Isa::kAvx512Vnni));
          if (!ktx::ops::cpu::onednn_matmul(pool, w, xq, n, y.data(), ldy)) {
            WARN(name(t) << ": oneDNN does not take this product on this CPU");
            continue;
          }
          bool ok = true, gaps_untouched = true;
          std::vector<float> wr(static_cast<size_t>(cols)), xr(static_cast<size_t>(cols));
          for (int64_t tok = 0; tok < n; ++tok) {
            q::dequantize_row(t, xq.row(tok), xr.data(), cols);
            for (int64_t r = 0; r < rows && ok; ++r) {
              q::dequantize_row(t, w.row(r), wr.data(), cols);
              double ref = 0, abs_sum = 0;
              for (size_t e = 0; e < wr.size(); ++e) {
                ref += double(wr[e]) * xr[e];
                abs_sum += std::fabs(double(wr[e]) * xr[e]);
              }
              // Any f32 summation order: at most cols roundings of partial sums.
              const double tol = (static_cast<double>(cols) + 16) * 0x1p-24 * abs_sum;
              const float got = y[static_cast<size_t>(tok * ldy + r)];
              if (!(std::fabs(got - ref) <= tol)) {
                INFO("token " << tok << ", row " << r << ": got " << got << ", reference " << ref);
                CHECK(false);
                ok = false;
              }
            }
            for (int64_t g = rows; g < ldy; ++g) {
              gaps_untouched = gaps_untouched && std::isnan(y[static_cast<size_t>(tok * ldy + g)]);
            }
          }
          CHECK(ok);
          CHECK(gaps_untouched);
        }
      }
    }
  }
  // F16, small matrices and small batches stay with the caller's kernels.
  struct Small {
    TensorType type;
    int64_t cols, rows, n;
  };
  for (const Small& k :
       {Small{TensorType::F16, 2048, 1024, 16}, Small{TensorType::F32, 2048, 64, 16},
        Small{TensorType::F32, 2048, 1024, 7}}) {
    INFO(name(k.type) << ", " << k.rows << " rows, " << k.n << " tokens");
    const std::vector<uint8_t> bytes(ktx::row_size(k.type, k.cols) * static_cast<size_t>(k.rows));
    const ktx::gguf::TensorInfo info =
        matrix_info(k.type, k.rows, k.cols, bytes.data(), bytes.size());
    const ktx::ops::cpu::WeightMatrix w = ktx::ops::cpu::weight_matrix(info);
    ktx::ops::cpu::QuantizedRows xq;
    const std::vector<float> x(static_cast<size_t>(k.cols * k.n), 1.0f);
    xq.quantize(&pool, k.type, k.n, k.cols, x.data(), k.cols);
    std::vector<float> y(static_cast<size_t>(k.rows * k.n), nan);
    CHECK_FALSE(ktx::ops::cpu::onednn_takes(w, xq, k.n));
    CHECK_FALSE(ktx::ops::cpu::onednn_matmul(pool, w, xq, k.n, y.data(), k.rows));
    CHECK(std::isnan(y[0]));
  }
}
