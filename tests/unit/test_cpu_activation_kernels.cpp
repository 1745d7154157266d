// Tests of kernels/cpu/activation.h (softmax's maximum, its exp(x - max) with their sum,
// SiLU(gate) · up):
//   - ktx's exponential (exp_f32) against the exact one (std::exp in double): within 1 ulp for
//     every 61st float of the range where the result is finite and not 0, within one step of
//     2^-149 where it is subnormal, and the C library's edge cases;
//   - every tier this CPU can run against the scalar reference bit for bit (the kernels promise
//     the same steps in every lane), on fresh random data each run (KTX_TEST_SEED=<n> replays
//     one) with NaN and infinities among it, awkward lengths, inputs that end at an unreadable
//     page (an over-read crashes) and outputs poisoned with NaN past the end (must stay so);
//   - the sums and SiLU · up against double-precision computations of their definitions;
//   - softmax_max against a plain loop over the definition: the first NaN, else the largest.
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "guarded_memory.h"
#include "kernels/cpu/activation.h"
#include "kernels/cpu/cpu_features.h"

namespace {

namespace cpu = ktx::kernels::cpu;

uint32_t test_seed() {
  if (const char* s = std::getenv("KTX_TEST_SEED")) {
    return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
  }
  return std::random_device{}();
}

float from_bits(uint32_t b) {
  float f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

bool same_bits(float a, float b) {
  if (std::isnan(a) && std::isnan(b)) return true;
  return std::memcmp(&a, &b, sizeof a) == 0;
}

// |got - want| in units of the last place of want as a float (2^-149 below the normals).
double ulps(float got, double want) {
  const double ulp = std::ldexp(1.0, std::max(std::ilogb(want), -126) - 23);
  return std::abs(static_cast<double>(got) - want) / ulp;
}

constexpr int64_t kLengths[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257, 1000};

// Values of a softmax row or a gate: mostly moderate, some large, and the odd NaN or infinity.
std::vector<float> row_values(int64_t n, std::mt19937& gen, bool specials) {
  std::normal_distribution<float> nd(0.0f, 6.0f);
  std::uniform_int_distribution<int> pick(0, 40);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& e : v) {
    e = nd(gen);
    const int k = pick(gen);
    if (k == 0) e *= 30.0f;
    if (specials && k == 1) e = std::numeric_limits<float>::quiet_NaN();
    if (specials && k == 2) e = -std::numeric_limits<float>::infinity();
    if (specials && k == 3) e = std::numeric_limits<float>::infinity();
  }
  return v;
}

struct Tier {
  cpu::Isa isa;
  const char* name;
};
constexpr Tier kTiers[] = {{cpu::Isa::kScalar, "scalar"},
                           {cpu::Isa::kAvx2, "avx2"},
                           {cpu::Isa::kAvx512Vnni, "avx512vnni"}};

}  // namespace

TEST_CASE("exp_f32 is within 1 ulp of the exact exponential over its whole range",
          "[cpu_kernels][activation]") {
  // Every 61st float from -103.9 up to 88.72 (the results from 2^-149 to just below FLT_MAX):
  // ~37 million of them, both signs.
  double worst = 0.0, worst_sub = 0.0;
  float worst_x = 0.0f;
  for (int sign = 0; sign < 2; ++sign) {
    const float limit = sign == 0 ? 88.72f : 103.9f;
    for (uint32_t b = 0;; b += 61) {
      const float m = from_bits(b);
      if (m > limit) break;
      const float x = sign == 0 ? m : -m;
      const double want = std::exp(static_cast<double>(x));
      const float got = cpu::exp_f32(x);
      const double e = ulps(got, want);
      if (want < 0x1p-126) {
        worst_sub = std::max(worst_sub, e);
      } else if (e > worst) {
        worst = e;
        worst_x = x;
      }
    }
  }
  INFO("worst normal result: " << worst << " ulp at x = " << worst_x << "; subnormal: " << worst_sub
                               << " steps of 2^-149");
  CHECK(worst <= 1.0);
  CHECK(worst_sub <= 1.0);
}

TEST_CASE("exp_f32 keeps the C library's edge cases", "[cpu_kernels][activation]") {
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(std::isnan(cpu::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(cpu::exp_f32(-inf) == 0.0f);
  CHECK(cpu::exp_f32(inf) == inf);
  CHECK(cpu::exp_f32(0.0f) == 1.0f);
  CHECK(cpu::exp_f32(-0.0f) == 1.0f);
  CHECK(cpu::exp_f32(1e-10f) == 1.0f);
  for (float x : {88.73f, 89.0f, 100.0f, 1e30f, std::numeric_limits<float>::max()}) {
    INFO("x = " << x);
    CHECK(cpu::exp_f32(x) == inf);
  }
  for (float x : {-104.0f, -110.0f, -1e30f, std::numeric_limits<float>::lowest()}) {
    INFO("x = " << x);
    CHECK(cpu::exp_f32(x) == 0.0f);
  }
  // Near the largest finite result and the smallest subnormal one: finite, not 0, within 1 ulp.
  CHECK(std::isfinite(cpu::exp_f32(88.72f)));
  CHECK(ulps(cpu::exp_f32(88.72f), std::exp(static_cast<double>(88.72f))) <= 1.0);
  CHECK(cpu::exp_f32(-103.27f) == 0x1p-149f);
}

TEST_CASE("exp_shifted: every tier equals the scalar reference bit for bit",
          "[cpu_kernels][activation]") {
  const uint32_t seed = test_seed();
  INFO("KTX_TEST_SEED=" << seed);
  std::mt19937 gen(seed);
  const cpu::ExpShiftedFn ref = cpu::isa_exp_shifted(cpu::Isa::kScalar);
  REQUIRE(ref != nullptr);
  for (const Tier& t : kTiers) {
    const cpu::ExpShiftedFn fn = cpu::isa_exp_shifted(t.isa);
    if (fn == nullptr) continue;
    for (int64_t n : kLengths) {
      for (bool specials : {false, true}) {
        INFO(t.name << ", n = " << n << (specials ? ", with NaN and infinities" : ""));
        const std::vector<float> x = row_values(n, gen, specials);
        float shift = 0.0f;
        for (float e : x) shift = std::isfinite(e) ? std::max(shift, e) : shift;
        // In place, at the end of a readable page; the reference on a plain copy.
        GuardedArray<float> got(x);
        std::vector<float> want = x;
        const double got_sum = fn(got.mutable_data(), n, shift);
        const double want_sum = ref(want.data(), n, shift);
        size_t bad = 0;
        for (int64_t i = 0; i < n; ++i) {
          const auto k = static_cast<size_t>(i);
          bad += !same_bits(got.data()[k], want[k]);
          // Element by element, the scalar reference is exp_f32(x - shift).
          bad += !same_bits(want[k], cpu::exp_f32(x[k] - shift));
        }
        CHECK(bad == 0);
        CHECK((std::isnan(got_sum) ? std::isnan(want_sum)
                                   : std::memcmp(&got_sum, &want_sum, sizeof got_sum) == 0));
        // The sum against a plain double sum of the outputs (another order: within rounding).
        double plain = 0.0;
        for (float e : want) plain += e;
        if (std::isfinite(plain)) {
          CHECK(std::abs(want_sum - plain) <= 1e-13 * std::abs(plain));
        } else {
          CHECK((std::isnan(plain) ? std::isnan(want_sum) : want_sum == plain));
        }
      }
    }
  }
}

TEST_CASE("silu_mul: every tier equals the scalar reference, which follows the definition",
          "[cpu_kernels][activation]") {
  const uint32_t seed = test_seed();
  INFO("KTX_TEST_SEED=" << seed);
  std::mt19937 gen(seed);
  const cpu::SiluMulFn ref = cpu::isa_silu_mul(cpu::Isa::kScalar);
  REQUIRE(ref != nullptr);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (const Tier& t : kTiers) {
    const cpu::SiluMulFn fn = cpu::isa_silu_mul(t.isa);
    if (fn == nullptr) continue;
    for (int64_t n : kLengths) {
      for (bool specials : {false, true}) {
        INFO(t.name << ", n = " << n << (specials ? ", with NaN and infinities" : ""));
        const std::vector<float> g = row_values(n, gen, specials);
        const std::vector<float> u = row_values(n, gen, specials);
        const GuardedArray<float> gate(g), up(u);
        // Out of place into a NaN-poisoned buffer with room past the end, and in place.
        std::vector<float> got(static_cast<size_t>(n) + 17, nan), want(got.size(), nan);
        fn(gate.data(), up.data(), got.data(), n);
        ref(g.data(), u.data(), want.data(), n);
        GuardedArray<float> in_place(g);
        fn(in_place.data(), up.data(), in_place.mutable_data(), n);
        size_t bad = 0, near = 0;
        for (int64_t i = 0; i < n; ++i) {
          const auto k = static_cast<size_t>(i);
          bad += !same_bits(got[k], want[k]);
          bad += !same_bits(in_place.data()[k], want[k]);
          // The reference's steps, written out: gate / (1 + exp(-gate)) · up.
          bad += !same_bits(want[k], g[k] / (1.0f + cpu::exp_f32(-g[k])) * u[k]);
          // Against double precision: the exponential's ulp and three roundings.
          const double gd = g[k], want_d = gd / (1.0 + std::exp(-gd)) * u[k];
          if (std::isfinite(want_d) && std::abs(want_d) > 1e-30) {
            near += ulps(want[k], std::abs(want_d)) > 4.0 &&
                    std::abs(want[k] - want_d) > 1e-6 * std::abs(want_d);
          }
        }
        for (size_t k = static_cast<size_t>(n); k < got.size(); ++k) bad += !std::isnan(got[k]);
        CHECK(bad == 0);
        CHECK(near == 0);
      }
    }
  }
}

TEST_CASE("softmax_max: every tier gives the first NaN, else the largest value",
          "[cpu_kernels][activation]") {
  const uint32_t seed = test_seed();
  INFO("KTX_TEST_SEED=" << seed);
  std::mt19937 gen(seed);
  // The definition, written out: the first NaN in index order, else the largest value.
  const auto definition = [](const std::vector<float>& x) {
    float m = -std::numeric_limits<float>::infinity();
    for (float e : x) {
      if (std::isnan(e)) return e;
      if (e > m) m = e;
    }
    return m;
  };
  const float nan_a = from_bits(0x7FC00001u), nan_b = from_bits(0xFFC00002u);  // two payloads
  for (const Tier& t : kTiers) {
    const cpu::SoftmaxMaxFn fn = cpu::isa_softmax_max(t.isa);
    if (fn == nullptr) continue;
    for (int64_t n : kLengths) {
      // 0: random; 1: with NaN and infinities; 2: all negative, the maximum in the tail or the
      // head; 3: two NaNs of different payloads (the first must come back); 4: zeros of both signs.
      for (int kind = 0; kind < 5; ++kind) {
        INFO(t.name << ", n = " << n << ", kind " << kind);
        std::vector<float> x = row_values(n, gen, kind == 1);
        if (kind == 2) {
          for (float& e : x) e = -std::abs(e) - 1.0f;
          if (n > 0)
            x[static_cast<size_t>(std::uniform_int_distribution<int64_t>(0, n - 1)(gen))] = -0.5f;
        }
        if (kind == 3 && n >= 2) {
          std::uniform_int_distribution<int64_t> at(0, n - 1);
          const auto i = static_cast<size_t>(at(gen)), j = static_cast<size_t>(at(gen));
          x[std::min(i, j)] = nan_a;
          if (i != j) x[std::max(i, j)] = nan_b;
        }
        if (kind == 4) {
          for (size_t i = 0; i < x.size(); ++i) x[i] = i % 2 == 0 ? -0.0f : 0.0f;
          if (n > 0) x[0] = -0.0f;
        }
        const GuardedArray<float> in(x);  // ends at an unreadable page
        const float got = fn(in.data(), n);
        const float want = definition(x);
        if (kind == 4 && n > 0) {
          CHECK(got == 0.0f);  // +0 or -0: softmax subtracts it, the same numbers either way
        } else {
          CHECK(same_bits(got, want));
          if (std::isnan(want)) {
            CHECK(std::memcmp(&got, &want, sizeof got) == 0);  // the first NaN, payload and all
          }
        }
      }
    }
  }
}
