// GPU dequantization against the CPU reference: every supported type, fresh random blocks,
// awkward row counts, NaN-poisoned outputs, and a bit-for-bit comparison (both sides use the same
// operation order without FMA contraction). Without a GPU it prints "skipped: no GPU" and exits
// 77, which ctest reports as skipped.
#include <cuda_runtime_api.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "dequantize.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"

namespace {

#define CHECK_CUDA(call)                                                                   \
  do {                                                                                     \
    cudaError_t err_ = (call);                                                             \
    if (err_ != cudaSuccess) {                                                             \
      std::fprintf(stderr, "%s:%d: %s: %s\n", __FILE__, __LINE__, #call,                   \
                   cudaGetErrorString(err_));                                              \
      return false;                                                                        \
    }                                                                                      \
  } while (0)

// Random but valid storage for `rows` rows of `type`: quantize random floats with the reference
// quantizer where it exists, so every half-precision scale is finite.
std::vector<uint8_t> random_rows(ktx::TensorType type, int64_t rows, int64_t row_length,
                                 std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  const size_t row_bytes = ktx::row_size(type, row_length);
  std::vector<uint8_t> out(row_bytes * static_cast<size_t>(rows));
  std::vector<float> x(static_cast<size_t>(row_length));
  for (int64_t r = 0; r < rows; ++r) {
    for (float& v : x) v = dist(rng) * (1.0f + static_cast<float>(r % 5));
    ktx::quant::quantize_row(type, x.data(), out.data() + static_cast<size_t>(r) * row_bytes,
                             row_length);
  }
  return out;
}

bool check_type(ktx::TensorType type, int64_t rows, int64_t row_length, std::mt19937& rng) {
  const std::vector<uint8_t> host = random_rows(type, rows, row_length, rng);
  const size_t n = static_cast<size_t>(rows * row_length);
  std::vector<float> want(n), got(n, std::nanf(""));
  const size_t row_bytes = ktx::row_size(type, row_length);
  for (int64_t r = 0; r < rows; ++r) {
    ktx::quant::dequantize_row(type, host.data() + static_cast<size_t>(r) * row_bytes,
                               want.data() + r * row_length, row_length);
  }
  void* d_src = nullptr;
  float* d_dst = nullptr;
  CHECK_CUDA(cudaMalloc(&d_src, host.size() + 1));
  CHECK_CUDA(cudaMalloc(reinterpret_cast<void**>(&d_dst), n * sizeof(float) + 4));
  CHECK_CUDA(cudaMemcpy(d_src, host.data(), host.size(), cudaMemcpyHostToDevice));
  CHECK_CUDA(cudaMemcpy(d_dst, got.data(), n * sizeof(float), cudaMemcpyHostToDevice));  // NaNs
  CHECK_CUDA(ktx::cuda::dequantize_rows(type, d_src, d_dst, rows, row_length, nullptr));
  CHECK_CUDA(cudaDeviceSynchronize());
  CHECK_CUDA(cudaMemcpy(got.data(), d_dst, n * sizeof(float), cudaMemcpyDeviceToHost));
  cudaFree(d_src);
  cudaFree(d_dst);
  for (size_t i = 0; i < n; ++i) {
    if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
      std::fprintf(stderr, "%s rows=%lld len=%lld: element %zu: gpu %.9g, reference %.9g\n",
                   std::string(ktx::type_name(type)).c_str(), static_cast<long long>(rows),
                   static_cast<long long>(row_length), i, got[i], want[i]);
      return false;
    }
  }
  return true;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    std::printf("skipped: no GPU\n");
    return 77;
  }
  const unsigned seed = std::random_device{}();
  std::printf("seed %u\n", seed);
  std::mt19937 rng(seed);
  using ktx::TensorType;
  const TensorType types[] = {TensorType::F32,  TensorType::F16,  TensorType::BF16,
                              TensorType::Q4_0, TensorType::Q5_0, TensorType::Q8_0,
                              TensorType::Q4_K, TensorType::Q5_K, TensorType::Q6_K,
                              TensorType::IQ4_NL};
  int failures = 0;
  for (TensorType type : types) {
    const int64_t block = ktx::traits(type).block_size == 1 ? 32 : ktx::traits(type).block_size;
    for (int64_t rows : {1, 3, 17}) {
      for (int64_t blocks : {1, 3, 11}) {
        if (!check_type(type, rows, blocks * block, rng)) ++failures;
      }
    }
    if (ktx::cuda::dequantize_rows(type, nullptr, nullptr, 1, block + 1, nullptr) !=
            cudaErrorInvalidValue &&
        ktx::traits(type).block_size > 1) {
      std::fprintf(stderr, "%s: a partial block was not refused\n",
                   std::string(ktx::type_name(type)).c_str());
      ++failures;
    }
  }
  if (ktx::cuda::dequantize_rows(TensorType::Q2_K, nullptr, nullptr, 1, 256, nullptr) !=
      cudaErrorNotSupported) {
    std::fprintf(stderr, "Q2_K was not reported as unsupported\n");
    ++failures;
  }
  std::printf("%d passed, %d failed\n", failures == 0 ? 1 : 0, failures);
  return failures == 0 ? 0 : 1;
}
