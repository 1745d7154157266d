// Model quantization with llama.cpp's presets: `ktx quantize IN.gguf OUT.gguf Q4_K_M`. The type
// each tensor gets follows llama.cpp's llama_tensor_get_type rule for rule (see docs/QUANTIZE.md),
// so a ktx-made file has the same tensor types as one made by llama-quantize without an
// importance matrix, and ktx's quantizers produce the same blocks.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/tensor_type.h"

namespace ktx::gguf {
class File;
}

namespace ktx::quantize {

// A preset ("file type" in llama.cpp's words). The values are llama.cpp's LLAMA_FTYPE_MOSTLY_*
// numbers, which a quantized file stores in general.file_type.
enum class Preset : uint32_t {
  Q4_0 = 2,
  Q4_1 = 3,
  Q8_0 = 7,
  Q5_0 = 8,
  Q5_1 = 9,
  Q4_K_S = 14,
  Q4_K_M = 15,
  Q5_K_S = 16,
  Q5_K_M = 17,
  Q6_K = 18,
};

struct PresetInfo {
  Preset preset;
  std::string_view name;         // as llama-quantize spells it: "Q4_K_M"
  TensorType base_type;          // the type of every tensor no rule singles out
  std::string_view description;  // one line for `ktx quantize --help`
};

// All presets, in llama-quantize's listing order.
std::span<const PresetInfo> presets();
const PresetInfo& preset_info(Preset preset);

// "q4_k_m", "Q4_K_M", llama-quantize's aliases ("Q4_K" = Q4_K_M, "Q5_K" = Q5_K_M) and the
// general.file_type number ("15") all name a preset; nullopt otherwise.
std::optional<Preset> preset_from_name(std::string_view name);

// Like preset_from_name, but throws ktx::Error (kInvalidArgument) that lists the valid names.
Preset parse_preset(std::string_view name);

// The type llama.cpp substitutes when a row does not split into `type`'s blocks (its
// tensor_type_fallback): IQ types -> IQ4_NL, Q2_K/Q3_K/TQ -> Q4_0, Q4_K -> Q5_0, Q5_K -> Q5_1,
// Q6_K -> Q8_0; nullopt when there is none.
std::optional<TensorType> row_fallback_type(TensorType type);

// The model facts the type rules read, from the file's metadata.
struct ModelInfo {
  std::string architecture;  // general.architecture
  int64_t n_layer = 0;       // {arch}.block_count
  int64_t n_expert = 0;      // {arch}.expert_count; 0 for a dense model
  int64_t n_head = 0;        // {arch}.attention.head_count (layer 0's when per layer); 0 = absent
  int64_t n_head_kv = 0;     // {arch}.attention.head_count_kv; defaults to n_head

  // Reads the keys above; throws ktx::Error naming the file and key when a required one
  // (general.architecture, {arch}.block_count) is missing.
  static ModelInfo from_file(const gguf::File& file);
};

// One tensor as the rules see it: a name, its stored type and its GGUF shape (shape[0] is the
// row length).
struct TensorDesc {
  std::string name;
  TensorType type = TensorType::F32;
  std::vector<int64_t> shape;
};

struct PlanOptions {
  // llama-quantize --pure: every quantizable tensor gets the preset's base type (shape fallbacks
  // still apply).
  bool pure = false;
};

// The decision for one tensor, with the reasons, so a printout can say why each tensor got its
// type.
struct TensorPlan {
  size_t index = 0;  // position in the input list
  std::string name;
  std::vector<int64_t> shape;
  TensorType from = TensorType::F32;  // stored type
  TensorType to = TensorType::F32;    // chosen type
  bool quantizable = false;           // llama.cpp would quantize it at all (else kept as stored)
  bool fallback = false;              // the row length forced a substitute type
  std::string why;                    // e.g. "ffn_down layer 1 of 27: more bits -> Q6_K; ..."

  bool converts() const { return from != to; }  // false: the bytes are copied unchanged
};

// Chooses every tensor's type. The result is in llama.cpp's processing order (by layer number,
// then by name; tensors outside blocks first), which is also the order quantize_model writes:
// the order matters, because llama.cpp counts attn_v-like tensors as it meets them. Throws
// ktx::Error when llama.cpp would refuse too (a row length no type of the preset fits, a layer
// number outside the model).
std::vector<TensorPlan> plan_types(const ModelInfo& model, const std::vector<TensorDesc>& tensors,
                                   Preset preset, const PlanOptions& options = {});

// What quantize_model reports while it runs. Always called on the thread that called
// quantize_model.
struct Progress {
  enum class Kind {
    kWarning,  // `message` says what; the run goes on
    kTensor,   // tensor `done` of `count` is finished (copied or converted)
  };
  Kind kind = Kind::kTensor;
  size_t done = 0;
  size_t count = 0;
  const TensorPlan* tensor = nullptr;  // kTensor only
  std::string_view message;            // kWarning only
};

struct Options {
  int threads = 0;    // worker threads over rows; 0 = all hardware threads
  bool pure = false;  // see PlanOptions::pure
  // Quantized data up to this many bytes is staged in memory until the file is written; above it,
  // in an unlinked scratch file next to the output (so a 400 GB model needs disk, not RAM).
  uint64_t memory_limit = uint64_t{4} << 30;
  std::function<void(const Progress&)> progress;  // optional
};

struct TypeCount {
  TensorType type = TensorType::F32;
  size_t tensors = 0;
  uint64_t bytes = 0;
};

struct Summary {
  Preset preset = Preset::Q8_0;
  size_t n_tensors = 0;
  size_t n_converted = 0;    // re-encoded
  size_t n_copied = 0;       // written with their stored bytes
  size_t n_fallback = 0;     // got a substitute type because of their row length
  size_t n_requantized = 0;  // converted from an already quantized type
  uint64_t n_elements = 0;
  uint64_t bytes_in = 0;  // tensor data only, headers excluded
  uint64_t bytes_out = 0;
  std::vector<TypeCount> types_in;  // by type id
  std::vector<TypeCount> types_out;
  std::vector<std::string> warnings;
  double seconds = 0;
};

// Quantizes the GGUF model at `in_path` (a split model's first part opens all parts) into a single
// file at `out_path`, written through a temporary file and renamed at the end. Metadata is copied
// (split.* keys dropped), general.file_type is set to the preset's number and
// general.quantization_version to 2. Sources may be F32, F16, BF16 or quantized; converting an
// already quantized tensor is allowed and reported as a warning. Throws ktx::Error:
// kInvalidArgument when `out_path` is the input, kUnsupported for a type ktx cannot convert (naming
// the tensor), kInvalidFile for bad input, kIo when writing fails. On error no output file is left
// behind.
Summary quantize_model(const std::string& in_path, const std::string& out_path, Preset preset,
                       const Options& options = {});

// A few lines for the CLI: totals, sizes and bits per weight in and out, tensors per type.
std::string format_summary(const Summary& summary);

}  // namespace ktx::quantize
