// Fast CPU dot products and activation quantizers, chosen once per process from the CPU's
// features (AVX-512 with VNNI, AVX2+FMA, or the scalar references in lib/quant). Each SIMD
// variant computes what the reference computes — the integer part of every block exactly, then
// the same scaling — and is tested against it (tests/unit/test_cpu_kernels.cpp,
// test_cpu_kquant_kernels.cpp). The quantizers and K-quant dots match the references bit for bit;
// the other dots add their per-block terms in another order (kernels/cpu/README.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ktx/tensor_type.h"

namespace ktx::kernels::cpu {

// x: one row of `n` weights stored as the weight type; y: `n` activations stored as
// quant::vec_dot_type(weight type). Same contract as quant::vec_dot, no argument checks.
using VecDotFn = float (*)(int64_t n, const void* x, const void* y);

// `rows` weight rows `x_stride` bytes apart, each dotted with the same activation row y:
// out[r] = VecDotFn(n, x + r * x_stride, y), bit for bit the same as calling the VecDotFn that
// vec_dot_fn() returns for the type. Sharing the activation loads (and their block scales) among
// a tile of rows (4 or 8, per type and tier) makes a GEMV 15-40% faster than one call per row
// (AVX-512 on Zen 4, in cache and from memory).
using VecDotRowsFn = void (*)(int64_t n, const void* x, size_t x_stride, int64_t rows,
                              const void* y, float* out);

// `n_tiles` row tiles (quant/row_tiles.h: 16 rows interleaved) `tile_stride` bytes apart, each
// row dotted with y: out[16 · t + r] = the reference dot of row r of tile t, bit for bit.
using VecDotTilesFn = void (*)(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                               const void* y, float* out);

// Quantizes `n` floats into an activation type (Q8_0, Q8_1, Q8_K, F16, BF16, F32); byte-identical
// to quant::quantize_row.
using QuantizeRowFn = void (*)(const float* x, void* y, int64_t n);

// The fastest implementation for this CPU; the scalar reference when there is no faster one.
// Never null for a type quant::vec_dot supports.
VecDotFn vec_dot_fn(TensorType weight_type);
QuantizeRowFn quantize_row_fn(TensorType activation_type);

// The multi-row kernel matching vec_dot_fn(weight_type), or null where the chosen tier has none
// for the type (the float types, the K-quants, the scalar references): call vec_dot_fn per row.
VecDotRowsFn vec_dot_rows_fn(TensorType weight_type);

// The row-tile kernel of the chosen tier for a type with row tiles, or null (the tier has none:
// only AVX-512 does, for Q4_K, Q6_K, Q5_0 and Q8_0; Q6_K's on AMD CPUs only, where it was
// measured faster than the file's rows: dispatch.cpp). Operators repack a matrix only when this
// is not null; isa_vec_dot_tiles gives every kernel, for tests.
VecDotTilesFn vec_dot_tiles_fn(TensorType weight_type);

// Which instruction set the dispatch chose: "avx512vnni", "avx2", "scalar" (for benchmarks and
// `ktx bench`). KTX_CPU_ISA=scalar|avx2|avx512vnni in the environment caps the choice (tests
// and comparisons run every variant on one machine this way).
std::string_view active_isa();

}  // namespace ktx::kernels::cpu
