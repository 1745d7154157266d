// gemm.h's dispatch: which GEMM kernel and panel packer a weight type gets on this CPU: the
// selected tier's (AVX-512 VNNI and AVX2: every quantized and float type). Where the tier has
// none (the scalar tier, other types) batches use the GEMV kernels of vec_dot.h. Kernel and packer
// always come from the same tier: the panel layouts differ. Compiled without -m flags.
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

namespace ktx::kernels::cpu {

using T = TensorType;

namespace {

// Float panels (F32, F16, BF16: gemm.h) are the rows as they are, one after another, the rows past
// `count` zero: a copy the same for every tier, so built here with no -m flags. The element size
// is the panel's size per row: gemm_panel_bytes of F32 or F16 for kGemmTokens rows.
template <size_t kElem>
void pack_float_rows(int64_t n, const void* const* y, int64_t count, void* panel) {
  auto* out = static_cast<uint8_t*>(panel);
  const size_t row = static_cast<size_t>(n) * kElem;
  const size_t panel_bytes = gemm_panel_bytes(kElem == 4 ? T::F32 : T::F16, n);
  for (int64_t i = 0; i < count; ++i) std::memcpy(out + static_cast<size_t>(i) * row, y[i], row);
  const size_t used = static_cast<size_t>(count) * row;
  std::memset(out + used, 0, panel_bytes - used);
}

GemmFn avx2_gemm(TensorType t) {
#if KTX_CPU_KERNELS_AVX2
  switch (t) {
    case T::Q4_K:
      return avx2::gemm_q4_K;
    case T::Q5_K:
      return avx2::gemm_q5_K;
    case T::Q6_K:
      return avx2::gemm_q6_K;
    case T::IQ4_XS:
      return avx2::gemm_iq4_xs;
    case T::Q4_0:
      return avx2::gemm_q4_0;
    case T::Q5_0:
      return avx2::gemm_q5_0;
    case T::Q8_0:
      return avx2::gemm_q8_0;
    case T::IQ4_NL:
      return avx2::gemm_iq4_nl;
    case T::Q4_1:
      return avx2::gemm_q4_1;
    case T::Q5_1:
      return avx2::gemm_q5_1;
    case T::F32:
      return avx2::gemm_f32;
    case T::F16:
      return avx2::gemm_f16;
    case T::BF16:
      return avx2::gemm_bf16;
    default:
      return nullptr;
  }
#else
  (void)t;
  return nullptr;
#endif
}

GemmPackFn avx2_gemm_pack(TensorType t) {
#if KTX_CPU_KERNELS_AVX2
  switch (t) {
    case T::Q8_K:
      return avx2::gemm_pack_q8_K;
    case T::Q8_0:
      return avx2::gemm_pack_q8_0;
    case T::Q8_1:
      return avx2::gemm_pack_q8_1;
    case T::F32:
      return pack_float_rows<4>;
    case T::F16:
    case T::BF16:
      return pack_float_rows<2>;
    default:
      return nullptr;
  }
#else
  (void)t;
  return nullptr;
#endif
}

GemmFn avx512_gemm(TensorType t) {
#if KTX_CPU_KERNELS_AVX512
  switch (t) {
    case T::Q4_K:
      return avx512::gemm_q4_K;
    case T::Q5_K:
      return avx512::gemm_q5_K;
    case T::Q6_K:
      return avx512::gemm_q6_K;
    case T::IQ4_XS:
      return avx512::gemm_iq4_xs;
    case T::Q4_0:
      return avx512::gemm_q4_0;
    case T::Q5_0:
      return avx512::gemm_q5_0;
    case T::Q8_0:
      return avx512::gemm_q8_0;
    case T::IQ4_NL:
      return avx512::gemm_iq4_nl;
    case T::Q4_1:
      return avx512::gemm_q4_1;
    case T::Q5_1:
      return avx512::gemm_q5_1;
    case T::F32:
      return avx512::gemm_f32;
    case T::F16:
      return avx512::gemm_f16;
    case T::BF16:
      // The kernel of the one-row dot this CPU uses for BF16 (dispatch.cpp): the same numbers.
#if KTX_CPU_KERNELS_AVX512BF16
      if (avx512bf16_vec_dot_bf16() != nullptr) return avx512bf16::gemm_bf16;
#endif
      return avx512::gemm_bf16;
    default:
      return nullptr;
  }
#else
  (void)t;
  return nullptr;
#endif
}

GemmPackFn avx512_gemm_pack(TensorType t) {
#if KTX_CPU_KERNELS_AVX512
  switch (t) {
    case T::Q8_K:
      return avx512::gemm_pack_q8_K;
    case T::Q8_0:
      return avx512::gemm_pack_q8_0;
    case T::Q8_1:
      return avx512::gemm_pack_q8_1;
    case T::F32:
      return pack_float_rows<4>;
    case T::F16:
    case T::BF16:
      return pack_float_rows<2>;
    default:
      return nullptr;
  }
#else
  (void)t;
  return nullptr;
#endif
}

// Read once: KTX_GEMM is not "0".
bool gemm_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("KTX_GEMM");
    return env == nullptr || std::strcmp(env, "0") != 0;
  }();
  return enabled;
}

}  // namespace

GemmFn isa_gemm(Isa isa, TensorType t) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kAvx512Vnni:
      return avx512_gemm(t);
    case Isa::kAvx2:
      return avx2_gemm(t);
    default:
      return nullptr;
  }
}

GemmPackFn isa_gemm_pack(Isa isa, TensorType t) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kAvx512Vnni:
      return avx512_gemm_pack(t);
    case Isa::kAvx2:
      return avx2_gemm_pack(t);
    default:
      return nullptr;
  }
}

GemmFn gemm_fn(TensorType weight_type) {
  return gemm_enabled() ? isa_gemm(selected_isa(), weight_type) : nullptr;
}

GemmPackFn gemm_pack_fn(TensorType dot_type) {
  return gemm_enabled() ? isa_gemm_pack(selected_isa(), dot_type) : nullptr;
}

namespace {

// A tier's tile GEMM for a weight type and its packer, which come together: AVX-512 VNNI only.
struct TileGemm {
  GemmTilesFn gemm = nullptr;
  GemmPackFn pack = nullptr;
};

TileGemm isa_tile_gemm(Isa isa, [[maybe_unused]] TensorType t) {
  if (!isa_available(isa) || isa != Isa::kAvx512Vnni) return {};
#if KTX_CPU_KERNELS_AVX512
  switch (t) {
    case T::Q4_K:
      return {avx512::gemm_tiles_q4_K, avx512::gemm_tiles_q4_K_pack};
    case T::Q5_0:
      return {avx512::gemm_tiles_q5_0, avx512::gemm_tiles_q5_0_pack};
    case T::Q8_0:
      return {avx512::gemm_tiles_q8_0, avx512::gemm_tiles_q8_0_pack};
    default:
      return {};
  }
#else
  return {};
#endif
}

}  // namespace

GemmTilesFn isa_gemm_tiles(Isa isa, TensorType t) { return isa_tile_gemm(isa, t).gemm; }

GemmPackFn isa_gemm_tiles_pack(Isa isa, TensorType t) { return isa_tile_gemm(isa, t).pack; }

GemmTilesFn gemm_tiles_fn(TensorType weight_type) {
  return gemm_enabled() ? isa_gemm_tiles(selected_isa(), weight_type) : nullptr;
}

GemmPackFn gemm_tiles_pack_fn(TensorType weight_type) {
  return gemm_enabled() ? isa_gemm_tiles_pack(selected_isa(), weight_type) : nullptr;
}

size_t gemm_tiles_panel_bytes(TensorType weight_type, int64_t n) {
  switch (weight_type) {
    case T::Q4_K:
      return static_cast<size_t>(n / 256) * kGemmTilesPanelQ8KBytes;
    case T::Q5_0:
    case T::Q8_0:
      return static_cast<size_t>(n / 32) * kGemmTilesPanelQ8_0Bytes;
    default:
      return 0;
  }
}

size_t gemm_panel_bytes(TensorType dot_type, int64_t n) {
  switch (dot_type) {
    case T::Q8_K:
      return static_cast<size_t>(n / 256) * kGemmPanelQ8KBytes;
    case T::Q8_0:
      return static_cast<size_t>((n / 32 + 15) / 16) * kGemmPanelQ8_0Bytes;
    case T::Q8_1:
      return static_cast<size_t>((n / 32 + 15) / 16) * kGemmPanelQ8_1Bytes;
    case T::F32:
      return (static_cast<size_t>(kGemmTokens * n) * 4 + 63) / 64 * 64;
    case T::F16:
    case T::BF16:
      return (static_cast<size_t>(kGemmTokens * n) * 2 + 63) / 64 * 64;
    default:
      return 0;
  }
}

}  // namespace ktx::kernels::cpu
