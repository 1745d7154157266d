// Row tiles: 16 rows of a quantized matrix interleaved block by block, so that a decode kernel can
// hold one row per 32-bit vector lane (kernels/cpu/row_tiles_avx512.cpp). Each vpdpbusd then
// multiplies 4 codes of each of 16 rows by the same 4 activations (broadcast from memory), and a
// block's integer sum builds up in its row's lane with no horizontal reduction; the reference's
// float steps run once per block for the 16 rows together. The file layout needs the same
// per-block steps once per row, with shuffles to bring each row's partial sums together: on Zen 4
// those shuffles, not memory, bound the Q4_K and Q5_0 GEMVs (docs/PERF.md).
//
// A tile holds exactly the bytes of its 16 rows, rearranged: tile bytes = 16 · row bytes. A
// matrix is repacked only when the loader is asked to (an operator option), and only if its row
// count is a multiple of 16. Unit u of a tile holds block u of each of the 16 rows:
//
//   Q4_K (2304 bytes a unit: 16 super-blocks)
//     [0, 32)      d of rows 0..15 (f16)          [32, 64)  dmin of rows 0..15 (f16)
//     [64, 256)    row r's 8 six-bit scales s0..s7 and mins m0..m7 as three 32-bit words, A at
//                  64 + 4r, B at 128 + 4r, C at 192 + 4r (bit ranges [lo, hi)):
//                    A: m0 [0,6) m2 [6,12) s5 low 4 [12,16) m1 [16,22) m3 [22,28) s6 low 4 [28,32)
//                    B: m4 [0,6) m6 [6,12) s6 high 2 [12,14) s7 high 2 [14,16) m5 [16,22)
//                       m7 [22,28) s7 low 4 [28,32)
//                    C: s0 [0,6) s1 [6,12) s2 [12,18) s3 [18,24) s4 [24,30) s5 high 2 [30,32)
//                  the same 96 bits as the file's 12 bytes, placed so that every scale and every
//                  pair of mins (as the two 16-bit halves vpdpwssd takes) comes out of a lane with
//                  one or two shifts and masks
//     [256, 2304)  32 chunks of 64 bytes; chunk c, byte 4r + k: low nibble = row r's code of
//                  element 8c + k, high nibble = element 8c + 4 + k
//   Q6_K (3360 bytes a unit: 16 super-blocks)
//     [0, 32)      d of rows 0..15 (f16)
//     [32, 288)    byte 32 + 16j + r: row r's scale of sub-block j (int8), so that a sub-block's
//                  16 scales widen to one per lane
//     [288, 3360)  per sub-block j (16 elements), 192 bytes in the order the kernel reads them:
//                  two chunks of 64 bytes, chunk c = 2j, 2j + 1, byte 4r + k: the low 4 bits of
//                  row r's element 8c + k (low nibble) and of element 8c + 4 + k (high nibble);
//                  then 64 bytes, byte 4r + k, bits 2m..2m+1: the high 2 bits of row r's element
//                  16j + 4m + k (m = 0..3)
//   Q5_0 (352 bytes a unit: 16 blocks)
//     [0, 32)      d of rows 0..15 (f16)
//     [32, 96)     8 little-endian 64-bit masks: mask 2c bit 4r + k = fifth bit of row r's element
//                  8c + k, mask 2c + 1 the same for element 8c + 4 + k
//     [96, 352)    4 chunks of 64 bytes; chunk c, byte 4r + k: the low 4 bits of row r's element
//                  8c + k (low nibble) and of element 8c + 4 + k (high nibble)
//   Q8_0 (544 bytes a unit: 16 blocks)
//     [0, 32)      d of rows 0..15 (f16)
//     [32, 544)    8 chunks of 64 bytes; chunk c, bytes 4r..4r+3: row r's elements 4c..4c+3
//
// Repacking is exact and reversible: unpack_row_tile(pack_row_tile(rows)) gives the rows back
// byte for byte (tests/unit/test_row_tiles.cpp).
#pragma once

#include <cstddef>
#include <cstdint>

#include "ktx/tensor_type.h"

namespace ktx::quant {

inline constexpr int64_t kTileRows = 16;

// Whether `t` has a row-tile layout (Q4_K, Q6_K, Q5_0, Q8_0).
bool has_row_tiles(TensorType t);

// Packs 16 rows of `n` elements (row r at rows + r · stride, in the file's layout) into one tile
// of 16 · row bytes. `n` must be a multiple of the type's block size.
void pack_row_tile(TensorType t, int64_t n, const void* rows, size_t stride, void* tile);

// Packs `rows` (a multiple of 16) consecutive rows of `n` elements from `src` into rows / 16 tiles
// at `dst`, tile t at dst + t · 16 · row bytes: a whole matrix, or a run of one.
void pack_row_tiles(TensorType t, int64_t n, int64_t rows, const void* src, void* dst);

// The inverse: the 16 rows of a tile, row r written at rows + r · stride.
void unpack_row_tile(TensorType t, int64_t n, const void* tile, void* rows, size_t stride);

// out[r] = row r of the tile · y (y stored as vec_dot_type(t)) for r < 16, by the reference dot of
// each unpacked row: what the tile kernels must give bit for bit.
void vec_dot_row_tile_ref(TensorType t, int64_t n, const void* tile, const void* y, float* out);

}  // namespace ktx::quant
