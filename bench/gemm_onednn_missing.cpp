// gemm_onednn.h for builds without oneDNN: bench_gemm then reports its own kernels only.
#include "gemm_onednn.h"

namespace ktx::bench {

bool onednn_available() { return false; }

double onednn_seconds(OnednnKind, int64_t, int64_t, int64_t, int, int, double, std::string*) {
  return -1;
}

}  // namespace ktx::bench
