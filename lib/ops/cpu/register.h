// The CPU backend's operators: "cpu.<kind>" for every module kind (cpu.embedding, cpu.rms_norm,
// cpu.mla_attention, cpu.gqa_attention, cpu.mlp, cpu.moe_gate, cpu.experts, cpu.lm_head).
#pragma once

#include "registry/registry.h"

namespace ktx::ops::cpu {

// Adds every CPU implementation to `registry`. Throws ktx::Error (kInvalidArgument) if one of
// the names is already registered.
void register_cpu_operators(registry::OperatorRegistry& registry);

}  // namespace ktx::ops::cpu
