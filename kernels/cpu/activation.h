// Element-wise f32 kernels around the exponential: softmax's maximum and its exp(x - max) with
// their sum, and SwiGLU's silu(gate) · up. Prefill calls them for every (query, key) pair of every
// head and for every hidden unit of every expert; with the C library's scalar expf they took ~9% of
// a 512-token prefill of the 8-layer V2-Lite-width model (Emerald Rapids, 2 threads).
//
// The exponential here is ktx's own, not the C library's: one algorithm (range reduction by
// ln 2, a degree-6 polynomial, exact scaling by 2^n) written once (activation_kernels.inc) and
// compiled for each tier, with every rounding step spelled out (explicit fused multiply-adds,
// no contraction). So every tier gives the same bits as the scalar reference on every CPU, and
// these exponentials do not depend on the platform's libm (the few scalar ones left elsewhere —
// MLA decode's split-KV rescaling, the MoE gate's sigmoid, the sampler — still call std::exp).
// Against the exact exponential it is within 1 ulp for normal results (the tests check every
// 61st float of the range), and it keeps the C library's edge cases: exp(NaN) = NaN,
// exp(-inf) = 0, exp(x) = inf for x > ~88.72, gradual underflow below ~-87.3, 0 below ~-103.9.
#pragma once

#include <cstdint>

#include "kernels/cpu/cpu_features.h"

namespace ktx::kernels::cpu {

// x[i] = exp(x[i] - shift) for i < n, in place; returns Σ x[i] (the new values) in double, added
// as 16 running sums (element i into sum i mod 16, in order) that are then added in order: the
// same sum in every tier. Writes nothing past x[n - 1].
using ExpShiftedFn = double (*)(float* x, int64_t n, float shift);

// out[i] = gate[i] / (1 + exp(-gate[i])) · up[i] for i < n (SiLU(gate) · up, in that order of
// operations). out may be gate or up (element by element in place). Writes nothing past
// out[n - 1].
using SiluMulFn = void (*)(const float* gate, const float* up, float* out, int64_t n);

// Softmax's first pass: the largest of x[0..n), or the first NaN among them (a NaN score must
// reach the output; std::max_element may skip one); -inf for n = 0. Of +0 and -0 as the largest,
// either may come back (softmax subtracts it: the same numbers).
using SoftmaxMaxFn = float (*)(const float* x, int64_t n);

// The fastest implementation for this CPU (KTX_CPU_ISA caps it like vec_dot_fn); never null.
ExpShiftedFn exp_shifted_fn();
SiluMulFn silu_mul_fn();
SoftmaxMaxFn softmax_max_fn();

// One tier's own kernel (for tests and benchmarks): null when this build or CPU cannot run it.
// Isa::kScalar gives the references.
ExpShiftedFn isa_exp_shifted(Isa isa);
SiluMulFn isa_silu_mul(Isa isa);
SoftmaxMaxFn isa_softmax_max(Isa isa);

// ktx's exponential of one float (the scalar reference's): what every tier computes per lane.
float exp_f32(float x);

}  // namespace ktx::kernels::cpu
