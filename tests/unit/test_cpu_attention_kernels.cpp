// Tests of kernels/cpu/attention.h (MLA attention's f32 products) against a double-precision
// reference: every tier this CPU can run (the scalar references included), fresh random data each
// run (KTX_TEST_SEED=<n> replays one), outputs poisoned with NaN and strides wider than the data
// (the gaps must stay untouched), awkward head / position counts and widths that are no multiple
// of the vector width, inputs placed so that they end at an unreadable page (an over-read
// crashes).
//
// The affine kernels (MLA's W_UK / W_UV in their quantized type's codes, in each layout) take
// each group's scale out of its sum, so they are held to the same kind of bound over the terms
// they add: w·scale·code and w·offset (below).
//
// What must match: each output is an f32 sum of the reference's products in another order, so
//   scores        |got - ref| <= |scale| · (n / lanes + 16) · 2^-24 · Σ|products|, n = wa + wb
//                 (one running sum per vector lane, then a tree over the lanes);
//   weighted sum  |got - ref| <= (positions + 2) · 2^-24 · Σ|products| (one running sum per
//                 output over the positions, as the reference).
#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "guarded_memory.h"
#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_features.h"

namespace {

namespace cpu = ktx::kernels::cpu;

struct Random {
  uint32_t seed = initial_seed();
  std::mt19937 gen{seed};

  static uint32_t initial_seed() {
    if (const char* s = std::getenv("KTX_TEST_SEED")) {
      return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
    }
    return std::random_device{}();
  }
  float normal() { return std::normal_distribution<float>(0.0f, 1.0f)(gen); }
};

// `n` values that end where an unreadable page begins (guarded_memory.h): normal floats, or
// any int8 codes.
template <typename T>
std::vector<T> random_values(size_t n, Random& rnd) {
  std::vector<T> v(n);
  for (T& e : v) {
    if constexpr (std::is_same_v<T, float>) {
      e = rnd.normal();
    } else {
      e = static_cast<T>(std::uniform_int_distribution<int>(-128, 127)(rnd.gen));
    }
  }
  return v;
}
template <typename T>
struct Guarded : GuardedArray<T> {
  Guarded(size_t n, Random& rnd) : GuardedArray<T>(random_values<T>(n, rnd)) {}
};
using GuardedFloats = Guarded<float>;

// Floats of a [rows × ld] matrix whose last row ends after `width` values.
size_t matrix_size(int64_t rows, size_t ld, int64_t width) {
  return rows == 0 ? 0 : static_cast<size_t>(rows - 1) * ld + static_cast<size_t>(width);
}

struct Tier {
  cpu::Isa isa;
  int lanes;
};

std::vector<Tier> tiers() {
  std::vector<Tier> out;
  const Tier all[] = {{cpu::Isa::kScalar, 1}, {cpu::Isa::kAvx2, 8}, {cpu::Isa::kAvx512Vnni, 16}};
  for (const Tier& t : all) {
    if (!cpu::isa_available(t.isa)) {
      WARN("this CPU or build lacks " << cpu::isa_name(t.isa) << ": its kernels are not tested");
      continue;
    }
    out.push_back(t);
  }
  return out;
}

const float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kSentinel = 12345.0f;

}  // namespace

TEST_CASE("cpu attention kernels: MLA scores against a double reference", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  struct Widths {
    int64_t wa, wb;
  };
  const Widths widths[] = {{512, 64}, {7, 3}, {33, 0}, {100, 17}, {0, 5}, {1, 1}};
  for (const Tier& tier : tiers()) {
    const cpu::MlaScoresFn fn = cpu::isa_mla_scores(tier.isa);
    REQUIRE(fn != nullptr);
    for (int64_t heads : {1, 2, 3, 4, 6, 7, 16, 17}) {
      for (int64_t positions : {1, 3, 7, 17, 70}) {
        for (const Widths& w : widths) {
          INFO(cpu::isa_name(tier.isa) << ": heads " << heads << ", positions " << positions
                                       << ", widths " << w.wa << " + " << w.wb);
          const size_t lda = static_cast<size_t>(w.wa) + 3, ldb = static_cast<size_t>(w.wb) + 1;
          const size_t ldka = static_cast<size_t>(w.wa) + 5, ldkb = static_cast<size_t>(w.wb);
          const size_t lds = static_cast<size_t>(positions) + 2;
          const GuardedFloats qa(matrix_size(heads, lda, w.wa), rnd);
          const GuardedFloats qb(matrix_size(heads, ldb, w.wb), rnd);
          const GuardedFloats ka(matrix_size(positions, ldka, w.wa), rnd);
          const GuardedFloats kb(matrix_size(positions, ldkb, w.wb), rnd);
          const float scale = 0.125f * (1.0f + 0.01f * rnd.normal());
          std::vector<float> s(static_cast<size_t>(heads) * lds, kSentinel);
          for (int64_t h = 0; h < heads; ++h) {
            for (int64_t p = 0; p < positions; ++p) s[h * lds + p] = kNaN;
          }
          fn(heads, positions, qa.data(), lda, ka.data(), ldka, w.wa, qb.data(), ldb, kb.data(),
             ldkb, w.wb, scale, s.data(), lds);
          bool ok = true;
          for (int64_t h = 0; h < heads && ok; ++h) {
            for (int64_t p = 0; p < positions; ++p) {
              double ref = 0, abs_sum = 0;
              for (int64_t i = 0; i < w.wa; ++i) {
                const double t = double(qa.data()[h * lda + i]) * ka.data()[p * ldka + i];
                ref += t;
                abs_sum += std::fabs(t);
              }
              for (int64_t i = 0; i < w.wb; ++i) {
                const double t = double(qb.data()[h * ldb + i]) * kb.data()[p * ldkb + i];
                ref += t;
                abs_sum += std::fabs(t);
              }
              ref *= scale;
              const double n = static_cast<double>(w.wa + w.wb);
              const double tol = std::fabs(scale) * (n / tier.lanes + 16) * 0x1p-24 * abs_sum;
              const float got = s[h * lds + p];
              if (!(std::fabs(got - ref) <= tol)) {
                INFO("head " << h << ", position " << p << ": got " << got << ", reference " << ref
                             << ", tolerance " << tol);
                CHECK(false);
                ok = false;
                break;
              }
            }
            for (size_t g = static_cast<size_t>(positions); g < lds; ++g) {
              REQUIRE(s[h * lds + g] == kSentinel);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("cpu attention kernels: MLA weighted sum against a double reference", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Tier& tier : tiers()) {
    const cpu::MlaWeightedSumFn fn = cpu::isa_mla_weighted_sum(tier.isa);
    REQUIRE(fn != nullptr);
    for (int64_t heads : {1, 2, 3, 4, 6, 7, 16, 17}) {
      for (int64_t positions : {0, 1, 7, 17, 130}) {
        for (int64_t width : {1, 7, 16, 33, 100, 512}) {
          INFO(cpu::isa_name(tier.isa)
               << ": heads " << heads << ", positions " << positions << ", width " << width);
          const size_t ldw = static_cast<size_t>(positions) + 1;
          const size_t ldv = static_cast<size_t>(width) + 64;  // the rope part sits there
          const size_t ldo = static_cast<size_t>(width) + 3;
          const GuardedFloats w(matrix_size(heads, ldw, positions), rnd);
          const GuardedFloats v(matrix_size(positions, ldv, width), rnd);
          std::vector<float> o(static_cast<size_t>(heads) * ldo, kSentinel);
          for (int64_t h = 0; h < heads; ++h) {
            for (int64_t c = 0; c < width; ++c) o[h * ldo + c] = kNaN;
          }
          fn(heads, positions, w.data(), ldw, v.data(), ldv, width, o.data(), ldo, false);
          bool ok = true;
          for (int64_t h = 0; h < heads && ok; ++h) {
            for (int64_t c = 0; c < width; ++c) {
              double ref = 0, abs_sum = 0;
              for (int64_t p = 0; p < positions; ++p) {
                const double t = double(w.data()[h * ldw + p]) * v.data()[p * ldv + c];
                ref += t;
                abs_sum += std::fabs(t);
              }
              const double tol = (static_cast<double>(positions) + 2) * 0x1p-24 * abs_sum;
              const float got = o[h * ldo + c];
              if (!(std::fabs(got - ref) <= tol)) {
                INFO("head " << h << ", column " << c << ": got " << got << ", reference " << ref
                             << ", tolerance " << tol);
                CHECK(false);
                ok = false;
                break;
              }
            }
            for (size_t g = static_cast<size_t>(width); g < ldo; ++g) {
              REQUIRE(o[h * ldo + g] == kSentinel);
            }
          }
        }
      }
    }
  }
}

TEST_CASE("cpu attention kernels: a weighted sum split over calls is the one call's, bit for bit",
          "[cpu_kernels]") {
  // With `accumulate` a call continues o's running sums (attention.h): prefill's causal blocks
  // sum each query's keys in two calls, and a token must get the same numbers in any batch.
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Tier& tier : tiers()) {
    const cpu::MlaWeightedSumFn fn = cpu::isa_mla_weighted_sum(tier.isa);
    for (int64_t heads : {1, 3, 4, 5}) {
      for (int64_t positions : {1, 9, 300, 700}) {
        for (int64_t width : {7, 64, 100}) {
          const size_t ldw = static_cast<size_t>(positions) + 2;
          const size_t ldv = static_cast<size_t>(width) + 5, ldo = static_cast<size_t>(width) + 1;
          const GuardedFloats w(matrix_size(heads, ldw, positions), rnd);
          const GuardedFloats v(matrix_size(positions, ldv, width), rnd);
          std::vector<float> one(static_cast<size_t>(heads) * ldo, kSentinel);
          fn(heads, positions, w.data(), ldw, v.data(), ldv, width, one.data(), ldo, false);
          for (int64_t split : {int64_t{0}, int64_t{1}, positions / 3, positions - 1, positions}) {
            INFO(cpu::isa_name(tier.isa) << ": heads " << heads << ", positions " << positions
                                         << ", width " << width << ", split at " << split);
            std::vector<float> two(one.size(), kSentinel);
            for (int64_t h = 0; h < heads; ++h) {
              for (int64_t c = 0; c < width; ++c) two[h * ldo + c] = kNaN;
            }
            fn(heads, split, w.data(), ldw, v.data(), ldv, width, two.data(), ldo, false);
            fn(heads, positions - split, w.data() + split, ldw, v.data() + split * ldv, ldv, width,
               two.data(), ldo, true);
            CHECK(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
          }
        }
      }
    }
  }
}

// The affine kernels take each group's scale out of its sum (attention_kernels.inc), so they are
// held to the f32 kernels' bounds, over the terms as they compute them: w·scale·code and
// w·offset (the decoded element's two parts), not the decoded element, whose parts may cancel.
TEST_CASE("cpu attention kernels: affine rows against a double reference", "[cpu_kernels]") {
  Random rnd;
  INFO("seed " << rnd.seed << " (KTX_TEST_SEED replays it)");
  for (const Tier& tier : tiers()) {
    const cpu::MlaAffineWeightedSumFn affine_sum = cpu::isa_mla_affine_weighted_sum(tier.isa);
    const cpu::MlaAffineScoresFn affine_scores = cpu::isa_mla_affine_scores(tier.isa);
    REQUIRE(affine_sum != nullptr);
    REQUIRE(affine_scores != nullptr);
    // Each layout (attention.h): int8 codes per 16 or 32, nibbles per 32 (codes 0..15 or -8..7).
    struct Layout {
      cpu::AffineCodes codes;
      int group, bias;
    };
    for (const Layout layout :
         {Layout{cpu::AffineCodes::kInt8, 16, 0}, Layout{cpu::AffineCodes::kInt8, 32, 0},
          Layout{cpu::AffineCodes::kNibbles, 32, 0}, Layout{cpu::AffineCodes::kNibbles, 32, 8}}) {
      for (bool with_offset : {false, true}) {
        for (int64_t rows : {1, 3, 4, 5, 9, 128}) {
          for (int64_t width : {16, 32, 48, 96, 128, 144, 160, 384, 512}) {
            const bool nibbles = layout.codes == cpu::AffineCodes::kNibbles;
            if (width % layout.group != 0) continue;
            INFO(cpu::isa_name(tier.isa)
                 << ": rows " << rows << ", width " << width
                 << (with_offset ? ", with offsets" : "") << ", group " << layout.group
                 << (nibbles ? ", nibbles" : "") << ", bias " << layout.bias);
            const size_t ldc = static_cast<size_t>(nibbles ? width / 2 : width) + 32;
            const auto groups = static_cast<size_t>(width / layout.group);
            const size_t lds = groups + 3;
            const Guarded<int8_t> code(matrix_size(rows, ldc, nibbles ? width / 2 : width), rnd);
            const GuardedFloats scale(matrix_size(rows, lds, static_cast<int64_t>(groups)), rnd);
            const GuardedFloats offset(matrix_size(rows, lds, static_cast<int64_t>(groups)), rnd);
            const cpu::AffineRows a{
                code.data(), ldc,          scale.data(), with_offset ? offset.data() : nullptr,
                lds,         layout.group, layout.codes, layout.bias};
            // Each element's two parts, scale·code and offset, in double.
            std::vector<double> scaled(static_cast<size_t>(rows * width));
            std::vector<double> offs(scaled.size());
            for (int64_t r = 0; r < rows; ++r) {
              const int8_t* row = code.data() + static_cast<size_t>(r) * ldc;
              for (int64_t c = 0; c < width; ++c) {
                int q = 0;
                if (nibbles) {
                  const auto byte = static_cast<uint8_t>(row[c / 32 * 16 + c % 16]);
                  q = (c % 32 < 16 ? byte & 15 : byte >> 4) - layout.bias;
                } else {
                  q = row[c];
                }
                REQUIRE(cpu::affine_code(a, r, c) == q);
                const size_t g =
                    static_cast<size_t>(r) * lds + static_cast<size_t>(c / layout.group);
                const auto e = static_cast<size_t>(r * width + c);
                scaled[e] = double(scale.data()[g]) * q;
                offs[e] = with_offset ? double(offset.data()[g]) : 0.0;
              }
            }
            const GuardedFloats w(static_cast<size_t>(rows), rnd);
            const GuardedFloats x(static_cast<size_t>(width), rnd);
            const auto within = [&](float got, double ref, double abs_sum, double n) {
              const double tol = (n + 32) * 0x1p-24 * abs_sum;
              INFO("got " << got << ", reference " << ref << ", tolerance " << tol);
              return std::fabs(got - ref) <= tol;
            };

            // Weighted sum: width outputs, then a sentinel that must survive.
            std::vector<float> got(static_cast<size_t>(width) + 1, kNaN);
            got.back() = kSentinel;
            affine_sum(rows, w.data(), a, width, got.data());
            for (int64_t c = 0; c < width; ++c) {
              double ref = 0, abs_sum = 0;
              for (int64_t r = 0; r < rows; ++r) {
                const auto e = static_cast<size_t>(r * width + c);
                const double wr = w.data()[r];
                ref += wr * (scaled[e] + offs[e]);
                abs_sum += std::fabs(wr) * (std::fabs(scaled[e]) + std::fabs(offs[e]));
              }
              INFO("column " << c);
              REQUIRE(within(got[static_cast<size_t>(c)], ref, abs_sum, double(rows)));
            }
            REQUIRE(got.back() == kSentinel);

            // Scores: one per row.
            std::vector<float> s_got(static_cast<size_t>(rows) + 1, kNaN);
            s_got.back() = kSentinel;
            affine_scores(rows, x.data(), a, width, s_got.data());
            for (int64_t r = 0; r < rows; ++r) {
              double ref = 0, abs_sum = 0;
              for (int64_t c = 0; c < width; ++c) {
                const auto e = static_cast<size_t>(r * width + c);
                const double xc = x.data()[c];
                ref += xc * (scaled[e] + offs[e]);
                abs_sum += std::fabs(xc) * (std::fabs(scaled[e]) + std::fabs(offs[e]));
              }
              INFO("row " << r);
              REQUIRE(within(s_got[static_cast<size_t>(r)], ref, abs_sum,
                             double(width) / tier.lanes + layout.group));
            }
            REQUIRE(s_got.back() == kSentinel);
          }
        }
      }
    }
  }
}

TEST_CASE("cpu attention kernels: the dispatch picks the selected tier", "[cpu_kernels]") {
  REQUIRE(cpu::mla_scores_fn() != nullptr);
  REQUIRE(cpu::mla_weighted_sum_fn() != nullptr);
  CHECK(cpu::mla_scores_fn() == cpu::isa_mla_scores(cpu::selected_isa()));
  CHECK(cpu::mla_weighted_sum_fn() == cpu::isa_mla_weighted_sum(cpu::selected_isa()));
  CHECK(cpu::mla_affine_weighted_sum_fn() == cpu::isa_mla_affine_weighted_sum(cpu::selected_isa()));
  CHECK(cpu::mla_affine_scores_fn() == cpu::isa_mla_affine_scores(cpu::selected_isa()));
}
