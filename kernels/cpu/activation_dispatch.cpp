// activation.h's dispatch and its scalar reference: activation_kernels.inc over one-float
// "vectors", so the reference runs exactly the steps each lane of the SIMD tiers runs. Compiled
// without -m flags and without contraction; std::fma is the one rounding of a fused multiply-add
// on every target.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/isa_kernels.h"

#ifndef KTX_CPU_KERNELS_AVX2
#define KTX_CPU_KERNELS_AVX2 0
#endif
#ifndef KTX_CPU_KERNELS_AVX512
#define KTX_CPU_KERNELS_AVX512 0
#endif

namespace ktx::kernels::cpu {
namespace scalar {
namespace {

struct Lanes {
  using F = float;
  using I = int32_t;
  static constexpr int64_t kLanes = 1;
  static F load(const float* p) { return *p; }
  static F load_n(const float* p, int64_t /*n < 1: never called*/) { return *p; }
  static void store(float* p, F v) { *p = v; }
  static void store_n(float* p, F v, int64_t /*never called*/) { *p = v; }
  static F set1(float x) { return x; }
  static F add(F a, F b) { return a + b; }
  static F sub(F a, F b) { return a - b; }
  static F mul(F a, F b) { return a * b; }
  static F div(F a, F b) { return a / b; }
  static F neg(F a) { return -a; }
  static F fma(F a, F b, F c) { return std::fma(a, b, c); }
  static F max_lo(F x, F lo) { return x > lo ? x : lo; }
  static F min_hi(F x, F hi) { return x < hi ? x : hi; }
  static F nan_keep(F x, F y) { return std::isnan(x) ? x : y; }
  static I to_int(F n) { return static_cast<I>(n); }
  static I shr1(I k) { return k >> 1; }
  static I isub(I a, I b) { return a - b; }
  static F pow2(I k) {
    const auto bits = static_cast<uint32_t>(k + 127) << 23;
    float f;
    std::memcpy(&f, &bits, sizeof f);
    return f;
  }
  struct Sum16 {
    double s[16] = {};
    void add(int64_t j, F v, int64_t /*1*/) { s[j] += v; }
    double total() const {
      double t = 0.0;
      for (double d : s) t += d;
      return t;
    }
  };
};

#include "kernels/cpu/activation_kernels.inc"

}  // namespace

double exp_shifted(float* x, int64_t n, float shift) { return exp_shifted_impl(x, n, shift); }
void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  silu_mul_impl(gate, up, out, n);
}
float exp_one(float x) { return exp_lanes(x); }

}  // namespace scalar

float exp_f32(float x) { return scalar::exp_one(x); }

ExpShiftedFn isa_exp_shifted(Isa isa) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return scalar::exp_shifted;
    case Isa::kAvx2:
#if KTX_CPU_KERNELS_AVX2
      return avx2::exp_shifted;
#else
      return nullptr;
#endif
    case Isa::kAvx512Vnni:
#if KTX_CPU_KERNELS_AVX512
      return avx512::exp_shifted;
#else
      return nullptr;
#endif
  }
  return nullptr;
}

SiluMulFn isa_silu_mul(Isa isa) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return scalar::silu_mul;
    case Isa::kAvx2:
#if KTX_CPU_KERNELS_AVX2
      return avx2::silu_mul;
#else
      return nullptr;
#endif
    case Isa::kAvx512Vnni:
#if KTX_CPU_KERNELS_AVX512
      return avx512::silu_mul;
#else
      return nullptr;
#endif
  }
  return nullptr;
}

ExpShiftedFn exp_shifted_fn() {
  static const ExpShiftedFn fn = pick_kernel(isa_exp_shifted);
  return fn;
}

SiluMulFn silu_mul_fn() {
  static const SiluMulFn fn = pick_kernel(isa_silu_mul);
  return fn;
}

}  // namespace ktx::kernels::cpu
