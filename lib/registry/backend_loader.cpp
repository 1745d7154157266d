// Loading backends: the built-in CPU table, then module files in a fixed order of checks —
// dlopen, both entry points, score, init, api_version, struct_size, required slots, the
// operators (staged, then added all at once) — each failure a message naming the file.
#include "registry/backend_loader.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <string_view>
#include <utility>

#include "ktx/error.h"
#include "ops/cpu/register.h"

// The first two fields are the whole of the cross-version contract: pin them.
static_assert(offsetof(ktx_backend_v1, api_version) == 0);
static_assert(offsetof(ktx_backend_v1, struct_size) == 4);
#if UINTPTR_MAX == 0xffffffffffffffffu
// Version 1 as shipped: 8 bytes of header, 2 strings, 20 slots, ctx. Changing it means a new
// KTX_BACKEND_API_VERSION.
static_assert(sizeof(ktx_backend_v1) == 8 + 8 * (2 + 20 + 1));
static_assert(sizeof(ktx_op_registrar) == 32);
#endif

namespace ktx::registry {

// ---------------------------------------------------------------------------------------------
// The built-in CPU backend: the host's memory, plain copies, no streams, the cpu.* operators.
// ---------------------------------------------------------------------------------------------
namespace {

constexpr size_t kHostAlignment = 64;

void* aligned_host_alloc(size_t size) {
  if (size > SIZE_MAX - kHostAlignment) return nullptr;
  const size_t rounded =
      (std::max<size_t>(size, 1) + kHostAlignment - 1) / kHostAlignment * kHostAlignment;
  return std::aligned_alloc(kHostAlignment, rounded);
}

// MemAvailable and MemTotal of /proc/meminfo, in bytes; false when unreadable.
bool host_memory(uint64_t* free_bytes, uint64_t* total_bytes) {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  std::string unit;
  bool have_free = false, have_total = false;
  while (in >> key >> kib) {
    std::getline(in, unit);
    if (key == "MemAvailable:") {
      *free_bytes = kib * 1024;
      have_free = true;
    } else if (key == "MemTotal:") {
      *total_bytes = kib * 1024;
      have_total = true;
    }
  }
  return have_free && have_total;
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) {
        const size_t start = line.find_first_not_of(' ', colon + 1);
        return start == std::string::npos ? "" : line.substr(start);
      }
    }
  }
  return "";
}

int cpu_device_count(void*) { return 1; }
const char* cpu_device_name(void*, int) { return "cpu"; }
const char* cpu_device_description(void*, int) {
  static const std::string name = cpu_model_name();
  return name.c_str();
}
int cpu_device_memory(void*, int, uint64_t* free_bytes, uint64_t* total_bytes) {
  return host_memory(free_bytes, total_bytes) ? 0 : 1;
}
void* cpu_buffer_alloc(void*, int, size_t size) { return aligned_host_alloc(size); }
void cpu_buffer_free(void*, int, void* ptr) { std::free(ptr); }
int cpu_copy(void*, int, void* dst, const void* src, size_t size, ktx_copy_kind,
             ktx_backend_stream) {
  if (size != 0) std::memcpy(dst, src, size);
  return 0;
}

void cpu_register_operators(void*, ktx_op_registrar* registrar) {
  // Host code: exceptions are fine here, load_backends turns them into an internal error.
  OperatorRegistry own;
  ops::cpu::register_cpu_operators(own);
  for (const OpImpl* impl : own.all()) add_operator(registrar, *impl);
}

const ktx_backend_v1 kCpuTable = {
    KTX_BACKEND_API_VERSION,
    sizeof(ktx_backend_v1),
    "cpu",
    "built in: the host CPU, cpu.* operators on ktx's thread pool",
    cpu_device_count,
    cpu_device_name,
    cpu_device_description,
    cpu_device_memory,
    cpu_buffer_alloc,
    cpu_buffer_free,
    cpu_copy,
    nullptr,  // host_alloc_pinned: ordinary memory is what the CPU uses anyway
    nullptr,
    nullptr,  // streams and events: synchronous
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,  // last_error
    cpu_register_operators,
    nullptr,  // get_proc_address
    nullptr,  // release
    nullptr,  // ctx
};

}  // namespace

const ktx_backend_v1& cpu_backend_table() { return kCpuTable; }

// ---------------------------------------------------------------------------------------------
// Backend: the dispatcher
// ---------------------------------------------------------------------------------------------

Backend::~Backend() {
  if (table_ != nullptr && table_->release != nullptr) table_->release(table_->ctx);
  if (handle_ != nullptr) dlclose(handle_);
}

std::string Backend::description() const {
  return table_->description != nullptr ? table_->description : "";
}

int Backend::device_count() const { return table_->device_count(table_->ctx); }

BackendDeviceInfo Backend::device(int index) const {
  BackendDeviceInfo info;
  const char* name = table_->device_name(table_->ctx, index);
  info.name = name != nullptr ? name : fmt::format("device {}", index);
  if (table_->device_description != nullptr) {
    const char* d = table_->device_description(table_->ctx, index);
    if (d != nullptr) info.description = d;
  }
  uint64_t free_bytes = 0, total_bytes = 0;
  if (table_->device_memory != nullptr &&
      table_->device_memory(table_->ctx, index, &free_bytes, &total_bytes) == 0) {
    info.free_bytes = free_bytes;
    info.total_bytes = total_bytes;
  }
  return info;
}

void Backend::fail_call(ErrorCode code, const std::string& what, int device) const {
  const char* detail = table_->last_error != nullptr ? table_->last_error(table_->ctx) : nullptr;
  const std::string where = device >= 0 ? fmt::format("backend {} device {}", name_, device)
                                        : fmt::format("backend {}", name_);
  throw Error(code, fmt::format("{}: {} failed{}{}", where, what, detail ? ": " : "",
                                detail ? detail : ""));
}

void* Backend::alloc(int device, size_t size) const {
  void* p = table_->buffer_alloc(table_->ctx, device, size);
  if (p == nullptr)
    fail_call(ErrorCode::kOutOfMemory, fmt::format("buffer_alloc of {} bytes", size), device);
  return p;
}

void Backend::free(int device, void* ptr) const { table_->buffer_free(table_->ctx, device, ptr); }

void Backend::copy(int device, void* dst, const void* src, size_t size, ktx_copy_kind kind,
                   ktx_backend_stream stream) const {
  if (table_->copy(table_->ctx, device, dst, src, size, kind, stream) != 0) {
    fail_call(ErrorCode::kInternal, fmt::format("copy of {} bytes", size), device);
  }
}

void* Backend::alloc_host_pinned(size_t size) const {
  void* p = table_->host_alloc_pinned != nullptr ? table_->host_alloc_pinned(table_->ctx, size)
                                                 : aligned_host_alloc(size);
  if (p == nullptr)
    fail_call(ErrorCode::kOutOfMemory, fmt::format("host_alloc_pinned of {} bytes", size), -1);
  return p;
}

void Backend::free_host_pinned(void* ptr) const {
  if (table_->host_alloc_pinned != nullptr) {
    table_->host_free_pinned(table_->ctx, ptr);
  } else {
    std::free(ptr);
  }
}

ktx_backend_stream Backend::create_stream(int device) const {
  if (table_->stream_create == nullptr) return nullptr;
  ktx_backend_stream s = table_->stream_create(table_->ctx, device);
  if (s == nullptr) fail_call(ErrorCode::kInternal, "stream_create", device);
  return s;
}

void Backend::destroy_stream(ktx_backend_stream stream) const {
  if (table_->stream_destroy != nullptr) table_->stream_destroy(table_->ctx, stream);
}

void Backend::synchronize(ktx_backend_stream stream) const {
  if (table_->stream_synchronize != nullptr &&
      table_->stream_synchronize(table_->ctx, stream) != 0) {
    fail_call(ErrorCode::kInternal, "stream_synchronize", -1);
  }
}

void* Backend::proc_address(const char* name) const {
  return table_->get_proc_address != nullptr ? table_->get_proc_address(table_->ctx, name)
                                             : nullptr;
}

const Backend* BackendSet::find(std::string_view name) const {
  for (const auto& b : backends) {
    if (b->name() == name) return b.get();
  }
  return nullptr;
}

std::vector<Device> BackendSet::devices() const {
  std::vector<Device> out;
  for (const auto& b : backends) {
    for (int i = 0; i < b->device_count(); ++i) {
      std::optional<Device> d = parse_device(b->device(i).name);  // checked when loaded
      if (d && std::find(out.begin(), out.end(), *d) == out.end()) out.push_back(*d);
    }
  }
  return out;
}

std::optional<DeviceHandle> BackendSet::locate(const Device& device) const {
  if (device.is_cpu()) return std::nullopt;
  const Backend* b = find(device.backend);
  if (b == nullptr) return std::nullopt;
  for (int i = 0; i < b->device_count(); ++i) {
    if (b->device(i).name == device.name()) return DeviceHandle{b, i};
  }
  return std::nullopt;
}

std::vector<std::string> BackendSet::warnings() const {
  std::vector<std::string> out;
  for (const BackendRefusal& r : refused) {
    if (r.warning) out.push_back(r.message);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The loader
// ---------------------------------------------------------------------------------------------

namespace {

// Operators offered through a registrar wait here until the backend has passed every check.
struct Staging {
  ktx_op_registrar registrar{};
  std::string backend;  // its name, for the prefix check
  std::vector<OpImpl> impls;
  std::vector<std::string> problems;
  std::optional<std::string> failed;  // the backend's own fail() message
};

int staging_add(ktx_op_registrar* self, void* op_impl) noexcept {
  auto* s = static_cast<Staging*>(self->host);
  try {
    if (op_impl == nullptr) {
      s->problems.push_back("add() was given a null operator");
      return 1;
    }
    OpImpl impl = std::move(*static_cast<OpImpl*>(op_impl));
    const std::string prefix = s->backend + ".";
    if (impl.name.size() <= prefix.size() || impl.name.compare(0, prefix.size(), prefix) != 0) {
      s->problems.push_back(
          fmt::format("operator '{}' is not named '{}<implementation>'", impl.name, prefix));
      return 1;
    }
    if (!impl.create) {
      s->problems.push_back(fmt::format("operator '{}' has no create function", impl.name));
      return 1;
    }
    s->impls.push_back(std::move(impl));
    return 0;
  } catch (const std::exception& e) {
    s->problems.push_back(fmt::format("add() failed: {}", e.what()));
  } catch (...) {
    s->problems.push_back("add() failed");
  }
  return 1;
}

void staging_fail(ktx_op_registrar* self, const char* message) noexcept {
  auto* s = static_cast<Staging*>(self->host);
  try {
    s->failed = message != nullptr ? message : "(no message)";
  } catch (...) {
  }
}

bool is_module_name(std::string_view file) {
  constexpr std::string_view kPrefix = "libktx-backend-", kSuffix = ".so";
  return file.size() > kPrefix.size() + kSuffix.size() &&
         file.substr(0, kPrefix.size()) == kPrefix &&
         file.substr(file.size() - kSuffix.size()) == kSuffix;
}

// "libktx-backend-cpu-avx512.so" -> "cpu": variants of one backend share it.
std::string module_family(std::string_view file) {
  std::string_view rest = file.substr(std::string_view("libktx-backend-").size());
  rest.remove_suffix(3);
  return std::string(rest.substr(0, rest.find('-')));
}

std::string real_path(const std::string& path) {
  char buf[PATH_MAX];
  return ::realpath(path.c_str(), buf) != nullptr ? std::string(buf) : path;
}

bool is_directory(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::vector<std::string> modules_in(const std::string& dir) {
  std::vector<std::string> out;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return out;
  while (const dirent* e = ::readdir(d)) {
    if (is_module_name(e->d_name)) out.push_back(dir + "/" + e->d_name);
  }
  ::closedir(d);
  std::sort(out.begin(), out.end());
  return out;
}

std::string directory_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : path.substr(0, slash);
}

// A module file opened up to its score; the rest of the checks happen in finish().
struct OpenedModule {
  std::string path;
  void* handle = nullptr;
  ktx_backend_init_fn init = nullptr;
  int score = 0;

  OpenedModule() = default;
  OpenedModule(OpenedModule&& o) noexcept { *this = std::move(o); }
  OpenedModule& operator=(OpenedModule&& o) noexcept {
    std::swap(path, o.path);
    std::swap(handle, o.handle);
    std::swap(init, o.init);
    std::swap(score, o.score);
    return *this;
  }
  ~OpenedModule() {
    if (handle != nullptr) dlclose(handle);
  }
};

}  // namespace

class BackendLoader {
 public:
  BackendLoader(OperatorRegistry& registry, BackendSet& set) : registry_(registry), set_(set) {
    for (const auto& b : set.backends) {
      if (!b->path().empty()) seen_.insert(real_path(b->path()));
    }
    for (const BackendRefusal& r : set.refused) seen_.insert(real_path(r.path));
  }

  void add_builtin(const ktx_backend_v1& table) {
    auto backend = std::unique_ptr<Backend>(new Backend());
    backend->name_ = table.name;
    backend->score_ = 1;
    backend->table_ = &table;
    std::string why;
    if (!register_all(*backend, &why)) {
      throw Error(ErrorCode::kInternal,
                  fmt::format("the built-in backend '{}' failed to register: {}", table.name, why));
    }
    set_.backends.push_back(std::move(backend));
  }

  // One file the user named: every failure is a warning.
  bool load_file(const std::string& path) {
    if (!first_time(path)) return find_loaded(path);
    std::optional<OpenedModule> m = open(path, /*explicit_path=*/true);
    return m && finish(std::move(*m), true);
  }

  // Every libktx-backend-*.so of a folder; of the variants of one backend, the one with the
  // highest score.
  void load_dir(const std::string& dir, bool explicit_path) {
    std::map<std::string, std::vector<OpenedModule>> families;
    const std::vector<std::string> paths = modules_in(dir);
    if (paths.empty() && explicit_path) {
      // A folder the user named that holds no module is most likely the wrong folder.
      refuse(dir, fmt::format("{}: no backend module (libktx-backend-*.so) in this folder", dir),
             true);
      return;
    }
    for (const std::string& path : paths) {
      if (!first_time(path)) continue;
      std::optional<OpenedModule> m = open(path, explicit_path);
      if (m) families[module_family(path.substr(path.rfind('/') + 1))].push_back(std::move(*m));
    }
    for (auto& [family, variants] : families) {
      auto best = std::max_element(
          variants.begin(), variants.end(),
          [](const OpenedModule& a, const OpenedModule& b) { return a.score < b.score; });
      for (auto it = variants.begin(); it != variants.end(); ++it) {
        if (it == best) continue;
        refuse(it->path,
               fmt::format("{}: skipped: {} scores higher on this machine ({} > {})", it->path,
                           best->path, best->score, it->score),
               false);
      }
      finish(std::move(*best), explicit_path);
    }
  }

 private:
  bool first_time(const std::string& path) { return seen_.insert(real_path(path)).second; }

  bool find_loaded(const std::string& path) const {
    const std::string real = real_path(path);
    for (const auto& b : set_.backends) {
      if (!b->path().empty() && real_path(b->path()) == real) return true;
    }
    return false;
  }

  void refuse(const std::string& path, std::string message, bool warning) {
    set_.refused.push_back({path, std::move(message), warning});
  }

  // dlopen, both entry points, score. nullopt (and a refusal) when any fails.
  std::optional<OpenedModule> open(const std::string& path, bool explicit_path) {
    if (::access(path.c_str(), F_OK) != 0) {
      refuse(path, fmt::format("{}: backend module not found", path), true);
      return std::nullopt;
    }
    OpenedModule m;
    m.path = path;
    dlerror();
    m.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (m.handle == nullptr) {
      const char* err = dlerror();
      // Found by the search, a module whose libraries this machine lacks (CUDA on a CPU-only
      // host) is expected: a note. Named by the user, it is a warning.
      refuse(path, fmt::format("{}: cannot load backend module: {}", path, err ? err : "?"),
             explicit_path);
      return std::nullopt;
    }
    auto score = reinterpret_cast<ktx_backend_score_fn>(dlsym(m.handle, KTX_BACKEND_SCORE_SYMBOL));
    m.init = reinterpret_cast<ktx_backend_init_fn>(dlsym(m.handle, KTX_BACKEND_INIT_SYMBOL));
    if (score == nullptr || m.init == nullptr) {
      std::string missing = m.init == nullptr ? KTX_BACKEND_INIT_SYMBOL : "";
      if (score == nullptr)
        missing += std::string(missing.empty() ? "" : " and ") + KTX_BACKEND_SCORE_SYMBOL;
      refuse(path,
             fmt::format("{}: not a ktx backend module: it does not export {} (a module exports "
                         "extern \"C\" {} and {})",
                         path, missing, KTX_BACKEND_INIT_SYMBOL, KTX_BACKEND_SCORE_SYMBOL),
             true);
      return std::nullopt;
    }
    m.score = score();
    if (m.score <= 0) {
      refuse(path,
             fmt::format("{}: backend module cannot run on this machine (ktx_backend_score() "
                         "returned {})",
                         path, m.score),
             explicit_path);
      return std::nullopt;
    }
    return m;
  }

  // init, the table's checks, the operators; the module becomes a Backend or is refused.
  bool finish(OpenedModule m, bool explicit_path) {
    const std::string& path = m.path;
    const ktx_backend_v1* table = m.init(KTX_BACKEND_API_VERSION);
    if (table == nullptr) {
      refuse(path,
             fmt::format("{}: ktx_backend_init({}) returned NULL: the backend failed to "
                         "start",
                         path, KTX_BACKEND_API_VERSION),
             true);
      return false;
    }
    // Only the first two fields may be read before these two checks pass.
    if (table->api_version != KTX_BACKEND_API_VERSION) {
      refuse(path,
             fmt::format("{}: backend module was built for ktx backend API version {}, this ktx "
                         "has version {}: rebuild it against this ktx",
                         path, table->api_version, KTX_BACKEND_API_VERSION),
             true);
      return false;  // its release() may not mean what ours does: do not call it
    }
    if (table->struct_size < sizeof(ktx_backend_v1)) {
      refuse(path,
             fmt::format("{}: backend table is {} bytes (struct_size), expected at least {}", path,
                         table->struct_size, sizeof(ktx_backend_v1)),
             true);
      return false;
    }
    auto backend = std::unique_ptr<Backend>(new Backend());
    backend->path_ = path;
    backend->score_ = m.score;
    backend->table_ = table;
    backend->handle_ = std::exchange(m.handle, nullptr);  // from here ~Backend releases + closes
    if (const char* missing = missing_slot(*table)) {
      refuse(path, fmt::format("{}: backend table lacks the required slot {}", path, missing),
             true);
      return false;
    }
    backend->name_ = table->name;
    if (std::optional<std::string> bad = bad_device_names(*backend)) {
      refuse(path, fmt::format("{}: backend '{}' refused: {}", path, backend->name_, *bad), true);
      return false;
    }
    if (const Backend* other = set_.find(backend->name_)) {
      refuse(path,
             fmt::format("{}: a backend named '{}' is already loaded ({})", path, backend->name_,
                         other->builtin() ? "built in" : other->path()),
             explicit_path);
      return false;
    }
    std::string why;
    if (!register_all(*backend, &why)) {
      refuse(path, fmt::format("{}: backend '{}' refused: {}", path, backend->name_, why), true);
      return false;
    }
    // An accepted module is never unmapped (RTLD_NODELETE; dlclose then only drops a count):
    // registry entries and operators are module code, and a registry or operator that outlives
    // its BackendSet must not crash. Refused modules are unmapped as usual.
    if (void* pin = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD | RTLD_NODELETE)) {
      dlclose(pin);
    }
    set_.backends.push_back(std::move(backend));
    return true;
  }

  // Rule files and plans name devices "cpu" or "<backend>:<index>"; a module's devices must be
  // named so, or nothing could place work on them (and two modules could claim one name).
  static std::optional<std::string> bad_device_names(const Backend& backend) {
    const int n = backend.device_count();
    if (n < 0) return fmt::format("device_count() returned {}", n);
    std::set<std::string> seen;
    for (int i = 0; i < n; ++i) {
      const char* raw = backend.table().device_name(backend.table().ctx, i);
      const std::string name = raw != nullptr ? raw : "";
      std::optional<Device> d = parse_device(name);
      if (!d || (!d->is_cpu() && d->backend != backend.name())) {
        return fmt::format("its device {} is named '{}'; expected cpu or {}:<index>", i, name,
                           backend.name());
      }
      if (!seen.insert(name).second) {
        return fmt::format("two of its devices are named '{}'", name);
      }
    }
    return std::nullopt;
  }

  static const char* missing_slot(const ktx_backend_v1& t) {
    if (t.name == nullptr || t.name[0] == '\0') return "name";
    if (t.device_count == nullptr) return "device_count";
    if (t.device_name == nullptr) return "device_name";
    if (t.buffer_alloc == nullptr) return "buffer_alloc";
    if (t.buffer_free == nullptr) return "buffer_free";
    if (t.copy == nullptr) return "copy";
    if (t.host_alloc_pinned != nullptr && t.host_free_pinned == nullptr) {
      return "host_free_pinned (host_alloc_pinned is set)";
    }
    const bool any_stream = t.stream_create || t.stream_destroy || t.stream_synchronize ||
                            t.event_create || t.event_destroy || t.event_record ||
                            t.stream_wait_event;
    const bool all_stream = t.stream_create && t.stream_destroy && t.stream_synchronize &&
                            t.event_create && t.event_destroy && t.event_record &&
                            t.stream_wait_event;
    if (any_stream && !all_stream) return "stream/event (all seven or none)";
    if (t.register_operators == nullptr) return "register_operators";
    return nullptr;
  }

  // Calls register_operators into a staging area; adds everything to the registry only when
  // the whole set is acceptable. The staged operators (module code) die before any dlclose.
  bool register_all(Backend& backend, std::string* why) {
    Staging staging;
    staging.registrar.struct_size = sizeof(ktx_op_registrar);
    staging.registrar.host = &staging;
    staging.registrar.add = staging_add;
    staging.registrar.fail = staging_fail;
    staging.backend = backend.name_;
    const ktx_backend_v1& t = *backend.table_;
    try {
      t.register_operators(t.ctx, &staging.registrar);
    } catch (const std::exception& e) {
      *why = fmt::format("register_operators threw an exception: {}", e.what());
      return false;
    } catch (...) {
      *why = "register_operators threw an exception that is not a std::exception";
      return false;
    }
    if (staging.failed) {
      *why = fmt::format("it reported: {}", *staging.failed);
      return false;
    }
    if (!staging.problems.empty()) {
      *why = fmt::format("{}", fmt::join(staging.problems, "; "));
      return false;
    }
    if (staging.impls.empty()) {
      *why = "it registered no operators";
      return false;
    }
    std::set<std::string> names;
    std::vector<std::string> duplicates;
    for (const OpImpl& impl : staging.impls) {
      if (!names.insert(impl.name).second) {
        duplicates.push_back(fmt::format("'{}' is offered twice", impl.name));
      } else if (registry_.find(impl.name) != nullptr) {
        duplicates.push_back(fmt::format("'{}' is already registered", impl.name));
      }
    }
    if (!duplicates.empty()) {
      *why = fmt::format("duplicate operator names: {}", fmt::join(duplicates, ", "));
      return false;
    }
    for (OpImpl& impl : staging.impls) {
      backend.operators_.push_back(impl.name);
      registry_.add(std::move(impl));
    }
    std::sort(backend.operators_.begin(), backend.operators_.end());
    return true;
  }

  OperatorRegistry& registry_;
  BackendSet& set_;
  std::set<std::string> seen_;  // real paths already considered
};

// ---------------------------------------------------------------------------------------------

std::vector<std::string> default_backend_dirs() {
  std::vector<std::string> bases;
  {
    char buf[PATH_MAX];
    const ssize_t n = ::readlink("/proc/self/exe", buf, sizeof(buf) - 1);
    if (n > 0) bases.push_back(directory_of(std::string(buf, static_cast<size_t>(n))));
  }
  Dl_info info{};
  if (dladdr(reinterpret_cast<const void*>(&default_backend_dirs), &info) != 0 &&
      info.dli_fname != nullptr && std::strchr(info.dli_fname, '/') != nullptr) {
    bases.push_back(directory_of(real_path(info.dli_fname)));  // a library holding ktx
  }
  std::vector<std::string> dirs;
  for (const std::string& base : bases) {
    for (const char* rel :
         {"/backends", "/../backends", "/../lib/ktx/backends", "/../lib64/ktx/backends",
#ifdef KTX_INSTALL_LIBDIR  // e.g. lib/x86_64-linux-gnu (GNUInstallDirs on Debian)
          "/../" KTX_INSTALL_LIBDIR "/ktx/backends",
#endif
          "/ktx/backends"}) {
      const std::string dir = std::filesystem::path(base + rel).lexically_normal().string();
      if (std::find(dirs.begin(), dirs.end(), dir) == dirs.end()) dirs.push_back(dir);
    }
  }
  return dirs;
}

bool load_backend_module(OperatorRegistry& registry, BackendSet& set, const std::string& path) {
  BackendLoader loader(registry, set);
  return loader.load_file(path);
}

std::vector<std::string> split_path_list(const char* text) {
  std::vector<std::string> out;
  if (text == nullptr) return out;
  std::string_view rest(text);
  while (!rest.empty()) {
    const size_t colon = rest.find(':');
    const std::string_view item = rest.substr(0, colon);
    if (!item.empty()) out.emplace_back(item);
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  return out;
}

BackendSet load_backends(OperatorRegistry& registry, const BackendLoadOptions& options) {
  BackendSet set;
  BackendLoader loader(registry, set);
  loader.add_builtin(kCpuTable);
  std::vector<std::string> explicit_paths = options.paths;
  if (options.search_default_dirs) {
    for (std::string& p : split_path_list(std::getenv("KTX_BACKEND_PATH"))) {
      explicit_paths.push_back(std::move(p));
    }
  }
  for (const std::string& path : explicit_paths) {
    if (is_directory(path)) {
      loader.load_dir(path, /*explicit_path=*/true);
    } else {
      loader.load_file(path);
    }
  }
  if (options.search_default_dirs) {
    std::set<std::string> searched;
    for (const std::string& dir : default_backend_dirs()) {
      if (!is_directory(dir) || !searched.insert(real_path(dir)).second) continue;
      loader.load_dir(dir, /*explicit_path=*/false);
    }
  }
  return set;
}

}  // namespace ktx::registry
