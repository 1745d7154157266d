// MLA's per-head matrices W_UK (nope × rank) and W_UV (v × rank), as cpu.mla_attention reads
// them: q_lat = W_UKᵀ q_nope and o = W_UV o_lat for every head and every decoded token, and
// f32 copies of one head at a time for the naive form's decompression.
//
// They come from attn_kv_b ([rank, n_head·(nope+v)]: per head nope rows of W_UK, then v rows of
// W_UV) or from attn_k_b ([nope, rank, n_head]: per head W_UK transposed, rank rows of nope) and
// attn_v_b ([rank, v, n_head]) as newer llama.cpp files split them. When the type has an affine
// form (ktx/quant.h: small integer codes times a scale per 16, plus an offset) the matrices are
// kept that way, in the file's own row layout: 1.25-1.5 bytes an element against f32's 4, and
// decode reads all of them every token (V2-Lite: 3 MB a layer instead of 8; V3: 24 MB instead of
// 64). The values are the file's, bit for bit; the kernels (kernels/cpu/attention.h) decode them
// in registers. Float types (F32, F16, BF16) and types without an affine form keep an f32 copy.
#pragma once

#include <cstdint>
#include <vector>

#include "kernels/cpu/attention.h"
#include "ktx/gguf.h"

namespace ktx::ops::cpu {

// Rows of one width in the affine form (quant::affine_row), all heads' rows one after another.
struct AffineMatrix {
  int64_t width = 0;
  std::vector<int8_t> code;
  std::vector<float> scale, offset;  // one per 16 elements; offset empty when the type has none

  void resize(int64_t rows, int64_t width, bool with_offset);
  // Row r from `src` (one row of `type`, `width` elements).
  void set_row(int64_t r, TensorType type, const uint8_t* src);
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
