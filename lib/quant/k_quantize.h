// Reference quantizers for the K-quants (Q2_K … Q6_K) and IQ4_XS: f32 rows to GGUF blocks with
// llama.cpp's search for scales and minimums, so a ktx-made Q4_K_M file holds the same bytes as
// one made by llama-quantize without an importance matrix.
#pragma once

#include <cstdint>

#include "quant/blocks.h"

namespace ktx::quant {

// Each quantizes `n` floats at `x` into n / 256 blocks at `y`. `n` must be a multiple of 256
// (kQK_K); the caller checks that. Outputs depend only on the inputs (no state, no threads), and
// follow llama.cpp's quantize_row_*_ref step for step, floating-point order included.
void quantize_row_q2_K_ref(const float* x, BlockQ2_K* y, int64_t n);
void quantize_row_q3_K_ref(const float* x, BlockQ3_K* y, int64_t n);
void quantize_row_q4_K_ref(const float* x, BlockQ4_K* y, int64_t n);
void quantize_row_q5_K_ref(const float* x, BlockQ5_K* y, int64_t n);
void quantize_row_q6_K_ref(const float* x, BlockQ6_K* y, int64_t n);

// IQ4_XS as llama.cpp's quantize_iq4_xs makes it without an importance matrix (weights x²,
// seven scale trials either side of the first guess).
void quantize_row_iq4_xs_ref(const float* x, BlockIQ4_XS* y, int64_t n);

}  // namespace ktx::quant
