// The CPU backend's operator implementations, one OpImpl per module kind; register.cpp adds them
// all to a registry. Each lives in its own file (embedding.cpp, mla_attention.cpp …).
#pragma once

#include "registry/registry.h"

namespace ktx::ops::cpu {

registry::OpImpl embedding_impl();
registry::OpImpl rms_norm_impl();
registry::OpImpl lm_head_impl();
registry::OpImpl mlp_impl();
registry::OpImpl moe_gate_impl();
registry::OpImpl experts_impl();
registry::OpImpl mla_attention_impl();
registry::OpImpl gqa_attention_impl();

}  // namespace ktx::ops::cpu
