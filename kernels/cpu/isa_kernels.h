// The per-ISA kernels behind vec_dot.h's dispatch table, one namespace per instruction set. Each
// function has quant::vec_dot's contract for its weight type (or quant::quantize_row's for an
// activation type) and may only be called on a CPU that has the ISA (cpu_features.h says which);
// dispatch.cpp picks them, tests/unit/test_cpu_kernels.cpp calls each one directly.
//
//   avx512  AVX-512 F/DQ/BW/VL + VNNI (Ice Lake, Sapphire Rapids, Zen 4 and later); files
//           *_avx512.cpp. avx512bf16::* additionally needs AVX512_BF16 (Cooper Lake, SPR, Zen 4).
//   avx2    AVX2 + FMA + F16C (Haswell, Zen 1 and later); files *_avx2.cpp.
//
// Legacy quants, floats and the activation quantizers live in legacy_*.cpp; the K-quants and
// IQ4_XS (× Q8_K) in k_quants_*.cpp.
#pragma once

#include <cstddef>
#include <cstdint>

#include "kernels/cpu/attention.h"
#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/tensor_type.h"

// Which tiers this build compiled (kernels/cpu/CMakeLists.txt defines these when the compiler
// takes the flags); 0 where it did not.
#ifndef KTX_CPU_KERNELS_AVX2
#define KTX_CPU_KERNELS_AVX2 0
#endif
#ifndef KTX_CPU_KERNELS_AVX512
#define KTX_CPU_KERNELS_AVX512 0
#endif
#ifndef KTX_CPU_KERNELS_AVX512BF16
#define KTX_CPU_KERNELS_AVX512BF16 0
#endif

// A tier's kernel where this build compiled the tier, else nullptr (its symbol then does not
// exist): the arguments of tier_kernel below.
#if KTX_CPU_KERNELS_AVX2
#define KTX_AVX2_KERNEL(fn) (fn)
#else
#define KTX_AVX2_KERNEL(fn) nullptr
#endif
#if KTX_CPU_KERNELS_AVX512
#define KTX_AVX512_KERNEL(fn) (fn)
#else
#define KTX_AVX512_KERNEL(fn) nullptr
#endif

namespace ktx::kernels::cpu {

// One kernel family's isa_*() lookup: the given tier's kernel, null when this CPU cannot run the
// tier or the build lacks it. Internal linkage, as pick_kernel (cpu_features.h).
template <typename Fn>
static Fn tier_kernel(Isa isa, Fn scalar, Fn avx2, Fn avx512) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return scalar;
    case Isa::kAvx2:
      return avx2;
    case Isa::kAvx512Vnni:
      return avx512;
  }
  return nullptr;
}

// Declares one ISA's functions; the list is the same for every ISA.
#define KTX_DECLARE_ISA_KERNELS                                       \
  /* legacy_*.cpp: weights × Q8_0 / Q8_1, floats × themselves */    \
  float vec_dot_q8_0_q8_0(int64_t n, const void* x, const void* y);   \
  float vec_dot_q4_0_q8_0(int64_t n, const void* x, const void* y);   \
  float vec_dot_q5_0_q8_0(int64_t n, const void* x, const void* y);   \
  float vec_dot_iq4_nl_q8_0(int64_t n, const void* x, const void* y); \
  float vec_dot_q4_1_q8_1(int64_t n, const void* x, const void* y);   \
  float vec_dot_q5_1_q8_1(int64_t n, const void* x, const void* y);   \
  float vec_dot_f32(int64_t n, const void* x, const void* y);         \
  float vec_dot_f16(int64_t n, const void* x, const void* y);         \
  float vec_dot_bf16(int64_t n, const void* x, const void* y);        \
  /* activation quantizers, byte-identical to the references */       \
  void quantize_row_q8_0(const float* x, void* y, int64_t n);         \
  void quantize_row_q8_1(const float* x, void* y, int64_t n);         \
  void quantize_row_q8_K(const float* x, void* y, int64_t n);         \
  void quantize_row_f16(const float* x, void* y, int64_t n);          \
  void quantize_row_bf16(const float* x, void* y, int64_t n);         \
  /* k_quants_*.cpp: K-quants and IQ4_XS × Q8_K */                   \
  float vec_dot_q2_K_q8_K(int64_t n, const void* x, const void* y);   \
  float vec_dot_q3_K_q8_K(int64_t n, const void* x, const void* y);   \
  float vec_dot_q4_K_q8_K(int64_t n, const void* x, const void* y);   \
  float vec_dot_q5_K_q8_K(int64_t n, const void* x, const void* y);   \
  float vec_dot_q6_K_q8_K(int64_t n, const void* x, const void* y);   \
  float vec_dot_iq4_xs_q8_K(int64_t n, const void* x, const void* y);

// Multi-row block dots (vec_dot.h's VecDotRowsFn), where they beat one call per row.
#define KTX_DECLARE_ROWS_KERNEL(name) \
  void name(int64_t n, const void* x, size_t stride, int64_t rows, const void* y, float* out);

// K-quants and IQ4_XS (k_quants_rows.inc): the reference's float steps then run once per
// super-block for a whole tile of rows, one row per vector lane. AVX-512 only: the AVX2 tier's
// one-row kernels were faster than its tiles (k_quants_avx2.cpp).
#define KTX_DECLARE_K_ROWS_KERNELS                \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_q2_K_q8_K_rows) \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_q3_K_q8_K_rows) \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_q4_K_q8_K_rows) \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_q5_K_q8_K_rows) \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_q6_K_q8_K_rows) \
  KTX_DECLARE_ROWS_KERNEL(vec_dot_iq4_xs_q8_K_rows)

namespace avx512 {
KTX_DECLARE_ISA_KERNELS
KTX_DECLARE_ROWS_KERNEL(vec_dot_q8_0_q8_0_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_q4_0_q8_0_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_q5_0_q8_0_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_iq4_nl_q8_0_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_q4_1_q8_1_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_q5_1_q8_1_rows)
KTX_DECLARE_K_ROWS_KERNELS
// Row tiles (quant/row_tiles.h, row_tiles_avx512.cpp): vec_dot.h's VecDotTilesFn.
void vec_dot_q4_K_q8_K_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out);
void vec_dot_q6_K_q8_K_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out);
void vec_dot_q5_0_q8_0_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out);
void vec_dot_q8_0_q8_0_tiles(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles,
                             const void* y, float* out);
}  // namespace avx512

// With 16 ymm registers, 4 rows pay only for the formats with an offset to share (Q8_0, IQ4_NL,
// Q4_1 and Q5_1 ran 10-25% slower than one row at a time on Zen 4).
namespace avx2 {
KTX_DECLARE_ISA_KERNELS
KTX_DECLARE_ROWS_KERNEL(vec_dot_q4_0_q8_0_rows)
KTX_DECLARE_ROWS_KERNEL(vec_dot_q5_0_q8_0_rows)
}  // namespace avx2

#undef KTX_DECLARE_ISA_KERNELS
#undef KTX_DECLARE_ROWS_KERNEL
#undef KTX_DECLARE_K_ROWS_KERNELS

// GEMM kernels for batches (gemm.h's GemmFn / GemmPackFn): gemm_kquants_*.cpp (× Q8_K panels),
// gemm_legacy_*.cpp (× Q8_0 / Q8_1 panels) and gemm_float_*.cpp (F32 / F16 / BF16 × panels of
// their own type). Each tier packs its panels its own way (same sizes): a tier's
// kernels read only its own packers' panels.
#define KTX_DECLARE_GEMM_KERNEL(name)                                                    \
  void name(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels, \
            int64_t tokens, float* out, size_t ldo);
namespace avx512 {
KTX_DECLARE_GEMM_KERNEL(gemm_q4_K)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_K)
KTX_DECLARE_GEMM_KERNEL(gemm_q6_K)
KTX_DECLARE_GEMM_KERNEL(gemm_iq4_xs)
KTX_DECLARE_GEMM_KERNEL(gemm_q4_0)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_0)
KTX_DECLARE_GEMM_KERNEL(gemm_q8_0)
KTX_DECLARE_GEMM_KERNEL(gemm_iq4_nl)
void gemm_pack_q8_K(int64_t n, const void* const* y, int64_t count, void* panel);
void gemm_pack_q8_0(int64_t n, const void* const* y, int64_t count, void* panel);
KTX_DECLARE_GEMM_KERNEL(gemm_q4_1)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_1)
void gemm_pack_q8_1(int64_t n, const void* const* y, int64_t count, void* panel);
KTX_DECLARE_GEMM_KERNEL(gemm_f32)
KTX_DECLARE_GEMM_KERNEL(gemm_f16)
KTX_DECLARE_GEMM_KERNEL(gemm_bf16)
// Over row tiles (gemm.h's GemmTilesFn), gemm_tiles_avx512.cpp.
#define KTX_DECLARE_GEMM_TILES_KERNEL(name)                                                        \
  void name(int64_t n, const void* tiles, size_t tile_stride, int64_t n_tiles, const void* panels, \
            int64_t tokens, float* out, size_t ldo);                                               \
  void name##_pack(int64_t n, const void* const* y, int64_t count, void* panel);
KTX_DECLARE_GEMM_TILES_KERNEL(gemm_tiles_q4_K)
KTX_DECLARE_GEMM_TILES_KERNEL(gemm_tiles_q5_0)
KTX_DECLARE_GEMM_TILES_KERNEL(gemm_tiles_q8_0)
#undef KTX_DECLARE_GEMM_TILES_KERNEL
}  // namespace avx512
namespace avx2 {
KTX_DECLARE_GEMM_KERNEL(gemm_q4_K)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_K)
KTX_DECLARE_GEMM_KERNEL(gemm_q6_K)
KTX_DECLARE_GEMM_KERNEL(gemm_iq4_xs)
KTX_DECLARE_GEMM_KERNEL(gemm_q4_0)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_0)
KTX_DECLARE_GEMM_KERNEL(gemm_q8_0)
KTX_DECLARE_GEMM_KERNEL(gemm_iq4_nl)
KTX_DECLARE_GEMM_KERNEL(gemm_q4_1)
KTX_DECLARE_GEMM_KERNEL(gemm_q5_1)
void gemm_pack_q8_K(int64_t n, const void* const* y, int64_t count, void* panel);
void gemm_pack_q8_0(int64_t n, const void* const* y, int64_t count, void* panel);
void gemm_pack_q8_1(int64_t n, const void* const* y, int64_t count, void* panel);
KTX_DECLARE_GEMM_KERNEL(gemm_f32)
KTX_DECLARE_GEMM_KERNEL(gemm_f16)
KTX_DECLARE_GEMM_KERNEL(gemm_bf16)
}  // namespace avx2

// Defines a tier's GEMM entry point `name` (declared above) as a call of `impl`, the tier file's
// kernel template for the type (e.g. gemm_legacy<Q8_0Format>).
#define KTX_DEFINE_GEMM_KERNEL(name, impl)                                               \
  void name(int64_t n, const void* x, size_t x_stride, int64_t rows, const void* panels, \
            int64_t tokens, float* out, size_t ldo) {                                    \
    impl(n, x, x_stride, rows, panels, tokens, out, ldo);                                \
  }

// BF16 × BF16 with vdpbf16ps (legacy_avx512_bf16.cpp), for CPUs with AVX512_BF16.
// BF16 GEMM tiles with it (gemm_float_avx512_bf16.cpp).
namespace avx512bf16 {
float vec_dot_bf16(int64_t n, const void* x, const void* y);
KTX_DECLARE_GEMM_KERNEL(gemm_bf16)
}  // namespace avx512bf16
#undef KTX_DECLARE_GEMM_KERNEL

// MLA attention's f32 products (attention.h), attention_avx512.cpp and attention_avx2.cpp.
#define KTX_DECLARE_ATTENTION_KERNELS                                                             \
  void mla_scores(int64_t heads, int64_t positions, const float* qa, size_t lda, const float* ka, \
                  size_t ldka, int64_t wa, const float* qb, size_t ldb, const float* kb,          \
                  size_t ldkb, int64_t wb, float scale, float* s, size_t lds);                    \
  void mla_weighted_sum(int64_t heads, int64_t positions, const float* w, size_t ldw,             \
                        const float* v, size_t ldv, int64_t width, float* o, size_t ldo,          \
                        bool accumulate);                                                         \
  void mla_affine_weighted_sum(int64_t rows, const float* w, const AffineRows& a, int64_t width,  \
                               float* o);                                                         \
  void mla_affine_scores(int64_t rows, const float* x, const AffineRows& a, int64_t width,        \
                         float* s);
namespace avx512 {
KTX_DECLARE_ATTENTION_KERNELS
}  // namespace avx512
namespace avx2 {
KTX_DECLARE_ATTENTION_KERNELS
}  // namespace avx2
#undef KTX_DECLARE_ATTENTION_KERNELS

// activation.h's kernels, activation_avx512.cpp and activation_avx2.cpp.
#define KTX_DECLARE_ACTIVATION_KERNELS                                      \
  double exp_shifted(float* x, int64_t n, float shift);                     \
  void silu_mul(const float* gate, const float* up, float* out, int64_t n); \
  float softmax_max(const float* x, int64_t n);
namespace avx512 {
KTX_DECLARE_ACTIVATION_KERNELS
}  // namespace avx512
namespace avx2 {
KTX_DECLARE_ACTIVATION_KERNELS
}  // namespace avx2
#undef KTX_DECLARE_ACTIVATION_KERNELS

// One tier's own kernel for a type, with no fallback (dispatch.cpp): null when the tier has none
// for that type, or this build or CPU cannot run the tier. Isa::kScalar gives the references.
// For tests and benchmarks that run every variant; the library uses vec_dot_fn().
VecDotFn isa_vec_dot(Isa isa, TensorType weight_type);
VecDotRowsFn isa_vec_dot_rows(Isa isa, TensorType weight_type);
VecDotTilesFn isa_vec_dot_tiles(Isa isa, TensorType weight_type);
QuantizeRowFn isa_quantize_row(Isa isa, TensorType activation_type);

// avx512bf16::vec_dot_bf16 when this build has it and the CPU has AVX512_BF16, else null.
// vec_dot_fn(BF16) prefers it to isa_vec_dot(kAvx512Vnni, BF16).
VecDotFn avx512bf16_vec_dot_bf16();

}  // namespace ktx::kernels::cpu
