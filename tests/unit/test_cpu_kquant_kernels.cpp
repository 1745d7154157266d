// Tests of the AVX-512 and AVX2 dot products of K-quant and IQ4_XS rows with Q8_K activations
// (kernels/cpu/k_quants_*.cpp, and the multi-row driver k_quants_rows.inc) against the scalar
// references (ktx::quant::vec_dot). Each type × each ISA this CPU has (the others are skipped
// with a warning), on fresh random data every run (the seed is printed on failure;
// KTX_TEST_SEED=<n> replays one), rows of 1, 2, 5 and 11 super-blocks.
//
// Tolerance: none. The kernels form each super-block's integer sums exactly and then repeat the
// reference's float operations in its order, so the results must be bit-identical (NaN matches
// any NaN). Bit equality catches what a tolerance relative to Σ|terms| could let through: a scale
// or a code off by one in a single sub-block moves the result by about 1e-5 of Σ|terms| on an
// 11-super-block row, close to any honest float tolerance. An independent check against exact
// integer arithmetic (scales of 1, integers below 2^24) guards against the kernel and the
// reference sharing a mistake.
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

#include "kernels/cpu/isa_kernels.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "quant/blocks.h"
#include "quant/fp16.h"

namespace {

namespace q = ktx::quant;
namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;
using KernelFn = float (*)(int64_t n, const void* x, const void* y);
using RowsFn = cpu::VecDotRowsFn;

constexpr int64_t kQK = q::kQK_K;
constexpr int64_t kSuperBlocks[] = {1, 2, 5, 11};

// ---- what is tested -------------------------------------------------------------------------

struct TypeCase {
  TensorType type;
  size_t d_offset;     // the block's f16 scale
  size_t dmin_offset;  // its f16 minimum scale, or SIZE_MAX
  KernelFn avx512, avx2;
  RowsFn avx512_rows;
  RowsFn avx2_rows;  // null: the AVX2 tier has one-row K-quant kernels only
};

const std::vector<TypeCase>& type_cases() {
  static const std::vector<TypeCase> cases = {
      {TensorType::Q4_K, offsetof(q::BlockQ4_K, d), offsetof(q::BlockQ4_K, dmin),
       cpu::avx512::vec_dot_q4_K_q8_K, cpu::avx2::vec_dot_q4_K_q8_K,
       cpu::avx512::vec_dot_q4_K_q8_K_rows, nullptr},
      {TensorType::Q5_K, offsetof(q::BlockQ5_K, d), offsetof(q::BlockQ5_K, dmin),
       cpu::avx512::vec_dot_q5_K_q8_K, cpu::avx2::vec_dot_q5_K_q8_K,
       cpu::avx512::vec_dot_q5_K_q8_K_rows, nullptr},
      {TensorType::Q6_K, offsetof(q::BlockQ6_K, d), SIZE_MAX, cpu::avx512::vec_dot_q6_K_q8_K,
       cpu::avx2::vec_dot_q6_K_q8_K, cpu::avx512::vec_dot_q6_K_q8_K_rows, nullptr},
      {TensorType::Q2_K, offsetof(q::BlockQ2_K, d), offsetof(q::BlockQ2_K, dmin),
       cpu::avx512::vec_dot_q2_K_q8_K, cpu::avx2::vec_dot_q2_K_q8_K,
       cpu::avx512::vec_dot_q2_K_q8_K_rows, nullptr},
      {TensorType::Q3_K, offsetof(q::BlockQ3_K, d), SIZE_MAX, cpu::avx512::vec_dot_q3_K_q8_K,
       cpu::avx2::vec_dot_q3_K_q8_K, cpu::avx512::vec_dot_q3_K_q8_K_rows, nullptr},
      {TensorType::IQ4_XS, offsetof(q::BlockIQ4_XS, d), SIZE_MAX, cpu::avx512::vec_dot_iq4_xs_q8_K,
       cpu::avx2::vec_dot_iq4_xs_q8_K, cpu::avx512::vec_dot_iq4_xs_q8_K_rows, nullptr},
  };
  return cases;
}

struct IsaCase {
  const char* name;
  bool supported;  // the CPU (and OS) can run it
  KernelFn TypeCase::*kernel;
  RowsFn TypeCase::*rows;
};

// Exactly the extensions each file is compiled for.
const std::vector<IsaCase>& isa_cases() {
  static const std::vector<IsaCase> isas = {
      {"avx512vnni",
       __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"),
       &TypeCase::avx512, &TypeCase::avx512_rows},
      // F16C is not asked: every AVX2 CPU has it (Ivy Bridge, a generation earlier), and Clang
      // 14's __builtin_cpu_supports does not know the name.
      {"avx2", __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"), &TypeCase::avx2,
       &TypeCase::avx2_rows},
  };
  return isas;
}

// Runs body(type case, isa, kernel) for every type and every ISA this CPU has.
template <typename Body>
void for_each_kernel(Body body) {
  for (const IsaCase& isa : isa_cases()) {
    if (!isa.supported) {
      WARN("this CPU lacks " << isa.name << ": its K-quant kernels are not tested");
      continue;
    }
    for (const TypeCase& tc : type_cases()) {
      const KernelFn fn = tc.*isa.kernel;
      INFO(isa.name << " " << ktx::type_name(tc.type));
      body(tc, isa, fn);
    }
  }
}

// ---- random data ----------------------------------------------------------------------------

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
  uint8_t byte() { return static_cast<uint8_t>(integer(0, 255)); }
  // A scale of ordinary size, either sign (2^-12 .. 2^2).
  float moderate() { return sign() * uniform(0.5f, 1.0f) * std::ldexp(1.0f, integer(-11, 2)); }
};

enum class Shape { kGaussian, kPositive, kSparse, kOutliers };
constexpr Shape kShapes[] = {Shape::kGaussian, Shape::kPositive, Shape::kSparse, Shape::kOutliers};

// f32 values with a different magnitude per 16 elements, so sub-block scales differ.
std::vector<float> floats(Random& rnd, int64_t n, Shape shape) {
  std::vector<float> v(static_cast<size_t>(n));
  float scale = 1.0f;
  for (int64_t e = 0; e < n; ++e) {
    if (e % 16 == 0) scale = std::ldexp(1.0f, rnd.integer(-6, 3));
    float x = rnd.normal() * scale;
    switch (shape) {
      case Shape::kGaussian:
        break;
      case Shape::kPositive:
        x = std::fabs(x) + 0.1f * scale;
        break;
      case Shape::kSparse:
        x = rnd.integer(0, 7) == 0 ? x * 8.0f : 0.0f;
        break;
      case Shape::kOutliers:
        x = rnd.integer(0, 63) == 0 ? x * 100.0f : x;
        break;
    }
    v[static_cast<size_t>(e)] = x;
  }
  return v;
}

std::vector<uint8_t> quantized(Random& rnd, TensorType type, int64_t n, Shape shape) {
  std::vector<uint8_t> row(ktx::row_size(type, n));
  const std::vector<float> x = floats(rnd, n, shape);
  q::quantize_row(type, x.data(), row.data(), n);
  return row;
}

void set_half(std::vector<uint8_t>& row, size_t offset, uint16_t h) {
  std::memcpy(row.data() + offset, &h, sizeof h);
}

// Every byte random (all bit patterns of codes and sub-block scales), then ordinary f16 scales.
std::vector<uint8_t> raw_weights(Random& rnd, const TypeCase& tc, int64_t n) {
  std::vector<uint8_t> row(ktx::row_size(tc.type, n));
  for (uint8_t& b : row) b = rnd.byte();
  const size_t block = ktx::traits(tc.type).type_size;
  for (size_t off = 0; off < row.size(); off += block) {
    set_half(row, off + tc.d_offset, q::f32_to_fp16(rnd.moderate()));
    if (tc.dmin_offset != SIZE_MAX)
      set_half(row, off + tc.dmin_offset, q::f32_to_fp16(rnd.moderate()));
  }
  return row;
}

std::vector<q::BlockQ8_K> quantized_activations(Random& rnd, int64_t n, Shape shape) {
  std::vector<q::BlockQ8_K> y(static_cast<size_t>(n / kQK));
  const std::vector<float> x = floats(rnd, n, shape);
  q::quantize_row(TensorType::Q8_K, x.data(), y.data(), n);
  return y;
}

void fill_bsums(q::BlockQ8_K& b) {
  for (int g = 0; g < kQK / 16; ++g) {
    int s = 0;
    for (int e = 16 * g; e < 16 * g + 16; ++e) s += b.qs[e];
    b.bsums[g] = static_cast<int16_t>(s);
  }
}

// Any int8 quants in [-range, range - 1] (-128 included at full range, which the quantizer never
// writes), bsums consistent with them, scale d.
std::vector<q::BlockQ8_K> raw_activations(Random& rnd, int64_t n, int range, float d) {
  std::vector<q::BlockQ8_K> y(static_cast<size_t>(n / kQK));
  for (q::BlockQ8_K& b : y) {
    b.d = d;
    for (int8_t& v : b.qs) v = static_cast<int8_t>(rnd.integer(-range, range - 1));
    fill_bsums(b);
  }
  return y;
}

// ---- comparison -----------------------------------------------------------------------------

bool same_float(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return q::f32_to_bits(a) == q::f32_to_bits(b);
}

std::string hex(float f) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%a (%.9g)", static_cast<double>(f), static_cast<double>(f));
  return buf;
}

// One row against the reference; the output starts poisoned with NaN.
void check_row(KernelFn fn, TensorType type, int64_t n, const void* x, const void* y) {
  const float want = q::vec_dot(type, n, x, y);
  float got = std::numeric_limits<float>::quiet_NaN();
  got = fn(n, x, y);
  INFO("n = " << n << ": kernel " << hex(got) << ", reference " << hex(want));
  CHECK(same_float(got, want));
}

// `rows` rows the way a matrix-vector product runs them: every output slot poisoned with NaN,
// plus one past the end that must stay untouched.
void check_matrix(KernelFn fn, TensorType type, int64_t n, int rows, const std::vector<uint8_t>& w,
                  const void* y) {
  const size_t stride = ktx::row_size(type, n);
  std::vector<float> out(static_cast<size_t>(rows) + 1, std::numeric_limits<float>::quiet_NaN());
  for (int r = 0; r < rows; ++r) out[static_cast<size_t>(r)] = fn(n, w.data() + r * stride, y);
  for (int r = 0; r < rows; ++r) {
    INFO("row " << r << " of " << rows);
    const float want = q::vec_dot(type, n, w.data() + r * stride, y);
    INFO("kernel " << hex(out[static_cast<size_t>(r)]) << ", reference " << hex(want));
    CHECK(same_float(out[static_cast<size_t>(r)], want));
  }
  CHECK(std::isnan(out.back()));
}

// ---- buffers flush against an unreadable page -----------------------------------------------

// `bytes` bytes that end where a PROT_NONE page begins (or start where one ends), so a kernel
// reading one byte outside its row crashes the test instead of passing by luck.
class GuardedBytes {
 public:
  GuardedBytes(size_t bytes, bool guard_after) : bytes_(bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t body = (bytes + page - 1) / page * page;
    map_bytes_ = body + 2 * page;
    void* m = mmap(nullptr, map_bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(m != MAP_FAILED);
    map_ = static_cast<uint8_t*>(m);
    REQUIRE(mprotect(map_ + page, body, PROT_READ | PROT_WRITE) == 0);
    data_ = guard_after ? map_ + page + body - bytes : map_ + page;
  }
  ~GuardedBytes() { munmap(map_, map_bytes_); }
  GuardedBytes(const GuardedBytes&) = delete;
  GuardedBytes& operator=(const GuardedBytes&) = delete;

  uint8_t* data() { return data_; }
  void fill(const void* src) { std::memcpy(data_, src, bytes_); }

 private:
  size_t bytes_, map_bytes_;
  uint8_t* map_ = nullptr;
  uint8_t* data_ = nullptr;
};

}  // namespace

TEST_CASE("K-quant kernels match the reference bit for bit on quantized rows", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    for (const int64_t blocks : kSuperBlocks) {
      const int64_t n = blocks * kQK;
      for (const Shape ws : kShapes) {
        const std::vector<uint8_t> w = quantized(rnd, tc.type, n, ws);
        const auto y = quantized_activations(rnd, n, kShapes[rnd.integer(0, 3)]);
        check_row(fn, tc.type, n, w.data(), y.data());
      }
    }
  });
}

TEST_CASE("K-quant kernels match the reference bit for bit on raw random blocks", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    for (const int64_t blocks : kSuperBlocks) {
      const int64_t n = blocks * kQK;
      for (int draw = 0; draw < 8; ++draw) {
        // Every bit pattern of codes, sub-block scales and activations (-128 included).
        const std::vector<uint8_t> w = raw_weights(rnd, tc, n);
        const auto y = draw % 2 == 0 ? raw_activations(rnd, n, 128, rnd.moderate())
                                     : quantized_activations(rnd, n, Shape::kGaussian);
        check_row(fn, tc.type, n, w.data(), y.data());
      }
    }
  });
}

TEST_CASE("K-quant kernels sum exactly: unit scales against integer arithmetic", "[cpu_kernels]") {
  // With d = dmin = 1 and Q8_K d = 1 every term is an integer; while Σ|terms| (the scale parts
  // and the minimum parts counted separately) stays below 2^24 every partial sum is exact in
  // float, so the result must equal the dot product of the dequantized rows computed in int64.
  Random rnd;
  INFO("seed " << rnd.seed);
  constexpr uint16_t kOne = 0x3C00;  // 1.0 as a half
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    for (const int64_t blocks : {int64_t{1}, int64_t{2}}) {
      const int64_t n = blocks * kQK;
      const size_t block = ktx::traits(tc.type).type_size;
      for (int draw = 0; draw < 16; ++draw) {
        std::vector<uint8_t> w = raw_weights(rnd, tc, n);
        for (size_t off = 0; off < w.size(); off += block) {
          set_half(w, off + tc.d_offset, kOne);
          if (tc.dmin_offset != SIZE_MAX) set_half(w, off + tc.dmin_offset, kOne);
        }
        // The scale parts (dmin = 0) and the minimum parts (d = 0) of each weight, as integers.
        std::vector<uint8_t> scale_part = w, min_part = w;
        for (size_t off = 0; off < w.size(); off += block) {
          if (tc.dmin_offset != SIZE_MAX) {
            set_half(scale_part, off + tc.dmin_offset, 0);
            set_half(min_part, off + tc.d_offset, 0);
          }
        }
        std::vector<float> ws(static_cast<size_t>(n)), wm(static_cast<size_t>(n), 0.0f);
        q::dequantize_row(tc.type, scale_part.data(), ws.data(), n);
        if (tc.dmin_offset != SIZE_MAX) q::dequantize_row(tc.type, min_part.data(), wm.data(), n);

        // Halve the activation range until Σ|terms| < 2^24.
        for (int range = 128;; range /= 2) {
          const auto y = raw_activations(rnd, n, range, 1.0f);
          int64_t exact = 0, bound = 0;
          for (int64_t e = 0; e < n; ++e) {
            const int64_t xe = y[static_cast<size_t>(e / kQK)].qs[e % kQK];
            const auto a = static_cast<int64_t>(ws[static_cast<size_t>(e)]);
            const auto m = static_cast<int64_t>(wm[static_cast<size_t>(e)]);
            exact += (a + m) * xe;
            bound += (std::llabs(a) + std::llabs(m)) * std::llabs(xe);
          }
          if (bound >= (int64_t{1} << 24)) continue;
          INFO("n = " << n << ", activation range " << range << ", Σ|terms| = " << bound);
          const float got = fn(n, w.data(), y.data());
          CHECK(static_cast<double>(got) == static_cast<double>(exact));
          CHECK(same_float(got, q::vec_dot(tc.type, n, w.data(), y.data())));
          break;
        }
      }
    }
  });
}

TEST_CASE("K-quant kernels match the reference with extreme scales", "[cpu_kernels]") {
  // Largest, smallest normal, smallest subnormal halves and zeros of both signs for d and dmin;
  // activation scales from the float extremes. Overflow to ±inf and inf - inf = NaN must come out
  // as the reference's.
  const uint16_t halves[] = {0x7BFF, 0xFBFF, 0x0400, 0x0001, 0x8001, 0x0000, 0x8000, 0x3C00};
  const float act_scales[] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, 1e30f, 0.0f, -1.0f / 127};
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    const int64_t n = 2 * kQK;
    const size_t block = ktx::traits(tc.type).type_size;
    for (const uint16_t d : halves) {
      for (const float yd : act_scales) {
        std::vector<uint8_t> w = raw_weights(rnd, tc, n);
        for (size_t off = 0; off < w.size(); off += block) {
          set_half(w, off + tc.d_offset, d);
          if (tc.dmin_offset != SIZE_MAX)
            set_half(w, off + tc.dmin_offset, halves[rnd.integer(0, 7)]);
        }
        const auto y = raw_activations(rnd, n, 128, yd);
        INFO("d = 0x" << std::hex << d << std::dec << ", activation d = " << yd);
        check_row(fn, tc.type, n, w.data(), y.data());
      }
    }
  });
}

TEST_CASE("K-quant kernels in a matrix-vector product: poisoned outputs, awkward shapes",
          "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    for (const int rows : {1, 3, 17}) {
      const int64_t n = kSuperBlocks[rnd.integer(0, 3)] * kQK;
      std::vector<uint8_t> w;
      for (int r = 0; r < rows; ++r) {
        const std::vector<uint8_t> row =
            r % 2 == 0 ? quantized(rnd, tc.type, n, Shape::kGaussian) : raw_weights(rnd, tc, n);
        w.insert(w.end(), row.begin(), row.end());
      }
      const auto y = quantized_activations(rnd, n, Shape::kOutliers);
      INFO(rows << " rows of " << n);
      check_matrix(fn, tc.type, n, rows, w, y.data());
    }
    // No elements: nothing read, +0 as the reference returns.
    const float zero = fn(0, nullptr, nullptr);
    CHECK(same_float(zero, 0.0f));
  });
}

TEST_CASE("K-quant kernels read only their row and activations", "[cpu_kernels]") {
  // Rows and activations flush against an unreadable page, after their end and before their
  // start; their addresses are then as unaligned as the block sizes make them.
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_kernel([&](const TypeCase& tc, const IsaCase&, KernelFn fn) {
    for (const int64_t blocks : {int64_t{1}, int64_t{3}}) {
      const int64_t n = blocks * kQK;
      const std::vector<uint8_t> w = raw_weights(rnd, tc, n);
      const auto y = raw_activations(rnd, n, 128, rnd.moderate());
      const size_t y_bytes = y.size() * sizeof(q::BlockQ8_K);
      for (const bool after : {true, false}) {
        INFO((after ? "guard page after the data" : "guard page before the data"));
        GuardedBytes gw(w.size(), after), gy(y_bytes, after);
        gw.fill(w.data());
        gy.fill(y.data());
        check_row(fn, tc.type, n, gw.data(), gy.data());
      }
    }
  });
}

// ---- multi-row kernels (VecDotRowsFn) -----------------------------------------------------------

namespace {

// Runs body(type case, isa, rows kernel) for every type and every ISA this CPU has.
template <typename Body>
void for_each_rows_kernel(Body body) {
  for (const IsaCase& isa : isa_cases()) {
    if (!isa.supported) {
      WARN("this CPU lacks " << isa.name << ": its K-quant multi-row kernels are not tested");
      continue;
    }
    for (const TypeCase& tc : type_cases()) {
      if (tc.*isa.rows == nullptr) continue;
      INFO(isa.name << " " << ktx::type_name(tc.type) << " multi-row");
      body(tc, tc.*isa.rows);
    }
  }
}

// `rows` rows `stride` bytes apart, the last one ending at an unreadable page (or the first
// starting at one); every output poisoned with NaN, plus guard slots after them that must stay
// NaN; each row equal to the reference bit for bit.
void check_rows(RowsFn fn, TensorType type, int64_t n, int64_t rows, size_t stride,
                const std::vector<std::vector<uint8_t>>& w, const void* y, bool guard_after) {
  const size_t row_bytes = ktx::row_size(type, n);
  std::vector<uint8_t> all(stride * static_cast<size_t>(rows - 1) + row_bytes, 0xEE);
  for (int64_t r = 0; r < rows; ++r) {
    std::memcpy(all.data() + static_cast<size_t>(r) * stride, w[static_cast<size_t>(r)].data(),
                row_bytes);
  }
  GuardedBytes gx(all.size(), guard_after),
      gy(static_cast<size_t>(n / kQK) * sizeof(q::BlockQ8_K), guard_after);
  gx.fill(all.data());
  gy.fill(y);
  constexpr size_t kGuardSlots = 9;
  std::vector<float> out(static_cast<size_t>(rows) + kGuardSlots,
                         std::numeric_limits<float>::quiet_NaN());
  fn(n, gx.data(), stride, rows, gy.data(), out.data());
  for (int64_t r = 0; r < rows; ++r) {
    const float want = q::vec_dot(type, n, w[static_cast<size_t>(r)].data(), y);
    const float got = out[static_cast<size_t>(r)];
    INFO("row " << r << " of " << rows << ", n = " << n << ", stride " << stride << ": kernel "
                << hex(got) << ", reference " << hex(want));
    CHECK(same_float(got, want));
  }
  for (size_t g = static_cast<size_t>(rows); g < out.size(); ++g) CHECK(std::isnan(out[g]));
}

}  // namespace

TEST_CASE("K-quant multi-row kernels match the reference bit for bit: awkward row counts",
          "[cpu_kernels]") {
  // Row counts around the tiles (8 and 4 rows, then single rows), strides that leave the rows
  // unaligned, quantized rows mixed with raw random blocks.
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_rows_kernel([&](const TypeCase& tc, RowsFn fn) {
    for (const int64_t rows : {1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 16, 17, 23, 33}) {
      const int64_t n = kSuperBlocks[rnd.integer(0, 3)] * kQK;
      std::vector<std::vector<uint8_t>> w;
      for (int64_t r = 0; r < rows; ++r) {
        w.push_back(rnd.integer(0, 1) ? quantized(rnd, tc.type, n, kShapes[rnd.integer(0, 3)])
                                      : raw_weights(rnd, tc, n));
      }
      const auto y = rnd.integer(0, 1) ? quantized_activations(rnd, n, kShapes[rnd.integer(0, 3)])
                                       : raw_activations(rnd, n, 128, rnd.moderate());
      const size_t row_bytes = ktx::row_size(tc.type, n);
      for (const size_t stride : {row_bytes, row_bytes + 6}) {
        check_rows(fn, tc.type, n, rows, stride, w, y.data(), rnd.integer(0, 1) == 1);
      }
    }
    // No rows: nothing written.
    float untouched = std::numeric_limits<float>::quiet_NaN();
    fn(kQK, nullptr, 0, 0, nullptr, &untouched);
    CHECK(std::isnan(untouched));
  });
}

TEST_CASE("K-quant multi-row kernels match the reference with extreme scales", "[cpu_kernels]") {
  // Each row of a tile gets its own extreme d (and dmin): lanes must not mix up rows, and
  // overflow to ±inf and inf - inf = NaN must come out per row as the reference's.
  const uint16_t halves[] = {0x7BFF, 0xFBFF, 0x0400, 0x0001, 0x8001, 0x0000, 0x8000, 0x3C00};
  const float act_scales[] = {FLT_MAX, -FLT_MAX, FLT_MIN, 1e-45f, 1e30f, 0.0f, -1.0f / 127};
  Random rnd;
  INFO("seed " << rnd.seed);
  for_each_rows_kernel([&](const TypeCase& tc, RowsFn fn) {
    const int64_t n = 2 * kQK;
    const size_t block = ktx::traits(tc.type).type_size;
    for (const float yd : act_scales) {
      const int64_t rows = rnd.integer(8, 13);
      std::vector<std::vector<uint8_t>> w;
      for (int64_t r = 0; r < rows; ++r) {
        std::vector<uint8_t> row = raw_weights(rnd, tc, n);
        for (size_t off = 0; off < row.size(); off += block) {
          set_half(row, off + tc.d_offset, halves[rnd.integer(0, 7)]);
          if (tc.dmin_offset != SIZE_MAX)
            set_half(row, off + tc.dmin_offset, halves[rnd.integer(0, 7)]);
        }
        w.push_back(std::move(row));
      }
      const auto y = raw_activations(rnd, n, 128, yd);
      INFO("activation d = " << yd);
      check_rows(fn, tc.type, n, rows, ktx::row_size(tc.type, n), w, y.data(), true);
    }
  });
}
