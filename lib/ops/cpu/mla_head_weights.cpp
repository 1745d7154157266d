#include "ops/cpu/mla_head_weights.h"

#include <algorithm>
#include <cstring>

#include "ktx/quant.h"
#include "ktx/tensor_type.h"

namespace ktx::ops::cpu {

namespace {

constexpr int64_t kGroup = quant::kAffineGroup;

const uint8_t* row_of(const gguf::TensorInfo& t, int64_t width, int64_t r) {
  return t.data + static_cast<size_t>(r) * row_size(t.type, width);
}

bool affine_ok(const gguf::TensorInfo* t, int64_t width) {
  return t != nullptr && quant::has_affine_form(t->type) && width % kGroup == 0;
}

}  // namespace

void AffineMatrix::resize(int64_t rows, int64_t w, bool with_offset) {
  width = w;
  ldc = static_cast<size_t>(w);
  groups_per_row = static_cast<size_t>(w / kGroup);
  code.resize(static_cast<size_t>(rows) * ldc);
  scale.resize(static_cast<size_t>(rows) * groups_per_row);
  if (with_offset) offset.resize(scale.size());
}

void AffineMatrix::set_row(int64_t r, TensorType type, const uint8_t* src) {
  const size_t g = static_cast<size_t>(r) * groups_per_row;
  quant::affine_row(type, src, width, code.data() + static_cast<size_t>(r) * ldc, scale.data() + g,
                    offset.empty() ? nullptr : offset.data() + g);
}

namespace {

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof(float)) == 0; }

}  // namespace

void AffineMatrix::compact() {
  if (group != kGroup || codes != kernels::cpu::AffineCodes::kInt8 || width % 32 != 0) return;
  for (size_t g = 0; g < scale.size(); g += 2) {
    if (!same_bits(scale[g], scale[g + 1])) return;
    if (!offset.empty() && !same_bits(offset[g], offset[g + 1])) return;
  }
  // One scale (and offset) per 32.
  for (size_t g = 0; g < scale.size() / 2; ++g) scale[g] = scale[2 * g];
  scale.resize(scale.size() / 2);
  if (!offset.empty()) {
    for (size_t g = 0; g < offset.size() / 2; ++g) offset[g] = offset[2 * g];
    offset.resize(offset.size() / 2);
  }
  group = 32;
  groups_per_row /= 2;
  // Nibbles: every code in 0..15, or every code in -8..7 (stored plus 8); per 32 columns 16
  // bytes, byte j holding column j in its low 4 bits and column j + 16 in its high ones.
  const auto [lo, hi] = std::minmax_element(code.begin(), code.end());
  if (lo == code.end()) return;
  if (*lo >= 0 && *hi <= 15) {
    bias = 0;
  } else if (*lo >= -8 && *hi <= 7) {
    bias = 8;
  } else {
    return;
  }
  const size_t rows = code.size() / ldc, packed_ldc = ldc / 2;
  std::vector<int8_t> packed(rows * packed_ldc);
  for (size_t r = 0; r < rows; ++r) {
    const int8_t* src = code.data() + r * ldc;
    int8_t* dst = packed.data() + r * packed_ldc;
    for (size_t c0 = 0; c0 < ldc; c0 += 32) {
      for (size_t j = 0; j < 16; ++j) {
        const auto low = static_cast<unsigned>(src[c0 + j] + bias);
        const auto high = static_cast<unsigned>(src[c0 + 16 + j] + bias);
        dst[c0 / 2 + j] = static_cast<int8_t>(static_cast<uint8_t>(low | high << 4));
      }
    }
  }
  code = std::move(packed);
  ldc = packed_ldc;
  codes = kernels::cpu::AffineCodes::kNibbles;
}

kernels::cpu::AffineRows AffineMatrix::rows_from(int64_t first_row) const {
  const size_t r = static_cast<size_t>(first_row);
  return {code.data() + r * ldc,
          ldc,
          scale.data() + r * groups_per_row,
          offset.empty() ? nullptr : offset.data() + r * groups_per_row,
          groups_per_row,
          group,
          codes,
          bias};
}

float AffineMatrix::at(int64_t r, int64_t c) const {
  return kernels::cpu::affine_element(rows_from(0), r, c);
}

// As at(), a row at a time: the naive form decodes every head's rows for each prefill batch.
void AffineMatrix::decode_rows(int64_t first_row, int64_t n, float* out) const {
  kernels::cpu::affine_decode_rows(rows_from(first_row), n, width, out);
}

MlaHeadWeights::MlaHeadWeights(const gguf::TensorInfo* kv_b, const gguf::TensorInfo* k_b,
                               const gguf::TensorInfo* v_b, int64_t n_head, int64_t nope,
                               int64_t v_dim, int64_t rank)
    : n_head_(n_head), nope_(nope), v_dim_(v_dim), rank_(rank) {
  if (kv_b != nullptr && affine_ok(kv_b, rank)) {
    // Rows h·(nope+v) + j of kv_b: the first nope are W_UK's, the next v are W_UV's.
    affine_ = true;
    const bool off = quant::affine_has_offset(kv_b->type);
    uk_.resize(n_head * nope, rank, off);
    uv_.resize(n_head * v_dim, rank, off);
    for (int64_t h = 0; h < n_head; ++h) {
      for (int64_t j = 0; j < nope; ++j)
        uk_.set_row(h * nope + j, kv_b->type, row_of(*kv_b, rank, h * (nope + v_dim) + j));
      for (int64_t d = 0; d < v_dim; ++d)
        uv_.set_row(h * v_dim + d, kv_b->type, row_of(*kv_b, rank, h * (nope + v_dim) + nope + d));
    }
    uk_.compact();
    uv_.compact();
    return;
  }
  if (kv_b == nullptr && affine_ok(k_b, nope) && affine_ok(v_b, rank)) {
    // k_b slab h is W_UKᵀ (rank rows of nope), kept as it is; v_b slab h is W_UV.
    affine_ = true;
    uk_transposed_ = true;
    uk_.resize(n_head * rank, nope, quant::affine_has_offset(k_b->type));
    uv_.resize(n_head * v_dim, rank, quant::affine_has_offset(v_b->type));
    for (int64_t r = 0; r < n_head * rank; ++r) uk_.set_row(r, k_b->type, row_of(*k_b, nope, r));
    for (int64_t r = 0; r < n_head * v_dim; ++r) uv_.set_row(r, v_b->type, row_of(*v_b, rank, r));
    uk_.compact();
    uv_.compact();
    return;
  }
  // The f32 copy: per head W_UK as [nope][rank] then W_UV as [v][rank].
  f32_.resize(static_cast<size_t>(n_head * (nope + v_dim) * rank));
  std::vector<float> tmp;
  for (int64_t h = 0; h < n_head; ++h) {
    float* uk = f32_.data() + static_cast<size_t>(h * (nope + v_dim) * rank);
    float* uv = uk + static_cast<size_t>(nope * rank);
    if (kv_b != nullptr) {
      for (int64_t j = 0; j < nope + v_dim; ++j) {
        float* dst = j < nope ? uk + j * rank : uv + (j - nope) * rank;
        quant::dequantize_row(kv_b->type, row_of(*kv_b, rank, h * (nope + v_dim) + j), dst, rank);
      }
      continue;
    }
    tmp.resize(static_cast<size_t>(rank * nope));
    for (int64_t c = 0; c < rank; ++c) {
      quant::dequantize_row(k_b->type, row_of(*k_b, nope, h * rank + c), tmp.data() + c * nope,
                            nope);
    }
    for (int64_t c = 0; c < rank; ++c) {
      for (int64_t j = 0; j < nope; ++j) uk[j * rank + c] = tmp[static_cast<size_t>(c * nope + j)];
    }
    for (int64_t d = 0; d < v_dim; ++d) {
      quant::dequantize_row(v_b->type, row_of(*v_b, rank, h * v_dim + d), uv + d * rank, rank);
    }
  }
}

void MlaHeadWeights::absorb_query(int64_t h, const float* q_nope, float* q_lat) const {
  if (!affine_) {
    const float* uk = f32_.data() + static_cast<size_t>(h * (nope_ + v_dim_) * rank_);
    const auto rank = static_cast<size_t>(rank_);
    kernels::cpu::mla_weighted_sum_fn()(1, nope_, q_nope, 0, uk, rank, rank_, q_lat, rank, false);
  } else if (uk_transposed_) {
    kernels::cpu::mla_affine_scores_fn()(rank_, q_nope, uk_.rows_from(h * rank_), nope_, q_lat);
  } else {
    kernels::cpu::mla_affine_weighted_sum_fn()(nope_, q_nope, uk_.rows_from(h * nope_), rank_,
                                               q_lat);
  }
}

void MlaHeadWeights::project_output(int64_t h, const float* o_lat, float* o) const {
  if (!affine_) {
    const float* uv =
        f32_.data() + static_cast<size_t>(h * (nope_ + v_dim_) * rank_ + nope_ * rank_);
    const auto rank = static_cast<size_t>(rank_);
    kernels::cpu::mla_scores_fn()(1, v_dim_, o_lat, rank, uv, rank, rank_, nullptr, 0, nullptr, 0,
                                  0, 1.0f, o, 0);
  } else {
    kernels::cpu::mla_affine_scores_fn()(v_dim_, o_lat, uv_.rows_from(h * v_dim_), rank_, o);
  }
}

MlaHeadWeights::F32Head MlaHeadWeights::f32_head(int64_t h, std::vector<float>& scratch) const {
  if (!affine_) {
    const float* uk = f32_.data() + static_cast<size_t>(h * (nope_ + v_dim_) * rank_);
    return {uk, uk + static_cast<size_t>(nope_ * rank_)};
  }
  scratch.resize(static_cast<size_t>((nope_ + v_dim_) * rank_));
  float* uk = scratch.data();
  float* uv = uk + static_cast<size_t>(nope_ * rank_);
  if (uk_transposed_) {
    for (int64_t c = 0; c < rank_; ++c) {
      for (int64_t j = 0; j < nope_; ++j) uk[j * rank_ + c] = uk_.at(h * rank_ + c, j);
    }
  } else {
    uk_.decode_rows(h * nope_, nope_, uk);
  }
  uv_.decode_rows(h * v_dim_, v_dim_, uv);
  return {uk, uv};
}

size_t MlaHeadWeights::bytes() const {
  return affine_ ? uk_.bytes() + uv_.bytes() : f32_.size() * sizeof(float);
}

}  // namespace ktx::ops::cpu
