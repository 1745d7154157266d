// MLA's per-head matrices W_UK (nope × rank) and W_UV (v × rank), as cpu.mla_attention reads
// them: q_lat = W_UKᵀ q_nope and o = W_UV o_lat for every head and every decoded token, and
// f32 copies of one head at a time for the naive form's decompression.
//
// They come from attn_kv_b ([rank, n_head·(nope+v)]: per head nope rows of W_UK, then v rows of
// W_UV) or from attn_k_b ([nope, rank, n_head]: per head W_UK transposed, rank rows of nope) and
// attn_v_b ([rank, v, n_head]) as newer llama.cpp files split them. When the type has an affine
// form (ktx/quant.h: small integer codes times a scale per 16, plus an offset) the matrices are
// kept that way, compacted where the type allows (AffineMatrix::compact): 0.75 bytes an element
// for Q4_K, 1.25 for Q6_K, against f32's 4, and decode reads all of them every token (V2-Lite:
// 1.6 MB a layer for Q4_K, 2.6 for Q6_K, instead of 8; V3: 12.6 and 21 MB instead of 64). The
// values are the file's, bit for bit; the kernels (kernels/cpu/attention.h) take each group's
// scale out of its sum, so their products differ from f32 products over the decoded values by
// float rounding only. Float types (F32, F16, BF16) and types without an affine form keep an f32
// copy.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"

namespace ktx::ops::cpu {

// Rows of one width in the affine form (quant::affine_row), all heads' rows one after another,
// kept in the smallest of the kernels' layouts (kernels/cpu/attention.h) that holds them exactly.
struct AffineMatrix {
  int64_t width = 0;
  std::vector<int8_t> code;          // ldc bytes a row
  std::vector<float> scale, offset;  // groups_per_row a row; offset empty when the type has none
  size_t ldc = 0, groups_per_row = 0;
  int group = quant::kAffineGroup;
  kernels::cpu::AffineCodes codes = kernels::cpu::AffineCodes::kInt8;
  int bias = 0;

  // Filled by set_row in affine_row's layout (int8 codes, a scale per 16), then compact().
  void resize(int64_t rows, int64_t width, bool with_offset);
  // Row r from `src` (one row of `type`, `width` elements).
  void set_row(int64_t r, TensorType type, const uint8_t* src);
  // Once every row is set: one scale (and offset) per 32 elements where each pair of 16 agree
  // bit for bit (types with 32-element blocks or sub-blocks), and codes two to a byte where they
  // all fit 4 bits (0..15 or -8..7). The values stay the same bit for bit.
  void compact();
  // The kernels' view of the rows from `first_row` on.
  kernels::cpu::AffineRows rows_from(int64_t first_row) const;
  // Element (r, c) as dequantize_row gives it; rows [first_row, first_row + n) likewise into
  // `out` (n × width floats).
  float at(int64_t r, int64_t c) const;
  void decode_rows(int64_t first_row, int64_t n, float* out) const;
  size_t bytes() const { return code.size() + (scale.size() + offset.size()) * sizeof(float); }
};

class MlaHeadWeights {
 public:
  // kv_b, or k_b and v_b (the other null); shapes already checked by the operator.
  MlaHeadWeights(const gguf::TensorInfo* kv_b, const gguf::TensorInfo* k_b,
                 const gguf::TensorInfo* v_b, int64_t n_head, int64_t nope, int64_t v_dim,
                 int64_t rank);

  // q_lat (rank floats) = W_UKᵀ q_nope (nope floats) for head h.
  void absorb_query(int64_t h, const float* q_nope, float* q_lat) const;
  // o (v_dim floats) = W_UV o_lat (rank floats) for head h.
  void project_output(int64_t h, const float* o_lat, float* o) const;

  // Head h's W_UK as [nope][rank] and W_UV as [v][rank] in f32: the f32 copy itself, or decoded
  // into `scratch` (resized as needed).
  struct F32Head {
    const float* uk;
    const float* uv;
  };
  F32Head f32_head(int64_t h, std::vector<float>& scratch) const;

  bool affine() const { return affine_; }
  // Bytes held (what decode reads per token across all heads).
  size_t bytes() const;

 private:
  int64_t n_head_, nope_, v_dim_, rank_;
  bool affine_ = false;
  bool uk_transposed_ = false;  // uk_ rows are W_UKᵀ's (k_b's layout: rank rows of nope)
  AffineMatrix uk_, uv_;
  std::vector<float> f32_;  // the f32 copy: per head W_UK [nope][rank] then W_UV [v][rank]
};

}  // namespace ktx::ops::cpu
