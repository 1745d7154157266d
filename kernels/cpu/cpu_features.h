// What this CPU (and its operating system) can run, read once with cpuid/xgetbv, and the
// instruction-set tiers the kernel dispatch chooses among.
#pragma once

#include <optional>
#include <string_view>

namespace ktx::kernels::cpu {

// Each flag is true only when the CPU reports the instructions *and* the OS saves the register
// state they use (XCR0: YMM for AVX/AVX2, opmask + ZMM for AVX-512). A VM may hide either.
struct CpuFeatures {
  bool avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512dq = false, avx512bw = false, avx512vl = false;
  bool avx512vnni = false, avx512vbmi = false, avx512bf16 = false;
  // The vendor: "AuthenticAMD" or Hygon's Zen-based "HygonGenuine". Only for a kernel choice that
  // measured differently on the two vendors' cores (vec_dot.h: vec_dot_tiles_fn).
  bool amd = false;
};

// Detected on first use; never changes afterwards.
const CpuFeatures& cpu_features();

// The kernel tiers, in increasing order: a tier's kernels may use everything the lower tiers use.
//   kScalar      the references in lib/quant, any CPU
//   kAvx2        AVX2 + FMA + F16C: Haswell (2013), Zen 1 and later
//   kAvx512Vnni  kAvx2 + AVX-512 F/DQ/BW/VL/VNNI: Ice Lake, Sapphire Rapids, Zen 4 and later
//                (AVX512_BF16, where present, adds one BF16 kernel within this tier)
enum class Isa { kScalar = 0, kAvx2 = 1, kAvx512Vnni = 2 };

inline constexpr Isa kAllIsas[] = {Isa::kScalar, Isa::kAvx2, Isa::kAvx512Vnni};

// "scalar", "avx2", "avx512vnni": the spelling KTX_CPU_ISA and active_isa() use.
std::string_view isa_name(Isa isa);
std::optional<Isa> isa_from_name(std::string_view name);

// True when this CPU can run the tier and this build compiled its kernels.
bool isa_available(Isa isa);

// The highest available tier, capped by KTX_CPU_ISA when it is set. An unknown value of
// KTX_CPU_ISA is reported on stderr once and ignored; a tier above what the CPU has is capped to
// the best available one.
Isa selected_isa();

// What a kernel family's *_fn() returns: the kernel `get` gives for the selected tier, else for
// the highest tier below it that has one (the scalar reference last). Internal linkage (static):
// a copy compiled into a tier's file must never be the one the linker keeps for other callers.
template <typename Fn>
static Fn pick_kernel(Fn (*get)(Isa)) {
  for (int i = static_cast<int>(selected_isa()); i >= 0; --i) {
    if (Fn fn = get(static_cast<Isa>(i))) return fn;
  }
  return get(Isa::kScalar);
}

}  // namespace ktx::kernels::cpu
