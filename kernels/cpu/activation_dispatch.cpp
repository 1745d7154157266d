// activation.h's dispatch and its scalar reference: activation_kernels.inc over one-float
// "vectors", so the reference runs exactly the steps each lane of the SIMD tiers runs. Compiled
// without -m flags and without contraction; std::fma is the one rounding of a fused multiply-add
// on every target.
#include <cmath>
#include <cstdint>
#include <cstring>

#include "kernels/cpu/activation.h"
#include "kernels/cpu/isa_kernels.h"

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

}  // namespace

#include "kernels/cpu/activation_kernels.inc"

float exp_one(float x) { return exp_lanes(x); }

}  // namespace scalar

float exp_f32(float x) { return scalar::exp_one(x); }

ExpShiftedFn isa_exp_shifted(Isa isa) {
  return tier_kernel<ExpShiftedFn>(isa, scalar::exp_shifted, KTX_AVX2_KERNEL(avx2::exp_shifted),
                                   KTX_AVX512_KERNEL(avx512::exp_shifted));
}

SiluMulFn isa_silu_mul(Isa isa) {
  return tier_kernel<SiluMulFn>(isa, scalar::silu_mul, KTX_AVX2_KERNEL(avx2::silu_mul),
                                KTX_AVX512_KERNEL(avx512::silu_mul));
}

SoftmaxMaxFn isa_softmax_max(Isa isa) {
  return tier_kernel<SoftmaxMaxFn>(isa, scalar::softmax_max, KTX_AVX2_KERNEL(avx2::softmax_max),
                                   KTX_AVX512_KERNEL(avx512::softmax_max));
}

ExpShiftedFn exp_shifted_fn() {
  static const ExpShiftedFn fn = pick_kernel(isa_exp_shifted);
  return fn;
}

SiluMulFn silu_mul_fn() {
  static const SiluMulFn fn = pick_kernel(isa_silu_mul);
  return fn;
}

SoftmaxMaxFn softmax_max_fn() {
  static const SoftmaxMaxFn fn = pick_kernel(isa_softmax_max);
  return fn;
}

}  // namespace ktx::kernels::cpu
