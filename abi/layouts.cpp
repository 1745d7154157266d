// Pins every public struct's shipped layout at compile time (the ONNX Runtime habit): a change
// that would move a field of a released struct fails the build here, before abi/check_abi.sh
// compares the built library with abi/baseline/. Append fields; never edit these lines.
#include <cstddef>

#include "abi_internal.h"

// Enums cross the boundary as int.
static_assert(sizeof(ktx_status_code) == 4);
static_assert(sizeof(ktx_meta_type) == 4);
static_assert(sizeof(ktx_stop_reason) == 4);

#define KTX_PIN(type, field, offset) \
  static_assert(offsetof(type, field) == (offset), #type "." #field)

// ABI 0.2
static_assert(sizeof(ktx_chat_message) == 16, "frozen: passed in arrays");
KTX_PIN(ktx_chat_message, role, 0);
KTX_PIN(ktx_chat_message, content, 8);

static_assert(sizeof(ktx_model_info) >= ktx::abi::kModelInfoSizeV1);
KTX_PIN(ktx_model_info, struct_size, 0);
KTX_PIN(ktx_model_info, architecture, 8);
KTX_PIN(ktx_model_info, name, 16);
KTX_PIN(ktx_model_info, n_layer, 24);
KTX_PIN(ktx_model_info, n_embd, 32);
KTX_PIN(ktx_model_info, n_vocab, 40);
KTX_PIN(ktx_model_info, n_ctx_train, 48);
KTX_PIN(ktx_model_info, n_head, 56);
KTX_PIN(ktx_model_info, n_expert, 64);
KTX_PIN(ktx_model_info, n_expert_used, 72);
KTX_PIN(ktx_model_info, n_threads, 80);
KTX_PIN(ktx_model_info, kv_bytes_per_token, 88);

static_assert(sizeof(ktx_placement) >= ktx::abi::kPlacementSizeV1);
KTX_PIN(ktx_placement, struct_size, 0);
KTX_PIN(ktx_placement, module, 8);
KTX_PIN(ktx_placement, impl, 16);
KTX_PIN(ktx_placement, generate_device, 24);
KTX_PIN(ktx_placement, prefill_device, 32);
KTX_PIN(ktx_placement, options_json, 40);
KTX_PIN(ktx_placement, why, 48);

static_assert(sizeof(ktx_generate_stats) >= ktx::abi::kGenerateStatsSizeV1);
KTX_PIN(ktx_generate_stats, struct_size, 0);
KTX_PIN(ktx_generate_stats, n_prompt, 8);
KTX_PIN(ktx_generate_stats, n_generated, 16);
KTX_PIN(ktx_generate_stats, prefill_seconds, 24);
KTX_PIN(ktx_generate_stats, decode_seconds, 32);
KTX_PIN(ktx_generate_stats, stop_reason, 40);

static_assert(sizeof(ktx_backend_info) >= ktx::abi::kBackendInfoSizeV1);
KTX_PIN(ktx_backend_info, struct_size, 0);
KTX_PIN(ktx_backend_info, name, 8);
KTX_PIN(ktx_backend_info, path, 16);
KTX_PIN(ktx_backend_info, description, 24);
KTX_PIN(ktx_backend_info, score, 32);
KTX_PIN(ktx_backend_info, n_devices, 36);
KTX_PIN(ktx_backend_info, n_operators, 40);
KTX_PIN(ktx_backend_info, has_streams, 44);

static_assert(sizeof(ktx_device_info) >= ktx::abi::kDeviceInfoSizeV1);
KTX_PIN(ktx_device_info, struct_size, 0);
KTX_PIN(ktx_device_info, name, 8);
KTX_PIN(ktx_device_info, description, 16);
KTX_PIN(ktx_device_info, free_bytes, 24);
KTX_PIN(ktx_device_info, total_bytes, 32);
