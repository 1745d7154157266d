// oneDNN matmuls for bench_gemm (gemm_onednn.cpp, built only when CMake finds oneDNN): the same
// shapes as ktx's kernels, with the weights reordered into oneDNN's own layout once, outside the
// timing, as a product would do at load.
#pragma once

#include <cstdint>
#include <string>

namespace ktx::bench {

enum class OnednnKind {
  kS8,    // u8 activations × s8 weights -> s32 (no block scales: an upper bound for int8)
  kBf16,  // bf16 × bf16 -> f32 (weights dequantized to bf16)
  kF32,   // f32 × f32 -> f32
  kF16,   // f16 × f16 -> f32 (needs AVX512_FP16 or AMX-FP16 in oneDNN 2.6: refused elsewhere)
};

// True when this build has oneDNN.
bool onednn_available();

// The fastest of `repeats` runs, in seconds per product of [tokens × cols] · [cols × rows] on
// `threads` OpenMP threads; each run repeats the product for about `seconds`. Negative when
// oneDNN is missing or refuses the shape (the message goes to stderr). `impl` receives the
// implementation oneDNN picked ("brg:avx512_core_vnni", …).
double onednn_seconds(OnednnKind kind, int64_t rows, int64_t cols, int64_t tokens, int threads,
                      int repeats, double seconds, std::string* impl);

}  // namespace ktx::bench
