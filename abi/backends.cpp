// Backend lists: a model's (borrowed) or one loaded on its own, with devices, operators and the
// module files that were left out.
#include <limits>
#include <string>

#include "abi_internal.h"

using ktx::abi::invalid_argument;
using ktx::abi::null_argument;

ktx_backend_list::ktx_backend_list(const ktx::registry::BackendSet& backends) : set(&backends) {
  for (const auto& b : backends.backends) {
    Entry e;
    e.description = b->description();
    for (int d = 0; d < b->device_count(); ++d) {
      try {
        e.devices.push_back(b->device(d));
      } catch (const std::exception& err) {
        // A device that cannot describe itself is still listed, with the reason.
        e.devices.push_back({b->name() + ":" + std::to_string(d), err.what(), {}, {}});
      }
    }
    entries.push_back(std::move(e));
  }
  for (const ktx::registry::BackendRefusal& r : backends.refused) {
    refused.push_back(r.warning ? r.message : "note: " + r.message);
  }
}

namespace {

int32_t clamp_int32(size_t n) {
  return n > static_cast<size_t>(std::numeric_limits<int32_t>::max())
             ? std::numeric_limits<int32_t>::max()
             : static_cast<int32_t>(n);
}

int64_t bytes_or_unknown(const std::optional<uint64_t>& v) {
  if (!v) return -1;
  return *v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
             ? std::numeric_limits<int64_t>::max()
             : static_cast<int64_t>(*v);
}

}  // namespace

extern "C" {

ktx_status* ktx_backend_list_load(const ktx_model_options* options, ktx_backend_list** list) {
  KTX_API_BEGIN
  if (list == nullptr) return null_argument(__func__, "list");
  ktx::registry::BackendLoadOptions load;
  if (options != nullptr) load.paths = options->backend_paths;
  auto registry = std::make_unique<ktx::registry::OperatorRegistry>();
  auto set =
      std::make_unique<ktx::registry::BackendSet>(ktx::registry::load_backends(*registry, load));
  auto out = std::make_unique<ktx_backend_list>(*set);
  out->owned_set = std::move(set);
  out->owned_registry = std::move(registry);
  *list = out.release();
  return nullptr;
  KTX_API_END
}

const ktx_backend_list* ktx_model_get_backends(const ktx_model* model) {
  return model == nullptr ? nullptr : model->backends.get();
}

void ktx_backend_list_release(ktx_backend_list* list) { delete list; }

size_t ktx_backend_list_count(const ktx_backend_list* list) {
  return list == nullptr ? 0 : list->set->backends.size();
}

ktx_status* ktx_backend_list_get(const ktx_backend_list* list, size_t index,
                                 ktx_backend_info* info) {
  KTX_API_BEGIN
  if (list == nullptr) return null_argument(__func__, "list");
  if (index >= list->set->backends.size()) {
    return invalid_argument(__func__, "index " + std::to_string(index) + " is past the " +
                                          std::to_string(list->set->backends.size()) + " backends");
  }
  const ktx::registry::Backend& b = *list->set->backends[index];
  ktx_backend_info full{};
  full.struct_size = sizeof full;
  full.name = b.name().c_str();
  full.path = b.path().c_str();
  full.description = list->entries[index].description.c_str();
  full.score = b.score();
  full.n_devices = clamp_int32(list->entries[index].devices.size());
  full.n_operators = clamp_int32(b.operators().size());
  full.has_streams = b.has_streams() ? 1 : 0;
  return ktx::abi::write_sized(__func__, full, info, ktx::abi::kBackendInfoSizeV1);
  KTX_API_END
}

ktx_status* ktx_backend_list_get_device(const ktx_backend_list* list, size_t backend, size_t device,
                                        ktx_device_info* info) {
  KTX_API_BEGIN
  if (list == nullptr) return null_argument(__func__, "list");
  if (backend >= list->entries.size()) {
    return invalid_argument(__func__, "backend " + std::to_string(backend) + " is past the " +
                                          std::to_string(list->entries.size()) + " backends");
  }
  const ktx_backend_list::Entry& e = list->entries[backend];
  if (device >= e.devices.size()) {
    return invalid_argument(__func__, "device " + std::to_string(device) + " is past the " +
                                          std::to_string(e.devices.size()) + " devices of " +
                                          list->set->backends[backend]->name());
  }
  if (info == nullptr) return null_argument(__func__, "info");
  // Memory now; the names as snapshotted.
  const ktx::registry::BackendDeviceInfo now =
      list->set->backends[backend]->device(static_cast<int>(device));
  ktx_device_info full{};
  full.struct_size = sizeof full;
  full.name = e.devices[device].name.c_str();
  full.description = e.devices[device].description.c_str();
  full.free_bytes = bytes_or_unknown(now.free_bytes);
  full.total_bytes = bytes_or_unknown(now.total_bytes);
  return ktx::abi::write_sized(__func__, full, info, ktx::abi::kDeviceInfoSizeV1);
  KTX_API_END
}

const char* ktx_backend_list_operator(const ktx_backend_list* list, size_t backend, size_t index) {
  if (list == nullptr || backend >= list->set->backends.size()) return nullptr;
  const std::vector<std::string>& ops = list->set->backends[backend]->operators();
  return index < ops.size() ? ops[index].c_str() : nullptr;
}

size_t ktx_backend_list_refused_count(const ktx_backend_list* list) {
  return list == nullptr ? 0 : list->refused.size();
}

const char* ktx_backend_list_refused(const ktx_backend_list* list, size_t index) {
  if (list == nullptr || index >= list->refused.size()) return nullptr;
  return list->refused[index].c_str();
}

}  // extern "C"
