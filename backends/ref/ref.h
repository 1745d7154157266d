// The reference backend's shared pieces: weights read row by row (dequantized with
// ktx::quant::dequantize_row, widened to double), rotary embedding, small double-precision
// helpers, the check() builder, the device's memory, and the factories of the eight ref.*
// operators. They run on the backend's own device, ref:0 (see module.cpp). Everything here
// is written for clarity and independence from lib/ops/cpu, never for speed: no threads, no
// SIMD, no activation quantization.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/gguf.h"
#include "model/config.h"
#include "registry/registry.h"

namespace ktx::backends::ref {

// A weight as a matrix of `rows` rows of `cols` values (cols = GGUF shape[0], rows = the product
// of the other dimensions), read straight from the mapping.
class Rows {
 public:
  Rows() = default;
  explicit Rows(const gguf::TensorInfo& t);

  // The index-th of n equal blocks of consecutive rows: one expert of ffn_*_exps, one head of
  // attn_k_b / attn_v_b.
  Rows block(int64_t index, int64_t n) const;

  int64_t rows() const { return rows_; }
  int64_t cols() const { return cols_; }
  const std::string& name() const { return tensor_->name; }

  void row(int64_t r, double* out) const;  // out[cols]
  std::vector<double> all() const;         // [rows][cols]
  // y[t][r] = Σ_c W[r][c] · x[t][c] for t < n; x is [n][cols], y is [n][rows].
  void matmul(int64_t n, const double* x, double* y) const;

 private:
  const gguf::TensorInfo* tensor_ = nullptr;
  int64_t rows_ = 0, cols_ = 0;
  int64_t first_row_ = 0;
  size_t row_bytes_ = 0;
};

// Rotary embedding of the first n_dims values of a vector, pairs (2i, 2i+1) ("NORM" rope as
// GGUF llama/deepseek2 files expect), with linear or YaRN frequency scaling and optional
// per-pair frequency divisors (Llama 3.1's rope_freqs).
class Rotary {
 public:
  Rotary(const model::ModelConfig& config, int64_t n_dims,
         const std::vector<double>& freq_divisors = {});
  void apply(int64_t pos, double* x) const;

 private:
  int64_t n_dims_;
  std::vector<double> inv_freq_;
  double magnitude_ = 1.0;
};

std::vector<double> widen(const float* x, int64_t n);
void narrow(const std::vector<double>& x, float* out);
// x / sqrt(mean(x²) + eps) · w, in place.
void rms_norm(double* x, const double* w, int64_t n, double eps);
double silu(double x);
void softmax(double* x, int64_t n);

// Builds an OpImpl::check answer: the first failure wins.
class Check {
 public:
  // Refuses every option but those in `allowed`.
  Check(const registry::OpCreateArgs& args, std::string_view impl,
        std::initializer_list<std::string_view> allowed = {});
  // The role must exist (unless optional) and be of a type dequantize_row reads.
  Check& role(std::string_view role, bool optional = false);
  // When present, the role has exactly this shape (GGUF order, trailing 1s ignored).
  Check& shape(std::string_view role, std::initializer_list<int64_t> expected);
  Check& require(bool ok, std::string_view why);
  std::optional<std::string> result() const { return error_; }

 private:
  const registry::OpCreateArgs& args_;
  std::string impl_;
  std::optional<std::string> error_;
};

// The device ref:0: buffers from device_alloc (64-byte aligned; freed with device_free) are
// recorded, and require_device_memory throws ktx::Error (kInternal) naming `what` unless
// [p, p + bytes) lies inside one of them (device_memory.cpp says why).
void* device_alloc(size_t size);
void device_free(void* p);
bool is_device_memory(const void* p, size_t bytes);
void require_device_memory(const void* p, size_t bytes, std::string_view what,
                           std::string_view impl);
template <class T>
void require_device_array(const T* p, int64_t count, std::string_view what, std::string_view impl) {
  require_device_memory(p, static_cast<size_t>(count) * sizeof(T), what, impl);
}

// Throws ktx::Error(kUnsupported) with the check's message, if any.
void throw_if(const std::optional<std::string>& why);

registry::OpImpl embedding_impl();
registry::OpImpl rms_norm_impl();
registry::OpImpl lm_head_impl();
registry::OpImpl mlp_impl();
registry::OpImpl moe_gate_impl();
registry::OpImpl experts_impl();
registry::OpImpl mla_attention_impl();
registry::OpImpl gqa_attention_impl();

}  // namespace ktx::backends::ref
