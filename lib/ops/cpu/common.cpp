// Shared pieces of the CPU operators: check helpers, vector weights, row kernels.
#include "ops/cpu/common.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels/cpu/attention.h"
#include "ktx/error.h"
#include "ktx/quant.h"
#include "ops/cpu/attention_util.h"
#include "ops/cpu/linear.h"

namespace ktx::ops::cpu {

VectorWeight::VectorWeight(const gguf::TensorInfo& t) {
  size_ = static_cast<int64_t>(t.n_elements);
  if (t.type == TensorType::F32) {
    data_ = reinterpret_cast<const float*>(t.data);
    return;
  }
  owned_.resize(static_cast<size_t>(size_));
  quant::dequantize_row(t.type, t.data, owned_.data(), size_);
  data_ = owned_.data();
}

VectorWeight& VectorWeight::operator=(VectorWeight&& other) noexcept {
  const bool was_owned = other.data_ != nullptr && other.data_ == other.owned_.data();
  owned_ = std::move(other.owned_);
  data_ = was_owned ? owned_.data() : other.data_;
  size_ = other.size_;
  other.data_ = nullptr;
  other.size_ = 0;
  return *this;
}

Checker& Checker::options(std::initializer_list<std::string_view> known) {
  if (error_) return *this;
  if (args_.device.kind != registry::DeviceKind::kCpu) {
    error_ = fmt::format("{} runs on the CPU, not on {}", impl_, args_.device.name());
    return *this;
  }
  for (const auto& [key, value] : args_.options) {
    if (std::find(known.begin(), known.end(), key) == known.end()) {
      std::string list;
      for (std::string_view k : known) list += fmt::format("{}{}", list.empty() ? "" : ", ", k);
      error_ = fmt::format("{} has no option '{}' (for {}); it takes {}", impl_, key,
                           args_.module.name, list.empty() ? "none" : list);
      return *this;
    }
  }
  return *this;
}

const gguf::TensorInfo* Checker::find(std::string_view role, bool optional) {
  const gguf::TensorInfo* t = args_.module.find_weight(role);
  if (t == nullptr && !optional && !error_) {
    error_ = fmt::format("{} needs weight '{}' of module {}, which has none", impl_, role,
                         args_.module.name);
  }
  return t;
}

Checker& Checker::matmul(std::string_view role, bool optional) {
  if (error_) return *this;
  if (const gguf::TensorInfo* t = find(role, optional)) error_ = check_matmul_weight(*t, impl_);
  return *this;
}

Checker& Checker::dequantize(std::string_view role, bool optional) {
  if (error_) return *this;
  if (const gguf::TensorInfo* t = find(role, optional)) {
    error_ = check_dequantize_weight(*t, impl_);
  }
  return *this;
}

Checker& Checker::shape(std::string_view role, std::initializer_list<int64_t> expected) {
  if (error_) return *this;
  const gguf::TensorInfo* t = args_.module.find_weight(role);
  if (t == nullptr) return *this;
  if (!std::equal(t->shape.begin(), t->shape.end(), expected.begin(), expected.end())) {
    error_ = fmt::format("{}: {} expects shape [{}] for '{}', the tensor has [{}]", t->name, impl_,
                         fmt::join(expected, ", "), role, fmt::join(t->shape, ", "));
  }
  return *this;
}

Checker& Checker::require(bool ok, std::string_view why) {
  if (!error_ && !ok) error_ = fmt::format("{} cannot run {}: {}", impl_, args_.module.name, why);
  return *this;
}

Checker& Checker::require(const std::optional<std::string>& error) {
  return require(!error, error.value_or(""));
}

void throw_if(const std::optional<std::string>& check_result, std::string_view impl) {
  if (check_result) {
    throw Error(ErrorCode::kInvalidArgument, fmt::format("{}: {}", impl, *check_result));
  }
}

void rms_norm_row(const float* x, const float* w, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) sum += static_cast<double>(x[i]) * x[i];
  const float scale = static_cast<float>(1.0 / std::sqrt(sum / static_cast<double>(n) + eps));
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void softmax_inplace(float* x, int64_t n) {
  if (n <= 0) return;
  const double sum = exp_shifted(x, n, softmax_max(x, n));
  const float inv = static_cast<float>(1.0 / sum);
  for (int64_t i = 0; i < n; ++i) x[i] *= inv;
}

void causal_block(int64_t rows, int64_t first, float* p, size_t ldp, const float* v, size_t ldv,
                  int64_t width, float* o, size_t ldo) {
  const auto weighted_sum = kernels::cpu::mla_weighted_sum_fn();
  for (int64_t i = 0; i < rows; ++i) softmax_inplace(p + static_cast<size_t>(i) * ldp, first + i);
  weighted_sum(rows, first, p, ldp, v, ldv, width, o, ldo, false);
  for (int64_t i = 1; i < rows; ++i) {
    weighted_sum(1, i, p + static_cast<size_t>(i) * ldp + first, 0,
                 v + static_cast<size_t>(first) * ldv, ldv, width, o + static_cast<size_t>(i) * ldo,
                 0, true);
  }
}

void check_cache(const runtime::LayerKvCache& cache, int64_t width_a, int64_t width_b, int64_t end,
                 const char* impl) {
  const auto need_a = static_cast<size_t>(end * width_a),
             need_b = static_cast<size_t>(end * width_b);
  if (cache.width_a != width_a || cache.width_b != width_b || cache.a.size() < need_a ||
      cache.b.size() < need_b) {
    throw Error(ErrorCode::kInvalidArgument,
                fmt::format("{}: the layer's cache has widths {} and {} with room for {} and {} "
                            "positions; this batch needs widths {} and {} and {} positions",
                            impl, cache.width_a, cache.width_b,
                            cache.width_a ? cache.a.size() / static_cast<size_t>(cache.width_a) : 0,
                            cache.width_b ? cache.b.size() / static_cast<size_t>(cache.width_b) : 0,
                            width_a, width_b, end));
  }
}

}  // namespace ktx::ops::cpu
