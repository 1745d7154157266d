// vec_dot.h's dispatch: one table per process, built on first use from the selected tier
// (cpu_features.h) downwards, so a type without a kernel in the chosen tier gets the next lower
// tier's, and in the end the reference in lib/quant. Compiled without -m flags.
#include <array>

#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/vec_dot.h"
#include "quant/formats.h"

namespace ktx::kernels::cpu {
namespace {

using T = TensorType;

// Type-erasing adapters from the typed reference row functions (as lib/quant/quant.cpp has).
template <typename X, typename Y, float (*F)(int64_t, const X*, const Y*)>
float ref_dot(int64_t n, const void* x, const void* y) {
  return F(n, static_cast<const X*>(x), static_cast<const Y*>(y));
}

template <typename Block, void (*F)(const float*, Block*, int64_t)>
void ref_quantize(const float* x, void* y, int64_t n) {
  F(x, static_cast<Block*>(y), n);
}

VecDotFn scalar_vec_dot(T t) {
  using namespace quant;
  switch (t) {
    case T::F32:
      return ref_dot<float, float, vec_dot_f32>;
    case T::F16:
      return ref_dot<uint16_t, uint16_t, vec_dot_f16>;
    case T::BF16:
      return ref_dot<uint16_t, uint16_t, vec_dot_bf16>;
    case T::Q4_0:
      return ref_dot<BlockQ4_0, BlockQ8_0, vec_dot_q4_0_q8_0>;
    case T::Q4_1:
      return ref_dot<BlockQ4_1, BlockQ8_1, vec_dot_q4_1_q8_1>;
    case T::Q5_0:
      return ref_dot<BlockQ5_0, BlockQ8_0, vec_dot_q5_0_q8_0>;
    case T::Q5_1:
      return ref_dot<BlockQ5_1, BlockQ8_1, vec_dot_q5_1_q8_1>;
    case T::Q8_0:
      return ref_dot<BlockQ8_0, BlockQ8_0, vec_dot_q8_0_q8_0>;
    case T::Q2_K:
      return ref_dot<BlockQ2_K, BlockQ8_K, vec_dot_q2_K_q8_K>;
    case T::Q3_K:
      return ref_dot<BlockQ3_K, BlockQ8_K, vec_dot_q3_K_q8_K>;
    case T::Q4_K:
      return ref_dot<BlockQ4_K, BlockQ8_K, vec_dot_q4_K_q8_K>;
    case T::Q5_K:
      return ref_dot<BlockQ5_K, BlockQ8_K, vec_dot_q5_K_q8_K>;
    case T::Q6_K:
      return ref_dot<BlockQ6_K, BlockQ8_K, vec_dot_q6_K_q8_K>;
    case T::IQ4_NL:
      return ref_dot<BlockIQ4_NL, BlockQ8_0, vec_dot_iq4_nl_q8_0>;
    case T::IQ4_XS:
      return ref_dot<BlockIQ4_XS, BlockQ8_K, vec_dot_iq4_xs_q8_K>;
    default:
      return nullptr;
  }
}

void ref_f32(const float* x, void* y, int64_t n) {
  quant::quantize_row_f32(x, static_cast<float*>(y), n);
}

QuantizeRowFn scalar_quantize_row(T t) {
  using namespace quant;
  switch (t) {
    case T::F32:
      return ref_f32;
    case T::F16:
      return ref_quantize<uint16_t, quantize_row_f16>;
    case T::BF16:
      return ref_quantize<uint16_t, quantize_row_bf16>;
    case T::Q8_0:
      return ref_quantize<BlockQ8_0, quantize_row_q8_0_ref>;
    case T::Q8_1:
      return ref_quantize<BlockQ8_1, quantize_row_q8_1_ref>;
    case T::Q8_K:
      return ref_quantize<BlockQ8_K, quantize_row_q8_K_ref>;
    default:
      return nullptr;
  }
}

// One SIMD tier's kernels; `ns` is its namespace.
#define KTX_TIER_VEC_DOT(ns)          \
  switch (t) {                        \
    case T::F32:                      \
      return ns::vec_dot_f32;         \
    case T::F16:                      \
      return ns::vec_dot_f16;         \
    case T::BF16:                     \
      return ns::vec_dot_bf16;        \
    case T::Q4_0:                     \
      return ns::vec_dot_q4_0_q8_0;   \
    case T::Q4_1:                     \
      return ns::vec_dot_q4_1_q8_1;   \
    case T::Q5_0:                     \
      return ns::vec_dot_q5_0_q8_0;   \
    case T::Q5_1:                     \
      return ns::vec_dot_q5_1_q8_1;   \
    case T::Q8_0:                     \
      return ns::vec_dot_q8_0_q8_0;   \
    case T::IQ4_NL:                   \
      return ns::vec_dot_iq4_nl_q8_0; \
    case T::Q2_K:                     \
      return ns::vec_dot_q2_K_q8_K;   \
    case T::Q3_K:                     \
      return ns::vec_dot_q3_K_q8_K;   \
    case T::Q4_K:                     \
      return ns::vec_dot_q4_K_q8_K;   \
    case T::Q5_K:                     \
      return ns::vec_dot_q5_K_q8_K;   \
    case T::Q6_K:                     \
      return ns::vec_dot_q6_K_q8_K;   \
    case T::IQ4_XS:                   \
      return ns::vec_dot_iq4_xs_q8_K; \
    default:                          \
      return nullptr;                 \
  }

#define KTX_TIER_QUANTIZE(ns)       \
  switch (t) {                      \
    case T::F16:                    \
      return ns::quantize_row_f16;  \
    case T::BF16:                   \
      return ns::quantize_row_bf16; \
    case T::Q8_0:                   \
      return ns::quantize_row_q8_0; \
    case T::Q8_1:                   \
      return ns::quantize_row_q8_1; \
    case T::Q8_K:                   \
      return ns::quantize_row_q8_K; \
    default:                        \
      return nullptr;               \
  }

#if KTX_CPU_KERNELS_AVX2
VecDotFn avx2_vec_dot(T t){KTX_TIER_VEC_DOT(avx2)} VecDotRowsFn avx2_vec_dot_rows(T t) {
  switch (t) {
    case T::Q4_0:
      return avx2::vec_dot_q4_0_q8_0_rows;
    case T::Q5_0:
      return avx2::vec_dot_q5_0_q8_0_rows;
    default:
      return nullptr;  // one row at a time is faster (isa_kernels.h)
  }
}
QuantizeRowFn avx2_quantize_row(T t){KTX_TIER_QUANTIZE(avx2)}
#endif
#if KTX_CPU_KERNELS_AVX512
VecDotFn avx512_vec_dot(T t){KTX_TIER_VEC_DOT(avx512)} VecDotRowsFn avx512_vec_dot_rows(T t) {
  switch (t) {
    case T::Q4_0:
      return avx512::vec_dot_q4_0_q8_0_rows;
    case T::Q4_1:
      return avx512::vec_dot_q4_1_q8_1_rows;
    case T::Q5_0:
      return avx512::vec_dot_q5_0_q8_0_rows;
    case T::Q5_1:
      return avx512::vec_dot_q5_1_q8_1_rows;
    case T::Q8_0:
      return avx512::vec_dot_q8_0_q8_0_rows;
    case T::IQ4_NL:
      return avx512::vec_dot_iq4_nl_q8_0_rows;
    case T::Q2_K:
      return avx512::vec_dot_q2_K_q8_K_rows;
    case T::Q3_K:
      return avx512::vec_dot_q3_K_q8_K_rows;
    case T::Q4_K:
      return avx512::vec_dot_q4_K_q8_K_rows;
    case T::Q5_K:
      return avx512::vec_dot_q5_K_q8_K_rows;
    case T::Q6_K:
      return avx512::vec_dot_q6_K_q8_K_rows;
    case T::IQ4_XS:
      return avx512::vec_dot_iq4_xs_q8_K_rows;
    default:
      return nullptr;
  }
}
VecDotTilesFn avx512_vec_dot_tiles(T t) {
  switch (t) {
    case T::Q4_K:
      return avx512::vec_dot_q4_K_q8_K_tiles;
    case T::Q6_K:
      return avx512::vec_dot_q6_K_q8_K_tiles;
    case T::Q5_0:
      return avx512::vec_dot_q5_0_q8_0_tiles;
    case T::Q8_0:
      return avx512::vec_dot_q8_0_q8_0_tiles;
    default:
      return nullptr;
  }
}
QuantizeRowFn avx512_quantize_row(T t) { KTX_TIER_QUANTIZE(avx512) }
#endif

constexpr size_t kTypeSlots = 64;  // above every ggml type id

struct Table {
  std::array<VecDotFn, kTypeSlots> vec_dot{};
  std::array<VecDotRowsFn, kTypeSlots> vec_dot_rows{};  // from the same tier as vec_dot
  std::array<QuantizeRowFn, kTypeSlots> quantize_row{};
  Isa isa = Isa::kScalar;
};

Table build() {
  Table table;
  table.isa = selected_isa();
  for (size_t id = 0; id < kTypeSlots; ++id) {
    const auto t = static_cast<T>(id);
    // From the selected tier down: the first one with a kernel for the type wins.
    for (int i = static_cast<int>(table.isa); i >= 0; --i) {
      const auto isa = static_cast<Isa>(i);
      VecDotFn dot = isa_vec_dot(isa, t);
      if (isa == Isa::kAvx512Vnni && t == T::BF16 && avx512bf16_vec_dot_bf16() != nullptr) {
        dot = avx512bf16_vec_dot_bf16();
      }
      if (table.vec_dot[id] == nullptr && dot != nullptr) {
        table.vec_dot[id] = dot;
        // Only a multi-row kernel of the same tier gives the same results as `dot`.
        table.vec_dot_rows[id] = isa_vec_dot_rows(isa, t);
      }
      if (table.quantize_row[id] == nullptr) table.quantize_row[id] = isa_quantize_row(isa, t);
    }
  }
  return table;
}

const Table& table() {
  static const Table t = build();
  return t;
}

}  // namespace

VecDotFn isa_vec_dot(Isa isa, TensorType t) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return scalar_vec_dot(t);
    case Isa::kAvx2:
#if KTX_CPU_KERNELS_AVX2
      return avx2_vec_dot(t);
#else
      return nullptr;
#endif
    case Isa::kAvx512Vnni:
#if KTX_CPU_KERNELS_AVX512
      return avx512_vec_dot(t);
#else
      return nullptr;
#endif
  }
  return nullptr;
}

VecDotRowsFn isa_vec_dot_rows(Isa isa, [[maybe_unused]] TensorType t) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return nullptr;
    case Isa::kAvx2:
#if KTX_CPU_KERNELS_AVX2
      return avx2_vec_dot_rows(t);
#else
      return nullptr;
#endif
    case Isa::kAvx512Vnni:
#if KTX_CPU_KERNELS_AVX512
      return avx512_vec_dot_rows(t);
#else
      return nullptr;
#endif
  }
  return nullptr;
}

QuantizeRowFn isa_quantize_row(Isa isa, TensorType t) {
  if (!isa_available(isa)) return nullptr;
  switch (isa) {
    case Isa::kScalar:
      return scalar_quantize_row(t);
    case Isa::kAvx2:
#if KTX_CPU_KERNELS_AVX2
      return avx2_quantize_row(t);
#else
      return nullptr;
#endif
    case Isa::kAvx512Vnni:
#if KTX_CPU_KERNELS_AVX512
      return avx512_quantize_row(t);
#else
      return nullptr;
#endif
  }
  return nullptr;
}

VecDotTilesFn isa_vec_dot_tiles(Isa isa, [[maybe_unused]] TensorType t) {
  if (!isa_available(isa)) return nullptr;
#if KTX_CPU_KERNELS_AVX512
  if (isa == Isa::kAvx512Vnni) return avx512_vec_dot_tiles(t);
#endif
  return nullptr;
}

VecDotTilesFn vec_dot_tiles_fn(TensorType weight_type) {
  // Q6_K's tiles pay on Zen 4 (the 8-layer V2-Lite file's Q6_K output head, 172 MB: 5.6-6.3 ->
  // 4.7-4.9 ms a token in slow-bandwidth runs) and lose on an Emerald Rapids VM, where one core
  // streams them from memory at 7.3-8.4 GB/s against 11.4-12.5 for the file's rows, and the head
  // took 10-14 ms against 6-9 (docs/PERF.md, "Intel: Emerald Rapids"). The other types' tiles
  // were 6% slower to 11% faster than their rows there. So Q6_K is repacked on AMD CPUs only.
  if (weight_type == TensorType::Q6_K && !cpu_features().amd) return nullptr;
  return isa_vec_dot_tiles(table().isa, weight_type);
}

VecDotFn avx512bf16_vec_dot_bf16() {
#if KTX_CPU_KERNELS_AVX512 && KTX_CPU_KERNELS_AVX512BF16
  if (isa_available(Isa::kAvx512Vnni) && cpu_features().avx512bf16) {
    return avx512bf16::vec_dot_bf16;
  }
#endif
  return nullptr;
}

VecDotFn vec_dot_fn(TensorType weight_type) {
  const auto id = static_cast<size_t>(weight_type);
  return id < kTypeSlots ? table().vec_dot[id] : nullptr;
}

VecDotRowsFn vec_dot_rows_fn(TensorType weight_type) {
  const auto id = static_cast<size_t>(weight_type);
  return id < kTypeSlots ? table().vec_dot_rows[id] : nullptr;
}

QuantizeRowFn quantize_row_fn(TensorType activation_type) {
  const auto id = static_cast<size_t>(activation_type);
  return id < kTypeSlots ? table().quantize_row[id] : nullptr;
}

std::string_view active_isa() { return isa_name(table().isa); }

}  // namespace ktx::kernels::cpu
