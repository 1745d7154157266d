#include "ops/cpu/onednn_matmul.h"

#include <cstdlib>
#include <cstring>

#if defined(KTX_HAVE_ONEDNN)
#include <fmt/format.h>
#include <omp.h>

#include <algorithm>
#include <dnnl.hpp>
#include <map>
#include <tuple>

#include "kernels/cpu/cpu_features.h"
#include "ktx/error.h"
#endif

namespace ktx::ops::cpu {

#if defined(KTX_HAVE_ONEDNN)

namespace {

// Below these, ktx's own GEMM is as fast: oneDNN's fixed cost per call, and the JIT compilation
// of each new slice shape (milliseconds, once per thread and shape; the F32 MoE router of
// 2048 × 64 lost 10x on it in a single prefill).
constexpr int64_t kMinTokens = 8;
constexpr int64_t kMinWeights = int64_t{1} << 20;
// Slices of rows per pool thread: a few, so that a thread slowed by another process holds little
// at the end; always the same split for a shape, so oneDNN's primitive cache serves every call.
constexpr int64_t kSlicesPerThread = 2;
constexpr int64_t kSliceAlign = 16;

// A matmul for one weight slice shape, the token count and strides left to run time, so that
// one primitive (oneDNN JIT-compiles each) serves every batch size.
struct SliceShape {
  TensorType type;
  int64_t cols, rows, row_elems;
  bool operator<(const SliceShape& o) const {
    return std::tie(type, cols, rows, row_elems) < std::tie(o.type, o.cols, o.rows, o.row_elems);
  }
};

// One oneDNN engine, stream and set of primitives per thread, created on first use.
struct ThreadContext {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  dnnl::stream stream{engine};
  std::map<SliceShape, dnnl::matmul> products;
};

ThreadContext& thread_context() {
  thread_local ThreadContext context;
  return context;
}

// OpenMP limited to this thread for the scope, then put back: the calling thread (which works in
// parallel_for too) belongs to the host application, whose OpenMP settings ktx must not change.
class OneOpenMpThread {
 public:
  OneOpenMpThread() : saved_(omp_get_max_threads()) { omp_set_num_threads(1); }
  ~OneOpenMpThread() { omp_set_num_threads(saved_); }
  OneOpenMpThread(const OneOpenMpThread&) = delete;
  OneOpenMpThread& operator=(const OneOpenMpThread&) = delete;

 private:
  int saved_;
};

using dt = dnnl::memory::data_type;
using dims = dnnl::memory::dims;

dt data_type(TensorType t) { return t == TensorType::BF16 ? dt::bf16 : dt::f32; }
size_t elem_bytes(TensorType t) { return t == TensorType::BF16 ? 2 : 4; }

dnnl::memory::desc weights_desc(const SliceShape& k) {
  return {dims{k.cols, k.rows}, data_type(k.type), dims{1, k.row_elems}};
}

// This thread's primitive for a slice shape, created on first use: weights as a column-major
// [cols × rows] matrix (each weight row is one column), activations [n × cols] row-major, outputs
// with a stride between tokens; n and the strides given at each call. Throws dnnl::error when
// oneDNN cannot do the product on this CPU (bf16 needs AVX-512 in oneDNN 2.6).
const dnnl::matmul& primitive(ThreadContext& c, const SliceShape& k) {
  auto it = c.products.find(k);
  if (it == c.products.end()) {
    const int64_t rt = DNNL_RUNTIME_DIM_VAL;
    const dnnl::memory::desc src_any(dims{rt, k.cols}, data_type(k.type), dims{rt, 1});
    const dnnl::memory::desc dst_any(dims{rt, k.rows}, dt::f32, dims{rt, 1});
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_any, weights_desc(k), dst_any),
                                          c.engine);
    it = c.products.emplace(k, dnnl::matmul(pd)).first;
  }
  return it->second;
}

SliceShape slice_shape(const WeightMatrix& w, int64_t rows) {
  return {w.type, w.cols, rows, static_cast<int64_t>(w.row_bytes / elem_bytes(w.type))};
}

// y[t * ldy + (r - r0)] for rows [r0, r1).
void run_slice(const WeightMatrix& w, int64_t r0, int64_t r1, const QuantizedRows& x, int64_t n,
               float* y, int64_t ldy) {
  const OneOpenMpThread one_thread;
  ThreadContext& c = thread_context();
  const SliceShape k = slice_shape(w, r1 - r0);
  const dnnl::matmul& product = primitive(c, k);
  const auto x_elems = static_cast<int64_t>(row_size(x.type(), x.cols()) / elem_bytes(w.type));
  // oneDNN only reads the source and weights; its API takes them as non-const handles.
  dnnl::memory src({dims{n, w.cols}, data_type(w.type), dims{x_elems, 1}}, c.engine,
                   const_cast<void*>(x.row(0)));
  dnnl::memory wei(weights_desc(k), c.engine, const_cast<uint8_t*>(w.row(r0)));
  dnnl::memory dst({dims{n, k.rows}, dt::f32, dims{ldy, 1}}, c.engine, y);
  product.execute(c.stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
  c.stream.wait();
}

// Equal slices, whole multiples of kSliceAlign rows (the last one shorter).
int64_t slice_rows(const WeightMatrix& w, int threads) {
  const int64_t want = kSlicesPerThread * threads;
  return std::max<int64_t>(kSliceAlign, (w.rows + want - 1) / want + kSliceAlign - 1) /
         kSliceAlign * kSliceAlign;
}

}  // namespace

bool onednn_enabled() {
  static const bool enabled = [] {
    const char* env = std::getenv("KTX_ONEDNN");
    const kernels::cpu::Isa isa = kernels::cpu::selected_isa();
    if ((env != nullptr && std::strcmp(env, "0") == 0) || isa == kernels::cpu::Isa::kScalar) {
      return false;
    }
    // KTX_CPU_ISA=avx2 caps oneDNN's code too (it must be said before oneDNN compiles anything;
    // if the host application already set a cap, that one stays).
    if (isa == kernels::cpu::Isa::kAvx2) {
      try {
        dnnl::set_max_cpu_isa(dnnl::cpu_isa::avx2);
      } catch (const dnnl::error&) {
      }
    }
    return true;
  }();
  return enabled;
}

bool onednn_takes(const WeightMatrix& w, const QuantizedRows& x, int64_t n) {
  if (!onednn_enabled() || n < kMinTokens || w.rows * w.cols < kMinWeights) return false;
  if (x.type() != w.type) return false;
  if (w.type == TensorType::F32) return true;
  // bf16 products are AVX-512 code in oneDNN: not below the tier KTX_CPU_ISA allows.
  return w.type == TensorType::BF16 &&
         kernels::cpu::selected_isa() == kernels::cpu::Isa::kAvx512Vnni;
}

bool onednn_matmul(runtime::ThreadPool& pool, const WeightMatrix& w, const QuantizedRows& x,
                   int64_t n, float* y, int64_t ldy) {
  if (!onednn_takes(w, x, n)) return false;
  const int64_t per = slice_rows(w, pool.size());
  const int64_t slices = (w.rows + per - 1) / per;
  // The primitives are made here first (on this thread; the workers make their own from oneDNN's
  // cache): a shape oneDNN cannot do on this CPU leaves the product to ktx's kernels, unwritten.
  try {
    const OneOpenMpThread one_thread;
    primitive(thread_context(), slice_shape(w, per));
    if (w.rows % per != 0) primitive(thread_context(), slice_shape(w, w.rows % per));
  } catch (const dnnl::error&) {
    return false;
  }
  pool.parallel_for(slices, 1, [&](int64_t s0, int64_t s1) {
    for (int64_t s = s0; s < s1; ++s) {
      const int64_t r0 = s * per, r1 = std::min(w.rows, r0 + per);
      try {
        run_slice(w, r0, r1, x, n, y + r0, ldy);
      } catch (const dnnl::error& e) {
        throw Error(ErrorCode::kInternal,
                    fmt::format("{}: oneDNN failed on a {} product of {} tokens × {} columns × {} "
                                "rows: {} (status {}); KTX_ONEDNN=0 turns oneDNN off",
                                w.name(), type_name(w.type), n, w.cols, r1 - r0, e.what(),
                                static_cast<int>(e.status)));
      }
    }
  });
  return true;
}

#else  // no oneDNN in this build

bool onednn_enabled() { return false; }

bool onednn_takes(const WeightMatrix&, const QuantizedRows&, int64_t) { return false; }

bool onednn_matmul(runtime::ThreadPool&, const WeightMatrix&, const QuantizedRows&, int64_t, float*,
                   int64_t) {
  return false;
}

#endif

}  // namespace ktx::ops::cpu
