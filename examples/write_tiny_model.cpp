// Writes a small llama-shaped GGUF model with random F32 weights using ktx's GGUF writer — an
// example of the C++ API, and the input of the README's first command (which quantizes it and
// inspects the result). Usage: write_tiny_model OUT.gguf [SEED]
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "ktx/error.h"
#include "ktx/gguf.h"

namespace {

// Shape: hidden 512, 2 layers, 8 heads (64 wide), 2 KV heads, FFN 1408 (like DeepSeek-V2-Lite's
// experts: not a multiple of 256, so K-quant presets must fall back for ffn_down), vocab 1024.
constexpr int64_t kHidden = 512, kLayers = 2, kHeads = 8, kKvHeads = 2, kHeadDim = 64;
constexpr int64_t kFfn = 1408, kVocab = 1024;

void add_f32(ktx::gguf::Writer& w, const std::string& name, std::vector<int64_t> shape,
             std::mt19937& rng, float scale) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> data(static_cast<size_t>(n));
  std::normal_distribution<float> dist(0.0f, scale);
  for (float& v : data) v = dist(rng);
  w.add_tensor(name, ktx::TensorType::F32, std::move(shape), data.data(),
               data.size() * sizeof(float));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || argc > 3) {
    std::fprintf(stderr, "usage: %s OUT.gguf [SEED]\n", argv[0]);
    return 2;
  }
  std::mt19937 rng(argc == 3 ? static_cast<unsigned>(std::strtoul(argv[2], nullptr, 10)) : 1234u);
  using ktx::gguf::Value;
  try {
    ktx::gguf::Writer w;
    w.set_metadata("general.architecture", Value::string("llama"));
    w.set_metadata("general.name", Value::string("ktx tiny random llama"));
    w.set_metadata("general.file_type", Value::uint32(0));  // all F32
    w.set_metadata("llama.context_length", Value::uint32(2048));
    w.set_metadata("llama.embedding_length", Value::uint32(kHidden));
    w.set_metadata("llama.block_count", Value::uint32(kLayers));
    w.set_metadata("llama.feed_forward_length", Value::uint32(kFfn));
    w.set_metadata("llama.attention.head_count", Value::uint32(kHeads));
    w.set_metadata("llama.attention.head_count_kv", Value::uint32(kKvHeads));
    w.set_metadata("llama.rope.dimension_count", Value::uint32(kHeadDim));
    w.set_metadata("llama.rope.freq_base", Value::float32(10000.0f));
    w.set_metadata("llama.attention.layer_norm_rms_epsilon", Value::float32(1e-5f));
    w.set_metadata("llama.vocab_size", Value::uint32(kVocab));

    const float s = 0.02f;
    add_f32(w, "token_embd.weight", {kHidden, kVocab}, rng, s);
    for (int64_t l = 0; l < kLayers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      add_f32(w, p + "attn_norm.weight", {kHidden}, rng, 1.0f);
      add_f32(w, p + "attn_q.weight", {kHidden, kHeads * kHeadDim}, rng, s);
      add_f32(w, p + "attn_k.weight", {kHidden, kKvHeads * kHeadDim}, rng, s);
      add_f32(w, p + "attn_v.weight", {kHidden, kKvHeads * kHeadDim}, rng, s);
      add_f32(w, p + "attn_output.weight", {kHeads * kHeadDim, kHidden}, rng, s);
      add_f32(w, p + "ffn_norm.weight", {kHidden}, rng, 1.0f);
      add_f32(w, p + "ffn_gate.weight", {kHidden, kFfn}, rng, s);
      add_f32(w, p + "ffn_up.weight", {kHidden, kFfn}, rng, s);
      add_f32(w, p + "ffn_down.weight", {kFfn, kHidden}, rng, s);
    }
    add_f32(w, "output_norm.weight", {kHidden}, rng, 1.0f);
    add_f32(w, "output.weight", {kHidden, kVocab}, rng, s);
    w.write(argv[1]);
    std::printf("wrote %s\n", argv[1]);
    return 0;
  } catch (const ktx::Error& e) {
    std::fprintf(stderr, "write_tiny_model: %s\n", e.what());
    return 1;
  }
}
