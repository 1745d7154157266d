// One source, many deliberately broken backend modules (tests/unit/test_backends.cpp): each
// build defines KTX_TEST_DEFECT to one of the kDefect* values below, KTX_TEST_NAME to the
// backend's name and KTX_TEST_SCORE to what ktx_backend_score returns.
#include <cstdlib>
#include <cstring>
#include <memory>
#include <stdexcept>

#include "ktx/backend.h"
#include "ktx/error.h"
#include "ops/operator.h"
#include "registry/backend_loader.h"

#define kDefectNone 0
#define kDefectApiVersion 1   // table says api_version 999
#define kDefectNoInit 2       // ktx_backend_init is not exported
#define kDefectStructSize 3   // struct_size 0
#define kDefectThrows 4       // register_operators throws
#define kDefectDuplicate 5    // offers the same operator name twice
#define kDefectFail 6         // register_operators calls registrar->fail
#define kDefectInitNull 7     // ktx_backend_init returns NULL
#define kDefectBadName 8      // an operator outside "<name>."
#define kDefectMissingSlot 9  // no buffer_alloc
#define kDefectDeviceName 10  // its device is named "gpu0", not "cpu" or "<name>:<index>"

namespace {

int device_count(void*) { return 1; }
#if KTX_TEST_DEFECT == kDefectDeviceName
const char* device_name(void*, int) { return "gpu0"; }
#else
const char* device_name(void*, int) { return "cpu"; }
#endif
[[maybe_unused]] void* buffer_alloc(void*, int, size_t size) {
  return std::malloc(size == 0 ? 1 : size);
}
void buffer_free(void*, int, void* p) { std::free(p); }
int copy(void*, int, void* dst, const void* src, size_t n, ktx_copy_kind, ktx_backend_stream) {
  std::memcpy(dst, src, n);
  return 0;
}

// An RMSNorm that only says its name: enough to be registered and created.
class Norm final : public ktx::ops::RmsNormOp {
 public:
  std::string impl_name() const override { return KTX_TEST_NAME ".rms_norm"; }
  void forward(ktx::ops::ExecContext&, int64_t, const float*, float*) override {}
};

[[maybe_unused]] ktx::registry::OpImpl norm_impl(const char* name) {
  return {name,
          ktx::model::ModuleKind::kRmsNorm,
          ktx::registry::DeviceKind::kCpu,
          "test operator",
          nullptr,
          [](const ktx::registry::OpCreateArgs& a) -> std::unique_ptr<ktx::ops::Operator> {
            // A ktx::Error thrown from this module's copy of the core must be caught as
            // ktx::Error by the host.
            if (!a.options.empty()) {
              throw ktx::Error(ktx::ErrorCode::kUnsupported,
                               KTX_TEST_NAME ".rms_norm takes no options");
            }
            return std::make_unique<Norm>();
          }};
}

void register_operators(void*, ktx_op_registrar* r) {
#if KTX_TEST_DEFECT == kDefectThrows
  (void)r;
  throw std::runtime_error("the test module's register_operators throws on purpose");
#elif KTX_TEST_DEFECT == kDefectFail
  ktx::registry::add_operator(r, norm_impl(KTX_TEST_NAME ".rms_norm"));
  r->fail(r, "no usable device found (test)");
#elif KTX_TEST_DEFECT == kDefectDuplicate
  ktx::registry::add_operator(r, norm_impl(KTX_TEST_NAME ".rms_norm"));
  ktx::registry::add_operator(r, norm_impl(KTX_TEST_NAME ".rms_norm"));
#elif KTX_TEST_DEFECT == kDefectBadName
  ktx::registry::add_operator(r, norm_impl("cpu.rms_norm_from_a_module"));
#else
  ktx::registry::add_operator(r, norm_impl(KTX_TEST_NAME ".rms_norm"));
#endif
}

int released = 0;
void release(void*) { ++released; }
int released_count() { return released; }
void* get_proc_address(void*, const char* name) {
  return std::strcmp(name, "test_released_count") == 0 ? reinterpret_cast<void*>(&released_count)
                                                       : nullptr;
}

const ktx_backend_v1 kTable = {
#if KTX_TEST_DEFECT == kDefectApiVersion
    999u,
#else
    KTX_BACKEND_API_VERSION,
#endif
#if KTX_TEST_DEFECT == kDefectStructSize
    0u,
#else
    sizeof(ktx_backend_v1),
#endif
    KTX_TEST_NAME,
    "a test backend",
    device_count,
    device_name,
    nullptr,
    nullptr,
#if KTX_TEST_DEFECT == kDefectMissingSlot
    nullptr,
#else
    buffer_alloc,
#endif
    buffer_free,
    copy,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    nullptr,
    register_operators,
    get_proc_address,
    release,
    nullptr,
};

}  // namespace

extern "C" KTX_BACKEND_EXPORT int ktx_backend_score(void) { return KTX_TEST_SCORE; }

#if KTX_TEST_DEFECT != kDefectNoInit
extern "C" KTX_BACKEND_EXPORT const ktx_backend_v1* ktx_backend_init(uint32_t) {
#if KTX_TEST_DEFECT == kDefectInitNull
  return nullptr;
#else
  return &kTable;
#endif
}
#endif
