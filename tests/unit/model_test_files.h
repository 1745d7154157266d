// Tiny but complete `deepseek2` / `llama` GGUF files for tests: every key and tensor a real
// llama.cpp-converted file has, with small sizes and seeded random weights, so config, module
// tree, operator and executor tests all start from the same kind of file. A thin layer over the
// library's random models (lib/model/random_model.h), with the two habits tests rely on: specs are
// written unchecked (tests break files on purpose through the hooks) and a row that does not fit
// its type's block falls back to F32.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "gguf_test_helpers.h"  // TempDir
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "model/random_model.h"

namespace ktx::model::test {

using ktx::gguf::test::TempDir;

struct TinyModelSpec : RandomModelSpec {
  TinyModelSpec() : TinyModelSpec(random_model_preset("tiny-deepseek2")) {}

  // Presets shaped like the real models, scaled down.
  static TinyModelSpec lite() { return TinyModelSpec(random_model_preset("tiny-deepseek2")); }
  static TinyModelSpec v2() { return TinyModelSpec(random_model_preset("tiny-deepseek-v2")); }
  static TinyModelSpec v3() { return TinyModelSpec(random_model_preset("tiny-deepseek-v3")); }
  static TinyModelSpec llama() { return TinyModelSpec(random_model_preset("tiny-llama")); }

 private:
  explicit TinyModelSpec(RandomModelSpec base) : RandomModelSpec(std::move(base)) {
    check = false;
    row_fallback = RowFallback::kF32;
    head_dim = 16;  // llama: fixed, as these files always had it (n_embd / n_head at defaults)
  }
};

// A writer holding the whole file, for tests that want to add to it before writing.
inline gguf::Writer tiny_model_writer(const TinyModelSpec& spec) {
  return random_model_writer(spec);
}

// Writes the tiny model to `path`.
inline void write_tiny_model(const TinyModelSpec& spec, const std::string& path) {
  tiny_model_writer(spec).write(path);
}

// A tensor's values as f32, whatever its stored type (for reference computations).
inline std::vector<float> tensor_to_f32(const gguf::TensorInfo& t) {
  const int64_t row = t.shape.at(0);
  const int64_t rows = t.rows();
  std::vector<float> out(static_cast<size_t>(row * rows));
  const size_t row_bytes = row_size(t.type, row);
  for (int64_t r = 0; r < rows; ++r) {
    quant::dequantize_row(t.type, t.data + static_cast<size_t>(r) * row_bytes, out.data() + r * row,
                          row);
  }
  return out;
}

}  // namespace ktx::model::test
