// Matrix products for batches of tokens (prefill): a tile of weight rows × tokens per step, so
// each weight block is unpacked once and then multiplied with many tokens while it sits in
// registers. The GEMV kernels of vec_dot.h unpack every block again for every token; for a
// batch that unpacking, not the int8 multiply-adds, was the cost.
//
// A product has two steps:
//   pack    the tokens' activation rows, quantized once as quantize_row_fn wrote them (Q8_K or
//           Q8_0), are rearranged into panels of kGemmTokens tokens, laid out for the tier's
//           kernels (AVX-512 VNNI: bytes stored as y + 128, vpdpbusd's unsigned operand, in the
//           order in which the kernel unpacks the weights, with the per-token scales in vector
//           lanes; AVX2: the blocks' bytes and scales as they are, token by token). Cheap (a
//           copy); done once per batch and reused by every weight matrix that shares them.
//   gemm    out[t * ldo + r] = (weight row r) · (token t) for a range of rows and whole panels.
//
// What the results promise: for the K-quants (Q4_K, Q5_K, Q6_K, IQ4_XS) each output is the
// reference's dot product (lib/quant) bit for bit; for the 32-element block quants (Q4_0, Q5_0,
// Q8_0, IQ4_NL × Q8_0; Q4_1, Q5_1 × Q8_1) and the float types (F32, F16, BF16) it is bit for bit
// the same tier's one-row kernel's (vec_dot_fn on that tier; for BF16 the AVX512_BF16 one where
// the CPU has it), which differs from the reference only by float summation order
// (kernels/cpu/README.md).
// So a batch and the same tokens one at a time give the same numbers. Tests:
// tests/unit/test_cpu_gemm.cpp.
//
// Float panels (F32, F16, BF16 activations: the dot types of the float weights) are plain copies
// of kGemmTokens rows of n elements, one after another, padded with zeros.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/cpu_features.h"
#include "ktx/tensor_type.h"

namespace ktx::kernels::cpu {

// Tokens per panel. A call handles whole panels; tokens past the real count in the last panel are
// packed as zeros and their outputs are not written.
inline constexpr int64_t kGemmTokens = 8;

// Panel sizes (the layouts are described in the kernel files, which static_assert these):
// a Q8_K panel has kGemmPanelQ8KBytes per 256-element super-block, a Q8_0 (Q8_1) panel
// kGemmPanelQ8_0Bytes (kGemmPanelQ8_1Bytes) per group of 16 blocks (512 elements; a short last
// group is padded).
inline constexpr size_t kGemmPanelQ8KBytes = 2368;
inline constexpr size_t kGemmPanelQ8_0Bytes = 4608;
inline constexpr size_t kGemmPanelQ8_1Bytes = 5120;  // Q8_0's, plus each block's s

// Packs `count` (1..kGemmTokens) activation rows y[0..count) of `n` elements each, stored as the
// dot type (Q8_K for the K-quants, Q8_0 for the block quants), into one panel of
// gemm_panel_bytes(dot type, n) bytes. Every byte of the panel is written.
using GemmPackFn = void (*)(int64_t n, const void* const* y, int64_t count, void* panel);

// out[t * ldo + r] = row r · token t for r in [0, rows), t in [0, tokens): `rows` weight rows of
// `n` elements `x_stride` bytes apart; `panels` holds ceil(tokens / kGemmTokens) panels, one after
// another, packed for `n`. Writes nothing else of `out`. No argument checks.
using GemmFn = void (*)(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels,
                        int64_t tokens, float* out, size_t ldo);

// The selected tier's GEMM kernel for a weight type, or null when there is none (types without
// one, the scalar tier, or KTX_GEMM=0 in the environment, which
// turns the GEMM kernels off to compare against the GEMV path in one build): then use vec_dot_fn
// per row and token. gemm_pack_fn gives the same tier's packer: each tier lays its panels out its
// own way (in the sizes below), so a kernel reads only its own tier's panels.
GemmFn gemm_fn(TensorType weight_type);

// The packer for the activation type a GEMM reads (quant::vec_dot_type of its weight type), or
// null where gemm_fn is null for every weight type using it.
GemmPackFn gemm_pack_fn(TensorType dot_type);

// Bytes of one panel of kGemmTokens rows of `n` elements of `dot_type` (a multiple of 64; 0 for
// types without panels). `n` must be a multiple of the type's block size.
size_t gemm_panel_bytes(TensorType dot_type, int64_t n);

// A tier's own kernel, with no KTX_CPU_ISA cap (for tests and benchmarks): null when the tier has
// none for the type, or this build or CPU cannot run it.
GemmFn isa_gemm(Isa isa, TensorType weight_type);
GemmPackFn isa_gemm_pack(Isa isa, TensorType dot_type);

// GEMMs over row tiles (quant/row_tiles.h: 16 rows interleaved, the `repack` option's copy):
// one row per vector lane, so no step brings a row's lanes together (gemm_tiles_avx512.cpp).
//   out[t * ldo + 16 * i + r] = row r of tile i · token t
// for i in [0, n_tiles), t in [0, tokens): each the reference dot (quant::vec_dot) bit for bit,
// the same number as the tile GEMV (vec_dot.h's VecDotTilesFn) gives, for every type. `panels`
// holds ceil(tokens / kGemmTokens) panels packed for `n` by the same type's tile packer. Writes
// nothing else of `out`. No argument checks.
using GemmTilesFn = void (*)(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* panels, int64_t tokens, float* out, size_t ldo);

// The tile GEMM of the selected tier for a weight type (AVX-512 VNNI: Q4_K, Q5_0, Q8_0), or null
// (then a batch over repacked rows reads the file's rows through gemm_fn). KTX_GEMM=0 turns it
// off too.
GemmTilesFn gemm_tiles_fn(TensorType weight_type);
// Its panel packer: the panels are laid out per weight type (each holds what that kernel needs
// per token beside the quants), from activation rows of quant::vec_dot_type(weight_type).
GemmPackFn gemm_tiles_pack_fn(TensorType weight_type);
// Bytes of one of its panels for rows of `n` elements (a multiple of 64; 0 without a kernel).
size_t gemm_tiles_panel_bytes(TensorType weight_type, int64_t n);
// Per super-block (Q4_K) or block (Q5_0, Q8_0) of the tile panels' layouts.
inline constexpr size_t kGemmTilesPanelQ8KBytes = 2240;
inline constexpr size_t kGemmTilesPanelQ8_0Bytes = 320;

GemmTilesFn isa_gemm_tiles(Isa isa, TensorType weight_type);
GemmPackFn isa_gemm_tiles_pack(Isa isa, TensorType weight_type);

}  // namespace ktx::kernels::cpu
