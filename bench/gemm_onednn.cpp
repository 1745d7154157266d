// oneDNN matmuls for bench_gemm (gemm_onednn.h). Built only when CMake finds oneDNN (libdnnl-dev);
// otherwise gemm_onednn_missing.cpp stands in. The Debian package's oneDNN runs on OpenMP, so the
// thread count is set with omp_set_num_threads.
#include "gemm_onednn.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <dnnl.hpp>
#include <random>
#include <vector>

namespace ktx::bench {

bool onednn_available() { return true; }

double onednn_seconds(OnednnKind kind, int64_t rows, int64_t cols, int64_t tokens, int threads,
                      int repeats, double seconds, std::string* impl) {
  using dnnl::memory;
  using dt = memory::data_type;
  using tag = memory::format_tag;
  try {
    omp_set_num_threads(threads);
    dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    dnnl::stream stream(engine);
    dt src_type = dt::bf16, wei_type = dt::bf16, dst_type = dt::f32;
    size_t elt = 2;
    switch (kind) {
      case OnednnKind::kS8:
        src_type = dt::u8, wei_type = dt::s8, dst_type = dt::s32, elt = 1;
        break;
      case OnednnKind::kBf16:
        break;
      case OnednnKind::kF32:
        src_type = wei_type = dt::f32, elt = 4;
        break;
      case OnednnKind::kF16:
        src_type = wei_type = dt::f16;
        break;
    }
    // Activations [tokens × cols] row-major; weights as ktx stores them, one row of `cols` per
    // output ([cols × rows] with "ba": column-major), reordered to whatever layout oneDNN wants.
    const memory::desc src_md({tokens, cols}, src_type, tag::ab);
    const memory::desc wei_plain({cols, rows}, wei_type, tag::ba);
    const memory::desc wei_any({cols, rows}, wei_type, tag::any);
    const memory::desc dst_md({tokens, rows}, dst_type, tag::ab);
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(src_md, wei_any, dst_md), engine);
    if (impl != nullptr) *impl = pd.impl_info_str();

    memory src(src_md, engine), wei_user(wei_plain, engine), wei(pd.weights_desc(), engine),
        dst(dst_md, engine);
    std::mt19937 gen(7);
    // Small finite values: bytes of 0..63 (int8; bf16 below 1), f32 in [-1, 1], f16 in ±[1, 2).
    auto fill = [&](memory& m, size_t bytes) {
      auto* p = static_cast<uint8_t*>(m.get_data_handle());
      if (kind == OnednnKind::kF32) {
        std::uniform_real_distribution<float> u(-1.0f, 1.0f);
        for (size_t i = 0; i < bytes / 4; ++i) reinterpret_cast<float*>(p)[i] = u(gen);
      } else if (kind == OnednnKind::kF16) {
        for (size_t i = 0; i < bytes / 2; ++i)
          reinterpret_cast<uint16_t*>(p)[i] = static_cast<uint16_t>(0x3C00 | (gen() & 0x83FF));
      } else {
        for (size_t i = 0; i < bytes; ++i) p[i] = static_cast<uint8_t>(gen() & 0x3F);
      }
    };
    fill(src, static_cast<size_t>(tokens * cols) * elt);
    fill(wei_user, static_cast<size_t>(rows * cols) * elt);
    dnnl::reorder(wei_user, wei).execute(stream, wei_user, wei);  // once, as at load
    stream.wait();

    const dnnl::matmul matmul(pd);
    auto run = [&] {
      matmul.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
      stream.wait();
    };
    run();  // warm up: threads, caches
    using clock = std::chrono::steady_clock;
    int64_t iters = 1;
    for (;;) {
      const auto t0 = clock::now();
      for (int64_t i = 0; i < iters; ++i) run();
      const double s = std::chrono::duration<double>(clock::now() - t0).count();
      if (s > seconds / 4) {
        iters =
            std::max<int64_t>(1, static_cast<int64_t>(static_cast<double>(iters) * seconds / s));
        break;
      }
      iters *= 4;
    }
    double best = 1e30;
    for (int r = 0; r < repeats; ++r) {
      const auto t0 = clock::now();
      for (int64_t i = 0; i < iters; ++i) run();
      best = std::min(best, std::chrono::duration<double>(clock::now() - t0).count() /
                                static_cast<double>(iters));
    }
    return best;
  } catch (const dnnl::error& e) {
    std::fprintf(stderr, "oneDNN: %s (status %d)\n", e.what(), static_cast<int>(e.status));
    return -1;
  }
}

}  // namespace ktx::bench
