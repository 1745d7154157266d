// Row tiles (row_tiles.h): the layouts written with plain loops, so that they are defined here once
// and plainly; the SIMD kernels are tested against these. Repacking runs once at load (the
// 27-layer V2-Lite file's ~10 GB adds ~7 s on two Emerald Rapids cores, most of it the kernel
// clearing the copy's fresh pages; the packing itself ~2 GB/s a core for Q4_K).
#include "quant/row_tiles.h"

#include <fmt/format.h>

#include <cstring>
#include <vector>

#include "ktx/error.h"
#include "ktx/quant.h"
#include "quant/blocks.h"

namespace ktx::quant {
namespace {

constexpr int kRows = static_cast<int>(kTileRows);

// A unit's chunks (row_tiles.h) hold 4-bit codes: chunk c, byte 4r + k takes row r's elements
// 8c + k (low nibble) and 8c + 4 + k (high nibble). Packing moves 8 codes at a time:

// Bytes 0..3 of the 8 at p with bytes 4..7 as their high nibbles, from the low (half = 0) or high
// (half = 1) nibbles of each: the two chunk words of 8 codes that 8 consecutive code bytes hold.
// Both layouts keep 8 bytes' low nibbles in one chunk word and their high nibbles in another, so
// packing moves a 64-bit word at a time (a loop over single nibbles ran at ~1.3 GB/s, most of
// the load time of option repack after the kernel's page clearing).
uint32_t chunk_word(const uint8_t* p, int half) {
  uint64_t w;
  std::memcpy(&w, p, 8);
  const auto lo = static_cast<uint32_t>(w), hi = static_cast<uint32_t>(w >> 32);
  return half == 0 ? (lo & 0x0F0F0F0Fu) | ((hi & 0x0F0F0F0Fu) << 4)
                   : ((lo >> 4) & 0x0F0F0F0Fu) | (hi & 0xF0F0F0F0u);
}
void store4(uint8_t* p, uint32_t v) { std::memcpy(p, &v, 4); }

// Row r's `count` codes out of a unit's chunks.
void chunks_to_codes(const uint8_t* chunks, int count, int r, uint8_t* codes) {
  for (int c = 0; c < count / 8; ++c) {
    for (int k = 0; k < 4; ++k) {
      const uint8_t byte = chunks[64 * c + 4 * r + k];
      codes[8 * c + k] = byte & 0xF;
      codes[8 * c + 4 + k] = byte >> 4;
    }
  }
}

// The file's 12 scale bytes of a Q4_K super-block as 8 scales and 8 mins (k4_scale_min), and back.
// Both sides hold 96 bits, each used once, so the two forms map one to one.
void k4_decode(const uint8_t* s, int* scale, int* min) {
#pragma GCC unroll 4
  for (int j = 0; j < 4; ++j) {
    scale[j] = s[j] & 63;
    min[j] = s[j + 4] & 63;
    scale[j + 4] = (s[j + 8] & 0xF) | ((s[j] >> 6) << 4);
    min[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
  }
}
void k4_encode(const int* scale, const int* min, uint8_t* s) {
  for (int j = 0; j < 4; ++j) {
    s[j] = static_cast<uint8_t>((scale[j] & 63) | ((scale[j + 4] >> 4) << 6));
    s[j + 4] = static_cast<uint8_t>((min[j] & 63) | ((min[j + 4] >> 4) << 6));
    s[j + 8] = static_cast<uint8_t>((scale[j + 4] & 0xF) | ((min[j + 4] & 0xF) << 4));
  }
}

// A field of `width` bits at bit `at` of a 32-bit word.
struct Field {
  int word, at, width;
};
uint32_t get_field(const uint32_t* w, Field f) {
  return (w[f.word] >> f.at) & ((1u << f.width) - 1);
}
void set_field(uint32_t* w, Field f, uint32_t v) {
  const uint32_t mask = ((1u << f.width) - 1) << f.at;
  w[f.word] = (w[f.word] & ~mask) | ((v << f.at) & mask);
}

// The tile's three words A, B, C of a row's scales and mins (row_tiles.h): each min pair and
// scale comes out of one or two shifts and masks per lane.
constexpr Field kMin[8] = {{0, 0, 6}, {0, 16, 6}, {0, 6, 6}, {0, 22, 6},
                           {1, 0, 6}, {1, 16, 6}, {1, 6, 6}, {1, 22, 6}};
constexpr Field kScale[5] = {{2, 0, 6}, {2, 6, 6}, {2, 12, 6}, {2, 18, 6}, {2, 24, 6}};
// Scales 5..7: low 4 bits, then high 2 bits.
constexpr Field kScaleLow[3] = {{0, 12, 4}, {0, 28, 4}, {1, 28, 4}};
constexpr Field kScaleHigh[3] = {{2, 30, 2}, {1, 12, 2}, {1, 14, 2}};

// Unrolled, so that every field's place is a constant.
void tile_scales_encode(const int* scale, const int* min, uint32_t* w) {
  w[0] = w[1] = w[2] = 0;
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) set_field(w, kMin[j], static_cast<uint32_t>(min[j]));
#pragma GCC unroll 5
  for (int j = 0; j < 5; ++j) set_field(w, kScale[j], static_cast<uint32_t>(scale[j]));
#pragma GCC unroll 3
  for (int j = 0; j < 3; ++j) {
    set_field(w, kScaleLow[j], static_cast<uint32_t>(scale[5 + j]) & 15);
    set_field(w, kScaleHigh[j], static_cast<uint32_t>(scale[5 + j]) >> 4);
  }
}
void tile_scales_decode(const uint32_t* w, int* scale, int* min) {
  for (int j = 0; j < 8; ++j) min[j] = static_cast<int>(get_field(w, kMin[j]));
  for (int j = 0; j < 5; ++j) scale[j] = static_cast<int>(get_field(w, kScale[j]));
  for (int j = 0; j < 3; ++j) {
    scale[5 + j] =
        static_cast<int>(get_field(w, kScaleLow[j]) | (get_field(w, kScaleHigh[j]) << 4));
  }
}

// One unit (block u of 16 rows) in each direction. `to_tile` copies file -> tile, else back.
// Q4_K's codes: element e of a super-block in qs[32 · (e / 64) + e % 32], the high nibble for
// e % 64 ≥ 32.
void q4_K_unit(BlockQ4_K* const* rows, uint8_t* unit, bool to_tile) {
  uint8_t codes[kQK_K];
  for (int r = 0; r < kRows; ++r) {
    BlockQ4_K& b = *rows[r];
    uint8_t* d = unit + 2 * r;
    uint8_t* dmin = unit + 32 + 2 * r;
    uint8_t* words[3] = {unit + 64 + 4 * r, unit + 128 + 4 * r, unit + 192 + 4 * r};
    uint8_t* chunks = unit + 256;
    int scale[8], min[8];
    uint32_t w[3];
    if (to_tile) {
      std::memcpy(d, &b.d, 2);
      std::memcpy(dmin, &b.dmin, 2);
      k4_decode(b.scales, scale, min);
      tile_scales_encode(scale, min, w);
      for (int k = 0; k < 3; ++k) std::memcpy(words[k], &w[k], 4);
#pragma GCC unroll 16
      for (int j = 0; j < kQK_K / 16; ++j) {
#pragma GCC unroll 2
        for (int half = 0; half < 2; ++half) {
          // Chunk c holds elements 8c..8c+7: for this c, the `half` nibbles of qs bytes
          // 8j..8j+7 (element e's byte is 32·(e/64) + e%32, its nibble (e%64)/32).
          const int c = 8 * (j / 4) + 4 * half + j % 4;
          store4(chunks + 64 * c + 4 * r, chunk_word(b.qs + 8 * j, half));
        }
      }
    } else {
      std::memcpy(&b.d, d, 2);
      std::memcpy(&b.dmin, dmin, 2);
      for (int k = 0; k < 3; ++k) std::memcpy(&w[k], words[k], 4);
      tile_scales_decode(w, scale, min);
      k4_encode(scale, min, b.scales);
      chunks_to_codes(chunks, kQK_K, r, codes);
      for (int i = 0; i < kQK_K / 2; ++i) {  // byte i: elements 64·(i/32) + i%32 and that + 32
        const int e = 64 * (i / 32) + i % 32;
        b.qs[i] = static_cast<uint8_t>(codes[e] | (codes[e + 32] << 4));
      }
    }
  }
}

// Q6_K: element e's low 4 bits in ql[64 · (e / 128) + e % 64] (the high nibble for e % 128 ≥ 64),
// its high 2 bits at bits 2 · ((e % 128) / 32) of qh[32 · (e / 128) + e % 32]. Element by element:
// packing runs once, at load.
void q6_K_unit(BlockQ6_K* const* rows, uint8_t* unit, bool to_tile) {
  uint8_t* scales = unit + 32;
  uint8_t* groups = unit + 288;  // per sub-block j: chunks 2j and 2j + 1, then its high bits
  const auto ql_at = [](int e) { return 64 * (e / 128) + e % 64; };
  const auto ql_shift = [](int e) { return 4 * ((e % 128) / 64); };
  const auto qh_at = [](int e) { return 32 * (e / 128) + e % 32; };
  const auto qh_shift = [](int e) { return 2 * ((e % 128) / 32); };
  // Where the tile keeps element e of row r: its nibble (byte, shift), its two high bits.
  const auto nibble_at = [](int r, int e) {
    return 192 * (e / 16) + 64 * ((e % 16) / 8) + 4 * r + e % 4;
  };
  const auto nibble_shift = [](int e) { return 4 * ((e % 8) / 4); };
  const auto bits_at = [](int r, int e) { return 192 * (e / 16) + 128 + 4 * r + e % 4; };
  const auto bits_shift = [](int e) { return 2 * ((e % 16) / 4); };
  if (to_tile) std::memset(groups, 0, 3072);
  for (int r = 0; r < kRows; ++r) {
    BlockQ6_K& b = *rows[r];
    if (to_tile) {
      std::memcpy(unit + 2 * r, &b.d, 2);
      for (int j = 0; j < kQK_K / 16; ++j) scales[16 * j + r] = static_cast<uint8_t>(b.scales[j]);
      for (int e = 0; e < kQK_K; ++e) {
        const int lo = (b.ql[ql_at(e)] >> ql_shift(e)) & 0xF;
        const int hi = (b.qh[qh_at(e)] >> qh_shift(e)) & 3;
        groups[nibble_at(r, e)] =
            static_cast<uint8_t>(groups[nibble_at(r, e)] | lo << nibble_shift(e));
        groups[bits_at(r, e)] = static_cast<uint8_t>(groups[bits_at(r, e)] | hi << bits_shift(e));
      }
    } else {
      std::memcpy(&b.d, unit + 2 * r, 2);
      for (int j = 0; j < kQK_K / 16; ++j) b.scales[j] = static_cast<int8_t>(scales[16 * j + r]);
      std::memset(b.ql, 0, sizeof b.ql);
      std::memset(b.qh, 0, sizeof b.qh);
      for (int e = 0; e < kQK_K; ++e) {
        const int lo = (groups[nibble_at(r, e)] >> nibble_shift(e)) & 0xF;
        const int hi = (groups[bits_at(r, e)] >> bits_shift(e)) & 3;
        b.ql[ql_at(e)] = static_cast<uint8_t>(b.ql[ql_at(e)] | lo << ql_shift(e));
        b.qh[qh_at(e)] = static_cast<uint8_t>(b.qh[qh_at(e)] | hi << qh_shift(e));
      }
    }
  }
}

// Q5_0: element j's low 4 bits in qs[j % 16] (the high nibble for j ≥ 16), its fifth bit is bit j
// of qh; in the tile, the fifth bit of (row r, element j) is bit 4r + j % 4 of mask
// 2 · (j / 8) + (j % 8) / 4.
void q5_0_unit(BlockQ5_0* const* rows, uint8_t* unit, bool to_tile) {
  uint8_t* masks = unit + 32;
  uint8_t* chunks = unit + 96;
  uint8_t codes[kQK5_0];
  auto mask_bit = [](int r, int j) { return 64 * (2 * (j / 8) + (j % 8) / 4) + 4 * r + j % 4; };
  // Mask k holds the fifth bits of elements 4k..4k+3, row r's at bits 4r..4r+3: built over the
  // rows here, stored once.
  uint64_t mask[8] = {};
  for (int r = 0; r < kRows; ++r) {
    BlockQ5_0& b = *rows[r];
    uint8_t* d = unit + 2 * r;
    if (to_tile) {
      std::memcpy(d, &b.d, 2);
      uint32_t qh;
      std::memcpy(&qh, b.qh, 4);
#pragma GCC unroll 4
      for (int c = 0; c < kQK5_0 / 8; ++c) {
        const int e = 8 * c;
        // Elements e..e+7: the (e / 16) nibbles of qs bytes e%16 .. e%16 + 7.
        store4(chunks + 64 * c + 4 * r, chunk_word(b.qs + e % 16, e / 16));
      }
      // Unrolled, so that the masks stay in registers.
#pragma GCC unroll 8
      for (int k = 0; k < 8; ++k)
        mask[k] |= static_cast<uint64_t>((qh >> (4 * k)) & 0xF) << (4 * r);
    } else {
      std::memcpy(&b.d, d, 2);
      chunks_to_codes(chunks, kQK5_0, r, codes);
      for (int i = 0; i < kQK5_0 / 2; ++i)
        b.qs[i] = static_cast<uint8_t>(codes[i] | (codes[i + 16] << 4));
      std::memset(b.qh, 0, sizeof b.qh);
      for (int j = 0; j < kQK5_0; ++j) {
        const int bit = mask_bit(r, j);
        if ((masks[bit / 8] >> (bit % 8)) & 1)
          b.qh[j / 8] = static_cast<uint8_t>(b.qh[j / 8] | (1 << (j % 8)));
      }
    }
  }
  if (to_tile) std::memcpy(masks, mask, sizeof mask);
}

void q8_0_unit(BlockQ8_0* const* rows, uint8_t* unit, bool to_tile) {
  for (int r = 0; r < kRows; ++r) {
    BlockQ8_0& b = *rows[r];
    uint8_t* d = unit + 2 * r;
    for (int c = 0; c < kQK8_0 / 4; ++c) {
      uint8_t* q = unit + 32 + 64 * c + 4 * r;
      if (to_tile) {
        std::memcpy(q, b.qs + 4 * c, 4);
      } else {
        std::memcpy(b.qs + 4 * c, q, 4);
      }
    }
    if (to_tile) {
      std::memcpy(d, &b.d, 2);
    } else {
      std::memcpy(&b.d, d, 2);
    }
  }
}

// How far ahead in each of the 16 rows packing fetches: a unit reads a block from every row, 16
// streams of small steps that the hardware prefetchers leave mostly to demand misses (Q5_0
// packed at ~1.5 GB/s a core waiting on those loads; ~2 with this).
constexpr size_t kPackAhead = 512;

template <typename Block, typename UnitFn>
void convert(int64_t n, int64_t block_elements, uint8_t* rows, size_t stride, uint8_t* tile,
             bool to_tile, UnitFn unit_fn) {
  const int64_t units = n / block_elements;
  for (int64_t u = 0; u < units; ++u) {
    Block* blocks[kRows];
    for (int r = 0; r < kRows; ++r) {
      blocks[r] = reinterpret_cast<Block*>(rows + static_cast<size_t>(r) * stride) + u;
      // A hint only: past a row's end it fetches a line no one reads (the address is computed
      // as an integer, never as a pointer past the array).
      __builtin_prefetch(
          reinterpret_cast<const void*>(reinterpret_cast<uintptr_t>(blocks[r]) + kPackAhead));
    }
    unit_fn(blocks, tile + static_cast<size_t>(u) * kRows * sizeof(Block), to_tile);
  }
}

void convert(TensorType t, int64_t n, uint8_t* rows, size_t stride, uint8_t* tile, bool to_tile) {
  switch (t) {
    case TensorType::Q4_K:
      convert<BlockQ4_K>(n, kQK_K, rows, stride, tile, to_tile, q4_K_unit);
      return;
    case TensorType::Q6_K:
      convert<BlockQ6_K>(n, kQK_K, rows, stride, tile, to_tile, q6_K_unit);
      return;
    case TensorType::Q5_0:
      convert<BlockQ5_0>(n, kQK5_0, rows, stride, tile, to_tile, q5_0_unit);
      return;
    case TensorType::Q8_0:
      convert<BlockQ8_0>(n, kQK8_0, rows, stride, tile, to_tile, q8_0_unit);
      return;

    default:
      throw Error(ErrorCode::kInvalidArgument,
                  fmt::format("{} has no row-tile layout", type_name(t)));
  }
}

}  // namespace

bool has_row_tiles(TensorType t) {
  return t == TensorType::Q4_K || t == TensorType::Q6_K || t == TensorType::Q5_0 ||
         t == TensorType::Q8_0;
}

void pack_row_tile(TensorType t, int64_t n, const void* rows, size_t stride, void* tile) {
  // The unit functions take writable rows so that one body serves both directions; packing only
  // reads them.
  convert(t, n, const_cast<uint8_t*>(static_cast<const uint8_t*>(rows)), stride,
          static_cast<uint8_t*>(tile), true);
}

void pack_row_tiles(TensorType t, int64_t n, int64_t rows, const void* src, void* dst) {
  const size_t tile_bytes = row_size(t, n) * kRows;
  for (int64_t i = 0; i < rows / kTileRows; ++i) {
    const size_t off = static_cast<size_t>(i) * tile_bytes;
    pack_row_tile(t, n, static_cast<const uint8_t*>(src) + off, row_size(t, n),
                  static_cast<uint8_t*>(dst) + off);
  }
}

void unpack_row_tile(TensorType t, int64_t n, const void* tile, void* rows, size_t stride) {
  convert(t, n, static_cast<uint8_t*>(rows), stride,
          const_cast<uint8_t*>(static_cast<const uint8_t*>(tile)), false);
}

void vec_dot_row_tile_ref(TensorType t, int64_t n, const void* tile, const void* y, float* out) {
  const size_t row_bytes = row_size(t, n);
  std::vector<uint8_t> rows(row_bytes * kRows);
  unpack_row_tile(t, n, tile, rows.data(), row_bytes);
  for (int r = 0; r < kRows; ++r) out[r] = vec_dot(t, n, rows.data() + r * row_bytes, y);
}

}  // namespace ktx::quant
