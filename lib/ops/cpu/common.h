// Pieces the CPU operators share: checks for OpImpl::check, vector weights (norms, biases) as
// f32, and the small f32 kernels (RMSNorm of a row, SiLU, softmax).
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kernels/cpu/activation.h"
#include "ktx/gguf.h"
#include "registry/registry.h"

namespace ktx::ops::cpu {

// A 1-D weight (norm scale, bias) as f32: a view when the file stores F32, otherwise dequantized
// once at creation (they are small).
class VectorWeight {
 public:
  VectorWeight() = default;
  explicit VectorWeight(const gguf::TensorInfo& t);
  VectorWeight(const VectorWeight&) = delete;
  VectorWeight& operator=(const VectorWeight&) = delete;
  VectorWeight(VectorWeight&& other) noexcept { *this = std::move(other); }
  VectorWeight& operator=(VectorWeight&& other) noexcept;

  const float* data() const { return data_; }
  int64_t size() const { return size_; }
  explicit operator bool() const { return data_ != nullptr; }

 private:
  std::vector<float> owned_;
  const float* data_ = nullptr;
  int64_t size_ = 0;
};

// Builds an OpImpl::check answer step by step; the first failure wins.
class Checker {
 public:
  Checker(const registry::OpCreateArgs& args, std::string_view impl) : args_(args), impl_(impl) {}

  // Refuses any option key outside `known`, and devices other than the CPU.
  Checker& options(std::initializer_list<std::string_view> known);
  // The role must exist (unless optional) and be usable by the matrix product.
  Checker& matmul(std::string_view role, bool optional = false);
  // The role must exist (unless optional) and be dequantizable.
  Checker& dequantize(std::string_view role, bool optional = false);
  // The role must be missing or exist with exactly this shape (GGUF order).
  Checker& shape(std::string_view role, std::initializer_list<int64_t> expected);
  Checker& require(bool ok, std::string_view why);
  // Fails with `error` when it holds one (an option parser's message).
  Checker& require(const std::optional<std::string>& error);

  std::optional<std::string> result() const { return error_; }

 private:
  const gguf::TensorInfo* find(std::string_view role, bool optional);

  const registry::OpCreateArgs& args_;
  std::string impl_;
  std::optional<std::string> error_;
};

// Throws ktx::Error (kInvalidArgument) with `check`'s message: create() re-runs its check so that
// an operator is never built from weights it cannot use.
void throw_if(const std::optional<std::string>& check_result, std::string_view impl);

// out = x / sqrt(mean(x²) + eps) * w, with the sum of squares in double; out may alias x.
void rms_norm_row(const float* x, const float* w, int64_t n, float eps, float* out);

// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + exp(-gate[i])) · up[i], with ktx's
// exponential (kernels/cpu/activation.h: the same bits in every tier); out may be gate or up.
inline void silu_mul(const float* gate, const float* up, float* out, int64_t n) {
  kernels::cpu::silu_mul_fn()(gate, up, out, n);
}

// The largest of x[0..n), or the first NaN among them (std::max_element may skip one); -inf for
// n = 0 (kernels/cpu/activation.h).
inline float softmax_max(const float* x, int64_t n) { return kernels::cpu::softmax_max_fn()(x, n); }
// x[i] = exp(x[i] - shift) in place; returns their sum in double (softmax's denominator). The
// exponential is ktx's own (kernels/cpu/activation.h): the same bits in every tier.
inline double exp_shifted(float* x, int64_t n, float shift) {
  return kernels::cpu::exp_shifted_fn()(x, n, shift);
}
// In-place softmax of n values (max subtracted first, the sum in double).
void softmax_inplace(float* x, int64_t n);

// Four floats in one vector register of the baseline ISA (SSE2 on x86-64, NEON on arm64). These
// loops are written with explicit vectors because -O2 leaves axpy_f32 scalar (GCC's cheap
// vectorizer adds no remainder loop or aliasing check): MLA decode took 21 ms per token with it
// scalar, 17 ms with these vectors (8-layer V2-Lite-width model, 576 positions, 2 threads, same
// load). Each lane does exactly what the scalar code did (a product rounded, then a sum), so
// results are unchanged: MLA decode merges its split-KV runs with it, and the experts add each
// expert's weighted rows (decode and batches alike, so both give the same numbers).
using F32x4 = float __attribute__((vector_size(16)));

inline F32x4 load4(const float* p) {
  F32x4 v;
  __builtin_memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, F32x4 v) { __builtin_memcpy(p, &v, sizeof v); }

// y += a·x over n values.
inline void axpy_f32(float a, const float* x, float* y, int64_t n) {
  const F32x4 av = {a, a, a, a};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) store4(y + i, load4(y + i) + av * load4(x + i));
  for (; i < n; ++i) y[i] += a * x[i];
}

}  // namespace ktx::ops::cpu
