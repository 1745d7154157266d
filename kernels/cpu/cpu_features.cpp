// CPU feature detection with cpuid/xgetbv, and the KTX_CPU_ISA override. Compiled without any
// -m flags: it must run on every x86-64 CPU (and build, reporting nothing, on other targets).
#include "kernels/cpu/cpu_features.h"

#include <cstdio>
#include <cstdlib>

#include "kernels/cpu/isa_kernels.h"  // KTX_CPU_KERNELS_*: which tiers this build compiled

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define KTX_CPU_X86 1
#endif

namespace ktx::kernels::cpu {
namespace {

#ifdef KTX_CPU_X86
struct Regs {
  unsigned a = 0, b = 0, c = 0, d = 0;
};

Regs cpuid(unsigned leaf, unsigned subleaf) {
  Regs r;
  if (!__get_cpuid_count(leaf, subleaf, &r.a, &r.b, &r.c, &r.d)) return Regs{};
  return r;
}

// XCR0, the register state the OS saves on a context switch. Only valid when CPUID says OSXSAVE;
// read with the raw opcode so that this file needs no -mxsave.
unsigned long long xcr0() {
  unsigned lo = 0, hi = 0;
  __asm__ volatile(".byte 0x0f, 0x01, 0xd0" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<unsigned long long>(hi) << 32) | lo;
}

bool bit(unsigned reg, int n) { return (reg >> n) & 1u; }

CpuFeatures detect() {
  CpuFeatures f;
  const Regs l0 = cpuid(0, 0);
  const unsigned max_leaf = l0.a;
  char vendor[13] = {};
  __builtin_memcpy(vendor, &l0.b, 4);  // the vendor string is in ebx, edx, ecx
  __builtin_memcpy(vendor + 4, &l0.d, 4);
  __builtin_memcpy(vendor + 8, &l0.c, 4);
  f.amd = std::string_view(vendor) == "AuthenticAMD" || std::string_view(vendor) == "HygonGenuine";
  const Regs l1 = cpuid(1, 0);
  const bool osxsave = bit(l1.c, 27), avx = bit(l1.c, 28);
  if (!osxsave || !avx || max_leaf < 7) return f;
  const unsigned long long xcr = xcr0();
  const bool ymm_state = (xcr & 0x6) == 0x6;    // SSE + AVX (upper YMM halves)
  const bool zmm_state = (xcr & 0xe6) == 0xe6;  // + opmask, upper ZMM0-15, ZMM16-31
  if (!ymm_state) return f;
  const Regs l7 = cpuid(7, 0);
  f.fma = bit(l1.c, 12);
  f.f16c = bit(l1.c, 29);
  f.avx2 = bit(l7.b, 5);
  if (zmm_state) {
    f.avx512f = bit(l7.b, 16);
    f.avx512dq = bit(l7.b, 17);
    f.avx512bw = bit(l7.b, 30);
    f.avx512vl = bit(l7.b, 31);
    f.avx512vbmi = bit(l7.c, 1);
    f.avx512vnni = bit(l7.c, 11);
    if (l7.a >= 1) f.avx512bf16 = bit(cpuid(7, 1).a, 5);
  }
  return f;
}
#else
CpuFeatures detect() { return CpuFeatures{}; }
#endif

bool cpu_has(Isa isa) {
  const CpuFeatures& f = cpu_features();
  const bool avx2 = f.avx2 && f.fma && f.f16c;
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return avx2;
    case Isa::kAvx512Vnni:
      return avx2 && f.avx512f && f.avx512dq && f.avx512bw && f.avx512vl && f.avx512vnni;
  }
  return false;
}

bool built(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return true;
    case Isa::kAvx2:
      return KTX_CPU_KERNELS_AVX2 != 0;
    case Isa::kAvx512Vnni:
      return KTX_CPU_KERNELS_AVX512 != 0;
  }
  return false;
}

Isa select() {
  Isa best = Isa::kScalar;
  for (Isa isa : kAllIsas) {
    if (isa_available(isa)) best = isa;
  }
  const char* env = std::getenv("KTX_CPU_ISA");
  if (env == nullptr || *env == '\0') return best;
  const std::optional<Isa> cap = isa_from_name(env);
  if (!cap) {
    std::fprintf(stderr,
                 "ktx: ignoring KTX_CPU_ISA=%s (expected scalar, avx2 or avx512vnni); using %s\n",
                 env, isa_name(best).data());
    return best;
  }
  // A cap above what the CPU can run cannot be honoured; the best tier below it can.
  Isa chosen = Isa::kScalar;
  for (Isa isa : kAllIsas) {
    if (isa <= *cap && isa_available(isa)) chosen = isa;
  }
  return chosen;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

std::string_view isa_name(Isa isa) {
  switch (isa) {
    case Isa::kScalar:
      return "scalar";
    case Isa::kAvx2:
      return "avx2";
    case Isa::kAvx512Vnni:
      return "avx512vnni";
  }
  return "?";
}

std::optional<Isa> isa_from_name(std::string_view name) {
  for (Isa isa : kAllIsas) {
    if (isa_name(isa) == name) return isa;
  }
  return std::nullopt;
}

bool isa_available(Isa isa) { return built(isa) && cpu_has(isa); }

Isa selected_isa() {
  static const Isa isa = select();
  return isa;
}

}  // namespace ktx::kernels::cpu
