// A quantized weight matrix for the kernel benchmarks (bench_vec_dot, bench_gemv): 64 distinct
// rows quantized from normals, repeated — the speed does not depend on the values, and quantizing
// millions of elements with the K-quant references would take minutes.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"

namespace ktx::bench {

inline std::vector<uint8_t> make_matrix(TensorType t, int64_t rows, int64_t cols,
                                        std::mt19937_64& g) {
  constexpr int64_t kDistinct = 64;
  const size_t row_bytes = ktx::row_size(t, cols);
  std::normal_distribution<float> normal;
  std::vector<float> x(static_cast<size_t>(cols));
  std::vector<uint8_t> w(row_bytes * static_cast<size_t>(rows));
  for (int64_t r = 0; r < std::min(rows, kDistinct); ++r) {
    for (float& v : x) v = normal(g);
    ktx::quant::quantize_row(t, x.data(), w.data() + static_cast<size_t>(r) * row_bytes, cols);
  }
  for (int64_t r = kDistinct; r < rows; ++r) {
    std::memcpy(w.data() + static_cast<size_t>(r) * row_bytes,
                w.data() + static_cast<size_t>(r % kDistinct) * row_bytes, row_bytes);
  }
  return w;
}

}  // namespace ktx::bench
