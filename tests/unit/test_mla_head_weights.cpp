// MLA's W_UK / W_UV as cpu.mla_attention keeps them (ops/cpu/mla_head_weights.h): for every type
// with an affine form, from kv_b and from the split k_b / v_b, the kept matrices decode to
// dequantize_row's values bit for bit, the products agree with a double-precision reference over
// those values within the affine kernels' bound (tests/unit/test_cpu_attention_kernels.cpp), and
// the compact layouts (a scale per 32, codes two to a byte) are taken where the type allows them.
// Fresh random weights every run (KTX_TEST_SEED=<n> replays one), outputs poisoned with NaN and
// followed by a sentinel.
#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "kernels/cpu/attention.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "ops/cpu/mla_head_weights.h"

namespace {

namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;
using ktx::ops::cpu::MlaHeadWeights;

constexpr float kSentinel = 12345.0f;
const float kNaN = std::numeric_limits<float>::quiet_NaN();

uint32_t seed() {
  if (const char* s = std::getenv("KTX_TEST_SEED")) {
    return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
  }
  return std::random_device{}();
}

// A quantized tensor of `rows` rows of `width` from random floats, and its dequantized values.
struct Tensor {
  ktx::gguf::TensorInfo info;
  std::vector<uint8_t> bytes;
  std::vector<float> values;  // rows × width, as dequantize_row gives them
  std::vector<double> parts;  // |scale·code| + |offset| per element (quant::affine_row's form)

  Tensor(TensorType type, int64_t width, int64_t rows, std::mt19937& rng) {
    std::normal_distribution<float> nd(0.0f, 0.1f);
    const size_t row_bytes = ktx::row_size(type, width);
    bytes.resize(row_bytes * static_cast<size_t>(rows));
    values.resize(static_cast<size_t>(width * rows));
    parts.resize(values.size());
    std::vector<float> x(static_cast<size_t>(width));
    std::vector<int8_t> code(static_cast<size_t>(width));
    std::vector<float> scale(static_cast<size_t>(width / 16)), offset(scale.size());
    for (int64_t r = 0; r < rows; ++r) {
      for (float& v : x) v = nd(rng);
      uint8_t* dst = bytes.data() + static_cast<size_t>(r) * row_bytes;
      ktx::quant::quantize_row(type, x.data(), dst, width);
      ktx::quant::dequantize_row(type, dst, values.data() + r * width, width);
      ktx::quant::affine_row(type, dst, width, code.data(), scale.data(), offset.data());
      const bool with_offset = ktx::quant::affine_has_offset(type);
      for (int64_t c = 0; c < width; ++c) {
        const auto g = static_cast<size_t>(c / 16);
        parts[static_cast<size_t>(r * width + c)] =
            std::fabs(double(scale[g]) * code[static_cast<size_t>(c)]) +
            (with_offset ? std::fabs(double(offset[g])) : 0.0);
      }
    }
    info.type = type;
    info.data = bytes.data();
  }
  float at(int64_t r, int64_t c, int64_t width) const {
    return values[static_cast<size_t>(r * width + c)];
  }
  double part(int64_t r, int64_t c, int64_t width) const {
    return parts[static_cast<size_t>(r * width + c)];
  }
};

// out[i] (n of them, then the sentinel) against Σ_j x[j]·value(i, j) in double, within
// (terms + 32)·2^-24·Σ_j |x[j]|·part(i, j): the affine kernels' bound.
template <class Value, class Part>
void check_products(const std::vector<float>& out, int64_t n, const std::vector<float>& x,
                    double terms, const Value& value, const Part& part) {
  for (int64_t i = 0; i < n; ++i) {
    double ref = 0, abs_sum = 0;
    for (size_t j = 0; j < x.size(); ++j) {
      ref += double(x[j]) * value(i, static_cast<int64_t>(j));
      abs_sum += std::fabs(double(x[j])) * part(i, static_cast<int64_t>(j));
    }
    const double tol = (terms + 32) * 0x1p-24 * abs_sum;
    const float got = out[static_cast<size_t>(i)];
    INFO("output " << i << ": got " << got << ", reference " << ref << ", tolerance " << tol);
    REQUIRE(std::fabs(got - ref) <= tol);
  }
  REQUIRE(out[static_cast<size_t>(n)] == kSentinel);
}

// Bytes an element of the kept matrices, by type: codes (1, or 1/2 for 4-bit codes) plus a
// scale, and an offset for types with minimums, per 32 elements (per 16 for Q2_K, Q3_K, Q6_K).
double expected_bytes_per_element(TensorType t) {
  switch (t) {
    case TensorType::Q4_0:
      return 0.5 + 4.0 / 32;
    case TensorType::Q4_1:
      return 0.5 + 8.0 / 32;
    case TensorType::Q4_K:
      return 0.5 + 8.0 / 32;
    case TensorType::Q5_0:
    case TensorType::Q8_0:
    case TensorType::IQ4_NL:
    case TensorType::IQ4_XS:
      return 1.0 + 4.0 / 32;
    case TensorType::Q5_1:
    case TensorType::Q5_K:
      return 1.0 + 8.0 / 32;
    case TensorType::Q3_K:
    case TensorType::Q6_K:
      return 1.0 + 4.0 / 16;
    case TensorType::Q2_K:
      return 1.0 + 8.0 / 16;
    default:
      return 0.0;
  }
}

}  // namespace

TEST_CASE("MLA head weights: kept exactly, products bit for bit, compact where the type allows",
          "[cpu_ops]") {
  const uint32_t s = seed();
  INFO("seed " << s << " (KTX_TEST_SEED replays it)");
  std::mt19937 rng(s);
  std::normal_distribution<float> nd;
  for (TensorType type :
       {TensorType::Q4_0, TensorType::Q4_1, TensorType::Q5_0, TensorType::Q5_1, TensorType::Q8_0,
        TensorType::IQ4_NL, TensorType::Q2_K, TensorType::Q3_K, TensorType::Q4_K, TensorType::Q5_K,
        TensorType::Q6_K, TensorType::IQ4_XS}) {
    if (!ktx::quant::can_quantize(type)) continue;
    REQUIRE(ktx::quant::has_affine_form(type));
    const int64_t block = ktx::traits(type).block_size;
    for (bool split : {false, true}) {
      INFO(ktx::type_name(type) << (split ? ", k_b / v_b" : ", kv_b"));
      // k_b's rows are nope wide: a whole block of the type.
      const int64_t n_head = 3, rank = std::max<int64_t>(256, block);
      const int64_t nope = split ? std::max<int64_t>(64, block) : 64, v_dim = 32;
      std::optional<Tensor> kv_b, k_b, v_b;
      if (split) {
        k_b.emplace(type, nope, rank * n_head, rng);   // per head: W_UKᵀ, rank rows of nope
        v_b.emplace(type, rank, v_dim * n_head, rng);  // per head: W_UV, v rows of rank
      } else {
        kv_b.emplace(type, rank, n_head * (nope + v_dim), rng);
      }
      const MlaHeadWeights w(kv_b ? &kv_b->info : nullptr, k_b ? &k_b->info : nullptr,
                             v_b ? &v_b->info : nullptr, n_head, nope, v_dim, rank);
      REQUIRE(w.affine());
      const double elements = static_cast<double>(n_head * (nope + v_dim) * rank);
      CHECK(static_cast<double>(w.bytes()) == expected_bytes_per_element(type) * elements);

      std::vector<float> scratch;
      for (int64_t h = 0; h < n_head; ++h) {
        // The file's values, [nope][rank] and [v][rank].
        std::vector<float> uk(static_cast<size_t>(nope * rank)),
            uv(static_cast<size_t>(v_dim * rank));
        for (int64_t j = 0; j < nope; ++j) {
          for (int64_t c = 0; c < rank; ++c) {
            uk[static_cast<size_t>(j * rank + c)] =
                split ? k_b->at(h * rank + c, j, nope) : kv_b->at(h * (nope + v_dim) + j, c, rank);
          }
        }
        for (int64_t d = 0; d < v_dim; ++d) {
          for (int64_t c = 0; c < rank; ++c) {
            uv[static_cast<size_t>(d * rank + c)] =
                split ? v_b->at(h * v_dim + d, c, rank)
                      : kv_b->at(h * (nope + v_dim) + nope + d, c, rank);
          }
        }
        const MlaHeadWeights::F32Head f = w.f32_head(h, scratch);
        REQUIRE(std::memcmp(f.uk, uk.data(), uk.size() * sizeof(float)) == 0);
        REQUIRE(std::memcmp(f.uv, uv.data(), uv.size() * sizeof(float)) == 0);

        // q_lat = W_UKᵀ q_nope and o = W_UV o_lat over the file's values.
        const auto uk_value = [&](int64_t c, int64_t j) {
          return double(uk[static_cast<size_t>(j * rank + c)]);
        };
        const auto uk_part = [&](int64_t c, int64_t j) {
          return split ? k_b->part(h * rank + c, j, nope)
                       : kv_b->part(h * (nope + v_dim) + j, c, rank);
        };
        const auto uv_value = [&](int64_t d, int64_t c) {
          return double(uv[static_cast<size_t>(d * rank + c)]);
        };
        const auto uv_part = [&](int64_t d, int64_t c) {
          return split ? v_b->part(h * v_dim + d, c, rank)
                       : kv_b->part(h * (nope + v_dim) + nope + d, c, rank);
        };
        std::vector<float> q(static_cast<size_t>(nope));
        for (float& v : q) v = nd(rng);
        std::vector<float> got(static_cast<size_t>(rank) + 1, kNaN);
        got.back() = kSentinel;
        w.absorb_query(h, q.data(), got.data());
        check_products(got, rank, q, double(nope), uk_value, uk_part);

        std::vector<float> o_lat(static_cast<size_t>(rank));
        for (float& v : o_lat) v = nd(rng);
        std::vector<float> o_got(static_cast<size_t>(v_dim) + 1, kNaN);
        o_got.back() = kSentinel;
        w.project_output(h, o_lat.data(), o_got.data());
        check_products(o_got, v_dim, o_lat, double(rank), uv_value, uv_part);
        for (float v : got) REQUIRE(!std::isnan(v));
        for (float v : o_got) REQUIRE(!std::isnan(v));
      }
    }
  }
}
