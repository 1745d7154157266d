// Models known by name, without their file: the published DeepSeek configs turned into a module
// tree with synthetic tensors whose types are what llama.cpp's quantization preset would choose,
// so `ktx plan --arch-preset deepseek-v2 --quant Q4_K_M` can plan a model nobody downloaded.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/gguf.h"
#include "ktx/quantize.h"
#include "model/config.h"
#include "model/module_tree.h"

namespace ktx::planner {

enum class ArchPreset { kDeepseekV2, kDeepseekV2Lite, kDeepseekV3 };

struct ArchPresetInfo {
  ArchPreset preset;
  std::string_view name;         // "deepseek-v2"
  std::string_view description;  // "DeepSeek-V2 / V2-Chat / Coder-V2 (236B, 21B active)"
};

std::vector<ArchPresetInfo> arch_presets();
// "deepseek-v2", "deepseek-v2-lite", "deepseek-v3" ("deepseek-r1" = v3); nullopt otherwise.
std::optional<ArchPreset> arch_preset_from_name(std::string_view name);
// Like arch_preset_from_name, but throws ktx::Error(kInvalidArgument) listing the names.
ArchPreset parse_arch_preset(std::string_view name);

// The published hyper-parameters (REFERENCE.md's table, the HF config.json files).
model::ModelConfig arch_preset_config(ArchPreset preset);

// A model without data: tensors have names, types, shapes and byte sizes (data is null), and
// modules point at them, named as build_module_tree names them. Not copyable (modules point into
// tensors); keep it in the unique_ptr.
struct SyntheticModel {
  std::string description;  // "deepseek-v2 at Q4_K_M"
  model::ModelConfig config;
  std::vector<gguf::TensorInfo> tensors;
  std::vector<model::ModuleDesc> modules;

  uint64_t total_bytes() const;
  uint64_t total_parameters() const;

  SyntheticModel() = default;
  SyntheticModel(const SyntheticModel&) = delete;
  SyntheticModel& operator=(const SyntheticModel&) = delete;
};

// Tensors as llama.cpp's converter writes a deepseek2 model (BF16 matrices, F32 norms, router
// and bias; attn_kv_b, or attn_k_b + attn_v_b when config.mla_split_kv_b), requantized with `quant`
// through quantize::plan_types; nullopt keeps the BF16 original. Works for any deepseek2-shaped
// config, e.g. a tiny one in tests.
std::unique_ptr<SyntheticModel> synthesize_deepseek2(const model::ModelConfig& config,
                                                     std::optional<quantize::Preset> quant,
                                                     std::string description);
std::unique_ptr<SyntheticModel> synthesize_model(ArchPreset preset,
                                                 std::optional<quantize::Preset> quant);

}  // namespace ktx::planner
