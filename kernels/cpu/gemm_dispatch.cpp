// gemm.h's dispatch: which GEMM kernel and panel packer a weight type gets on this CPU. Only the
// AVX-512 VNNI tier has GEMM kernels; below it (and under KTX_CPU_ISA=avx2|scalar) batches use the
// GEMV kernels of vec_dot.h. Compiled without -m flags.
#include <cstdlib>
#include <cstring>

#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"

#ifndef KTX_CPU_KERNELS_AVX512
#define KTX_CPU_KERNELS_AVX512 0
#endif
#ifndef KTX_CPU_KERNELS_AVX512BF16
#define KTX_CPU_KERNELS_AVX512BF16 0
#endif

namespace ktx::kernels::cpu {

using T = TensorType;

GemmFn isa_gemm(Isa isa, TensorType t) {
  if (isa != Isa::kAvx512Vnni || !isa_available(isa)) return nullptr;
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

GemmPackFn isa_gemm_pack(Isa isa, TensorType t) {
  if (isa != Isa::kAvx512Vnni || !isa_available(isa)) return nullptr;
#if KTX_CPU_KERNELS_AVX512
  switch (t) {
    case T::Q8_K:
      return avx512::gemm_pack_q8_K;
    case T::Q8_0:
      return avx512::gemm_pack_q8_0;
    case T::Q8_1:
      return avx512::gemm_pack_q8_1;
    case T::F32:
      return avx512::gemm_pack_f32;
    case T::F16:
    case T::BF16:
      return avx512::gemm_pack_16bit;
    default:
      return nullptr;
  }
#else
  (void)t;
  return nullptr;
#endif
}

namespace {

// Read once: the tier allows it and KTX_GEMM is not "0".
bool gemm_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("KTX_GEMM");
    return selected_isa() == Isa::kAvx512Vnni && (env == nullptr || std::strcmp(env, "0") != 0);
  }();
  return enabled;
}

}  // namespace

GemmFn gemm_fn(TensorType weight_type) {
  return gemm_enabled() ? isa_gemm(Isa::kAvx512Vnni, weight_type) : nullptr;
}

GemmPackFn gemm_pack_fn(TensorType dot_type) {
  return gemm_enabled() ? isa_gemm_pack(Isa::kAvx512Vnni, dot_type) : nullptr;
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
