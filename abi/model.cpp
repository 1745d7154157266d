// Model options, loading (progress and cancel), model info, warnings, metadata and the plan.
#include <optional>
#include <string>

#include "abi_internal.h"
#include "ktx/error.h"
#include "ktx/gguf.h"

using ktx::abi::AbiFailure;
using ktx::abi::invalid_argument;
using ktx::abi::json_quote;
using ktx::abi::null_argument;

namespace {

// The strings and JSON the model handle lends out, computed once at load.
void describe_plan(ktx_model& m) {
  const ktx::exec::Plan& plan = m.model->plan();
  std::string json = "{\"placements\": [";
  m.placements.reserve(plan.placements.size());
  for (size_t i = 0; i < plan.placements.size(); ++i) {
    const ktx::exec::Placement& p = plan.placements[i];
    ktx_model::PlacementText text;
    text.generate_device = p.generate_device.name();
    text.prefill_device = p.prefill_device.name();
    text.options_json = "{";
    bool first = true;
    for (const auto& [key, value] : p.options) {
      if (!first) text.options_json += ", ";
      first = false;
      text.options_json += json_quote(key) + ": " + json_quote(value);
    }
    text.options_json += "}";
    if (i > 0) json += ",";
    json += "\n  {\"module\": " + json_quote(p.module) + ", \"impl\": " + json_quote(p.impl) +
            ", \"generate_device\": " + json_quote(text.generate_device) +
            ", \"prefill_device\": " + json_quote(text.prefill_device) +
            ", \"options\": " + text.options_json + ", \"why\": " + json_quote(p.why) + "}";
    m.placements.push_back(std::move(text));
  }
  json += "\n ],\n \"warnings\": [";
  const std::vector<std::string>& warnings = m.model->warnings();
  for (size_t i = 0; i < warnings.size(); ++i) {
    json += (i > 0 ? ", " : "") + json_quote(warnings[i]);
  }
  json += "]}\n";
  m.plan_json = std::move(json);
}

const ktx::gguf::Value* find_key(const ktx_model* model, const char* key) {
  const ktx::gguf::Value* v = model->model->file().find(key);
  if (v == nullptr) {
    throw AbiFailure{KTX_STATUS_NOT_FOUND,
                     model->model->file().paths().front() + ": no metadata key '" + key + "'"};
  }
  return v;
}

[[noreturn]] void wrong_type(const char* function, const ktx_model* model, const char* key,
                             const ktx::gguf::Value& v, const char* wanted) {
  throw ktx::Error(ktx::ErrorCode::kInvalidArgument,
                   std::string(function) + ": " + model->model->file().paths().front() + ": key '" +
                       key + "' is " + std::string(ktx::gguf::value_type_name(v.type())) + " (" +
                       v.to_display_string() + "), not " + wanted);
}

}  // namespace

extern "C" {

// --- options ------------------------------------------------------------------------------------

ktx_status* ktx_model_options_create(ktx_model_options** options) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  *options = new ktx_model_options();
  return nullptr;
  KTX_API_END
}

void ktx_model_options_release(ktx_model_options* options) { delete options; }

ktx_status* ktx_model_options_set_threads(ktx_model_options* options, int32_t n_threads) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  if (n_threads < 0 || n_threads > ktx::runtime::kMaxThreads) {
    return invalid_argument(__func__, "n_threads must be 0 (every hardware thread) to " +
                                          std::to_string(ktx::runtime::kMaxThreads) + ", not " +
                                          std::to_string(n_threads));
  }
  options->n_threads = n_threads;
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_options_set_rules_path(ktx_model_options* options, const char* path) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  options->rules_path = path == nullptr ? std::string() : std::string(path);
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_options_add_backend_path(ktx_model_options* options, const char* path) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  if (path == nullptr) return null_argument(__func__, "path");
  if (*path == '\0') return invalid_argument(__func__, "path is empty");
  options->backend_paths.emplace_back(path);
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_options_set_prefault(ktx_model_options* options, bool prefault) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  options->prefault = prefault;
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_options_set_progress_callback(ktx_model_options* options,
                                                    ktx_progress_callback callback,
                                                    void* user_data) {
  KTX_API_BEGIN
  if (options == nullptr) return null_argument(__func__, "options");
  options->progress = callback;
  options->progress_user_data = user_data;
  return nullptr;
  KTX_API_END
}

// --- loading ------------------------------------------------------------------------------------

ktx_status* ktx_model_load(const char* path, const ktx_model_options* options, ktx_model** model) {
  KTX_API_BEGIN
  if (path == nullptr) return null_argument(__func__, "path");
  if (model == nullptr) return null_argument(__func__, "model");
  const ktx_model_options defaults;
  const ktx_model_options& o = options != nullptr ? *options : defaults;

  // The callback sees 0 first and 1 last; returning false at any point cancels the load.
  bool cancelled = false;
  double last = -1.0;
  auto report = [&](double fraction) {
    if (o.progress == nullptr || fraction <= last) return true;
    last = fraction;
    if (!o.progress(static_cast<float>(fraction), o.progress_user_data)) cancelled = true;
    return !cancelled;
  };
  auto cancel = [&](const char* when) {
    return ktx::abi::make_status(KTX_STATUS_CANCELLED,
                                 std::string("ktx_model_load: ") + path +
                                     ": loading cancelled by the progress callback " + when);
  };
  if (!report(0.0)) return cancel("before it started");

  ktx::runtime::ModelOptions mo;
  mo.rules_path = o.rules_path;
  mo.n_threads = o.n_threads;
  mo.prefault = o.prefault;
  mo.backend_paths = o.backend_paths;
  if (o.progress != nullptr) mo.progress = report;

  auto m = std::make_unique<ktx_model>();
  try {
    m->model = ktx::runtime::Model::load(path, mo);
  } catch (const ktx::Error&) {
    if (cancelled) return cancel("while prefaulting");
    throw;
  }
  const ktx::runtime::Model& rm = *m->model;
  if (const ktx::gguf::Value* name = rm.file().find("general.name"); name && name->as_string()) {
    m->name = *name->as_string();
  }
  m->kv_bytes_per_token = rm.make_kv_cache(1).bytes_per_token();
  describe_plan(*m);
  m->backends = std::make_unique<ktx_backend_list>(rm.backends());
  if (!report(1.0)) return cancel("at the end");
  *model = m.release();
  return nullptr;
  KTX_API_END
}

void ktx_model_release(ktx_model* model) { delete model; }

ktx_status* ktx_model_get_info(const ktx_model* model, ktx_model_info* info) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  const ktx::model::ModelConfig& c = model->model->config();
  ktx_model_info full{};
  full.struct_size = sizeof full;
  full.architecture = c.arch_name.c_str();
  full.name = model->name.c_str();
  full.n_layer = c.n_layer;
  full.n_embd = c.n_embd;
  full.n_vocab = c.n_vocab;
  full.n_ctx_train = c.n_ctx_train;
  full.n_head = c.n_head;
  full.n_expert = c.n_expert;
  full.n_expert_used = c.n_expert_used;
  full.n_threads = model->model->n_threads();
  full.kv_bytes_per_token = model->kv_bytes_per_token;
  return ktx::abi::write_sized(__func__, full, info, ktx::abi::kModelInfoSizeV1);
  KTX_API_END
}

size_t ktx_model_warning_count(const ktx_model* model) {
  return model == nullptr ? 0 : model->model->warnings().size();
}

const char* ktx_model_warning(const ktx_model* model, size_t index) {
  if (model == nullptr || index >= model->model->warnings().size()) return nullptr;
  return model->model->warnings()[index].c_str();
}

// --- metadata -----------------------------------------------------------------------------------

size_t ktx_model_meta_count(const ktx_model* model) {
  return model == nullptr ? 0 : model->model->file().metadata().size();
}

const char* ktx_model_meta_key(const ktx_model* model, size_t index) {
  if (model == nullptr || index >= model->model->file().metadata().size()) return nullptr;
  return model->model->file().metadata()[index].key.c_str();
}

ktx_status* ktx_model_meta_get_type(const ktx_model* model, const char* key, ktx_meta_type* type) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (key == nullptr) return null_argument(__func__, "key");
  if (type == nullptr) return null_argument(__func__, "type");
  *type = static_cast<ktx_meta_type>(find_key(model, key)->type());
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_meta_get_int(const ktx_model* model, const char* key, int64_t* value) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (key == nullptr) return null_argument(__func__, "key");
  if (value == nullptr) return null_argument(__func__, "value");
  const ktx::gguf::Value& v = *find_key(model, key);
  if (std::optional<bool> b = v.as_bool()) {
    *value = *b ? 1 : 0;
  } else if (std::optional<int64_t> i = v.as_int()) {
    *value = *i;
  } else {
    wrong_type(__func__, model, key, v, "an integer that fits int64_t");
  }
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_meta_get_float(const ktx_model* model, const char* key, double* value) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (key == nullptr) return null_argument(__func__, "key");
  if (value == nullptr) return null_argument(__func__, "value");
  const ktx::gguf::Value& v = *find_key(model, key);
  if (std::optional<double> f = v.as_float()) {
    *value = *f;
  } else if (std::optional<uint64_t> u = v.as_uint()) {
    *value = static_cast<double>(*u);
  } else if (std::optional<int64_t> i = v.as_int()) {
    *value = static_cast<double>(*i);
  } else {
    wrong_type(__func__, model, key, v, "a number");
  }
  return nullptr;
  KTX_API_END
}

ktx_status* ktx_model_meta_get_string(const ktx_model* model, const char* key, const char** value,
                                      size_t* len) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  if (key == nullptr) return null_argument(__func__, "key");
  if (value == nullptr) return null_argument(__func__, "value");
  const ktx::gguf::Value& v = *find_key(model, key);
  const std::string* s = v.as_string();
  if (s == nullptr) wrong_type(__func__, model, key, v, "a STRING");
  *value = s->c_str();
  if (len != nullptr) *len = s->size();
  return nullptr;
  KTX_API_END
}

// --- plan ---------------------------------------------------------------------------------------

size_t ktx_model_plan_count(const ktx_model* model) {
  return model == nullptr ? 0 : model->model->plan().placements.size();
}

ktx_status* ktx_model_plan_get(const ktx_model* model, size_t index, ktx_placement* placement) {
  KTX_API_BEGIN
  if (model == nullptr) return null_argument(__func__, "model");
  const std::vector<ktx::exec::Placement>& all = model->model->plan().placements;
  if (index >= all.size()) {
    return invalid_argument(__func__, "index " + std::to_string(index) + " is past the plan's " +
                                          std::to_string(all.size()) + " placements");
  }
  const ktx::exec::Placement& p = all[index];
  const ktx_model::PlacementText& text = model->placements[index];
  ktx_placement full{};
  full.struct_size = sizeof full;
  full.module = p.module.c_str();
  full.impl = p.impl.c_str();
  full.generate_device = text.generate_device.c_str();
  full.prefill_device = text.prefill_device.c_str();
  full.options_json = text.options_json.c_str();
  full.why = p.why.c_str();
  return ktx::abi::write_sized(__func__, full, placement, ktx::abi::kPlacementSizeV1);
  KTX_API_END
}

const char* ktx_model_plan_json(const ktx_model* model) {
  return model == nullptr ? "" : model->plan_json.c_str();
}

}  // extern "C"
