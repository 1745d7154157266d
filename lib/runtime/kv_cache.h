// Per-session attention caches, one per layer. MLA caches only the compressed latent c_kv
// (kv_lora_rank values) and the shared rotary key k_pe (qk_rope_head_dim) per token — never
// decompressed keys and values; GQA caches K and V per key/value head. Stored as f32, in the
// memory of the device that runs the layer's attention: host memory for CPU operators, a
// backend's buffer for an accelerator's.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace ktx::runtime {

// n floats in one device's memory: host memory (assign), or a buffer a backend allocated
// (adopt), freed through the function given. Only an operator of that device may touch the
// values of an adopted buffer.
class FloatArray {
 public:
  void assign(size_t n, float value) {
    device_.reset();
    host_.assign(n, value);
    data_ = host_.data();
    size_ = n;
  }
  void adopt(float* data, size_t n, std::function<void(float*)> release) {
    host_.clear();
    device_ = std::unique_ptr<float, std::function<void(float*)>>(data, std::move(release));
    data_ = data;
    size_ = n;
  }
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::vector<float> host_;
  std::unique_ptr<float, std::function<void(float*)>> device_;
  float* data_ = nullptr;  // host_.data() or device_.get(); a moved vector keeps its buffer
  size_t size_ = 0;
};

struct LayerKvCache {
  // MLA: a = c_kv [n_ctx][kv_lora_rank], b = k_pe [n_ctx][qk_rope_head_dim].
  // GQA: a = K [n_ctx][n_head_kv * head_dim], b = V [n_ctx][n_head_kv * head_dim].
  int64_t width_a = 0;
  int64_t width_b = 0;
  FloatArray a;
  FloatArray b;

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
