// Registration of the CPU backend's operators.
#include "ops/cpu/register.h"

#include "ops/cpu/impls.h"

namespace ktx::ops::cpu {

void register_cpu_operators(registry::OperatorRegistry& registry) {
  registry.add(embedding_impl());
  registry.add(rms_norm_impl());
  registry.add(lm_head_impl());
  registry.add(mlp_impl());
  registry.add(moe_gate_impl());
  registry.add(experts_impl());
  registry.add(mla_attention_impl());
  registry.add(gqa_attention_impl());
}

}  // namespace ktx::ops::cpu
