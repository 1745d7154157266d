// Per-session attention caches, one per layer. MLA caches only the compressed latent c_kv
// (kv_lora_rank values) and the shared rotary key k_pe (qk_rope_head_dim) per token — never
// decompressed keys and values; GQA caches K and V per key/value head. Stored as f32.
#pragma once

#include <cstdint>
#include <vector>

namespace ktx::runtime {

struct LayerKvCache {
  // MLA: a = c_kv [n_ctx][kv_lora_rank], b = k_pe [n_ctx][qk_rope_head_dim].
  // GQA: a = K [n_ctx][n_head_kv * head_dim], b = V [n_ctx][n_head_kv * head_dim].
  int64_t width_a = 0;
  int64_t width_b = 0;
  std::vector<float> a;
  std::vector<float> b;

  float* a_row(int64_t pos) { return a.data() + pos * width_a; }
  float* b_row(int64_t pos) { return b.data() + pos * width_b; }
  const float* a_row(int64_t pos) const { return a.data() + pos * width_a; }
  const float* b_row(int64_t pos) const { return b.data() + pos * width_b; }
};

struct KvCache {
  int64_t n_ctx = 0;
  std::vector<LayerKvCache> layers;

  // Bytes of cache one token takes across all layers.
  uint64_t bytes_per_token() const {
    uint64_t n = 0;
    for (const LayerKvCache& l : layers) n += static_cast<uint64_t>(l.width_a + l.width_b);
    return n * sizeof(float);
  }
};

}  // namespace ktx::runtime
