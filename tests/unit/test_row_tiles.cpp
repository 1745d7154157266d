// Row tiles (quant/row_tiles.h), their AVX-512 kernels (kernels/cpu/row_tiles_avx512.cpp) and
// the operators' copies (ops/cpu/repacked.h):
// repacking is exact and reversible, and every tile kernel gives each row the scalar reference's
// dot bit for bit (no tolerance: each lane repeats the reference's operations in its order). Fresh
// random data every run (KTX_TEST_SEED=<n> replays one), outputs poisoned with NaN and guarded
// beyond the last tile, rows of awkward lengths.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_features.h"
#include "kernels/cpu/gemm.h"
#include "kernels/cpu/isa_kernels.h"
#include "kernels/cpu/vec_dot.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/tensor_type.h"
#include "ops/cpu/linear.h"
#include "ops/cpu/repacked.h"
#include "quant/blocks.h"
#include "quant/row_tiles.h"

namespace {

namespace q = ktx::quant;
namespace cpu = ktx::kernels::cpu;
using ktx::TensorType;

constexpr TensorType kTypes[] = {TensorType::Q4_K, TensorType::Q6_K, TensorType::Q5_0,
                                 TensorType::Q8_0};

uint32_t seed() {
  if (const char* s = std::getenv("KTX_TEST_SEED")) {
    return static_cast<uint32_t>(std::strtoul(s, nullptr, 10));
  }
  return std::random_device{}();
}

int64_t block_elements(TensorType t) { return ktx::traits(t).block_size; }

// `rows` rows of `n` elements quantized from gaussians whose size changes every 16 elements (so
// the sub-block scales differ), as a weight file holds them.
std::vector<uint8_t> quantized_rows(TensorType t, int64_t rows, int64_t n, std::mt19937& g) {
  const size_t row_bytes = ktx::row_size(t, n);
  std::vector<uint8_t> out(row_bytes * static_cast<size_t>(rows));
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> size(0.01f, 4.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t i = 0; i < n; i += 16) {
      const float s = size(g);
      for (int64_t j = i; j < i + 16; ++j) x[static_cast<size_t>(j)] = s * normal(g);
    }
    q::quantize_row(t, x.data(), out.data() + static_cast<size_t>(r) * row_bytes, n);
  }
  return out;
}

std::vector<uint8_t> tiles_of(TensorType t, int64_t n, const std::vector<uint8_t>& rows) {
  std::vector<uint8_t> tiles(rows.size());
  const auto n_rows = static_cast<int64_t>(rows.size() / ktx::row_size(t, n));
  q::pack_row_tiles(t, n, n_rows, rows.data(), tiles.data());
  return tiles;
}

bool same_bits(float a, float b) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  return std::memcmp(&a, &b, sizeof a) == 0;
}

}  // namespace

TEST_CASE("row tiles: repacking is exact and reversible, any bytes", "[cpu_kernels][row_tiles]") {
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  std::uniform_int_distribution<int> byte(0, 255);
  for (TensorType t : kTypes) {
    INFO(ktx::type_name(t));
    for (int64_t blocks : {1, 3, 8}) {
      const int64_t n = blocks * block_elements(t);
      const size_t row_bytes = ktx::row_size(t, n);
      // Arbitrary bytes, not only what a quantizer writes: every bit of a block must survive.
      std::vector<uint8_t> rows(row_bytes * q::kTileRows);
      for (uint8_t& b : rows) b = static_cast<uint8_t>(byte(g));
      std::vector<uint8_t> tile(rows.size(), 0xA5), back(rows.size(), 0x5A);
      q::pack_row_tile(t, n, rows.data(), row_bytes, tile.data());
      q::unpack_row_tile(t, n, tile.data(), back.data(), row_bytes);
      CHECK(back == rows);
      // Row stride larger than a row: the rows' gaps are neither read into the tile nor written.
      std::vector<uint8_t> spaced(2 * rows.size(), 0x11);
      q::unpack_row_tile(t, n, tile.data(), spaced.data(), 2 * row_bytes);
      for (int64_t r = 0; r < q::kTileRows; ++r) {
        const auto* row = spaced.data() + 2 * row_bytes * static_cast<size_t>(r);
        CHECK(std::memcmp(row, rows.data() + row_bytes * static_cast<size_t>(r), row_bytes) == 0);
        for (size_t i = row_bytes; i < 2 * row_bytes; ++i) CHECK(row[i] == 0x11);
      }
    }
  }
}

TEST_CASE("row tiles: the reference tile dot is the reference row dot",
          "[cpu_kernels][row_tiles]") {
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  for (TensorType t : kTypes) {
    INFO(ktx::type_name(t));
    const int64_t n = 3 * block_elements(t);
    const size_t row_bytes = ktx::row_size(t, n);
    const std::vector<uint8_t> rows = quantized_rows(t, q::kTileRows, n, g);
    const std::vector<uint8_t> tile = tiles_of(t, n, rows);
    const TensorType yt = *q::vec_dot_type(t);
    std::vector<float> x(static_cast<size_t>(n));
    std::normal_distribution<float> normal;
    for (float& v : x) v = normal(g);
    std::vector<uint8_t> y(ktx::row_size(yt, n));
    q::quantize_row(yt, x.data(), y.data(), n);
    float out[q::kTileRows];
    q::vec_dot_row_tile_ref(t, n, tile.data(), y.data(), out);
    for (int64_t r = 0; r < q::kTileRows; ++r) {
      const float want =
          q::vec_dot(t, n, rows.data() + static_cast<size_t>(r) * row_bytes, y.data());
      CHECK(same_bits(out[r], want));
    }
  }
}

TEST_CASE("row tiles: AVX-512 kernels equal the reference bit for bit",
          "[cpu_kernels][row_tiles]") {
  if (!cpu::isa_available(cpu::Isa::kAvx512Vnni)) {
    WARN("this CPU lacks AVX-512 VNNI: the row-tile kernels are not tested");
    return;
  }
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  std::normal_distribution<float> normal;
  for (TensorType t : kTypes) {
    const cpu::VecDotTilesFn fn = cpu::isa_vec_dot_tiles(cpu::Isa::kAvx512Vnni, t);
    REQUIRE(fn != nullptr);
    const TensorType yt = *q::vec_dot_type(t);
    // 1, 3, 7 and 44 blocks (V2-Lite's expert down rows are 44 Q5_0 / Q8_0 blocks); 1 to 3 tiles.
    for (int64_t blocks : {1, 3, 7, 44}) {
      for (int64_t n_tiles : {1, 2, 3}) {
        INFO(ktx::type_name(t) << ", " << blocks << " blocks a row, " << n_tiles << " tiles");
        const int64_t n = blocks * block_elements(t);
        const int64_t rows = n_tiles * q::kTileRows;
        const size_t row_bytes = ktx::row_size(t, n);
        std::vector<uint8_t> w = quantized_rows(t, rows, n, g);
        if (blocks == 3 && n_tiles == 2) {
          // A NaN scale in one row's middle block poisons that row only.
          const uint16_t nan_half = 0x7E00;
          // (d is the first field of the blocks but Q6_K's, where it is the last.)
          const size_t d_at = t == TensorType::Q6_K ? offsetof(q::BlockQ6_K, d) : 0;
          std::memcpy(w.data() + 21 * row_bytes + ktx::row_size(t, block_elements(t)) + d_at,
                      &nan_half, 2);
        }
        const std::vector<uint8_t> tiles = tiles_of(t, n, w);
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(g);
        std::vector<uint8_t> y(ktx::row_size(yt, n));
        q::quantize_row(yt, x.data(), y.data(), n);
        // Poisoned, with a guard tile after the last.
        std::vector<float> out(static_cast<size_t>(rows + q::kTileRows),
                               std::numeric_limits<float>::quiet_NaN());
        const float guard = -12345.0f;
        std::fill(out.begin() + rows, out.end(), guard);
        fn(n, tiles.data(), q::kTileRows * row_bytes, n_tiles, y.data(), out.data());
        for (int64_t r = 0; r < rows; ++r) {
          const float want =
              q::vec_dot(t, n, w.data() + static_cast<size_t>(r) * row_bytes, y.data());
          INFO("row " << r << ": " << out[static_cast<size_t>(r)] << " vs " << want);
          CHECK(same_bits(out[static_cast<size_t>(r)], want));
          if (blocks == 3 && n_tiles == 2)
            CHECK(std::isnan(out[static_cast<size_t>(r)]) == (r == 21));
          if (blocks != 3 || n_tiles != 2 || r != 21)
            CHECK(std::isfinite(out[static_cast<size_t>(r)]));
        }
        for (size_t i = static_cast<size_t>(rows); i < out.size(); ++i) CHECK(out[i] == guard);
      }
    }
  }
}

namespace {

// One activation row of `n` elements of type yt: quantized from gaussians, or (raw) codes drawn
// uniformly from the whole int8 range, -128 included, with a random scale and the block sums a
// Q8_K row carries (quantize_row_q8_K's invariant, which the kernels' panels rely on).
std::vector<uint8_t> activation_row(TensorType yt, int64_t n, bool raw, std::mt19937& g) {
  std::vector<uint8_t> y(ktx::row_size(yt, n));
  if (!raw) {
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(n));
    for (float& v : x) v = normal(g);
    q::quantize_row(yt, x.data(), y.data(), n);
    return y;
  }
  std::uniform_int_distribution<int> code(-128, 127);
  std::uniform_real_distribution<float> scale(-2.0f, 2.0f);
  if (yt == TensorType::Q8_K) {
    auto* b = reinterpret_cast<q::BlockQ8_K*>(y.data());
    for (int64_t i = 0; i < n / q::kQK_K; ++i) {
      b[i].d = scale(g);
      for (int j = 0; j < q::kQK_K; ++j) b[i].qs[j] = static_cast<int8_t>(code(g));
      for (int j = 0; j < q::kQK_K / 16; ++j) {
        int sum = 0;
        for (int k = 0; k < 16; ++k) sum += b[i].qs[16 * j + k];
        b[i].bsums[j] = static_cast<int16_t>(sum);
      }
    }
  } else {
    auto* b = reinterpret_cast<q::BlockQ8_0*>(y.data());
    std::uniform_int_distribution<int> half(0, 0x7BFF);  // finite halves, sign bit clear
    for (int64_t i = 0; i < n / q::kQK8_0; ++i) {
      b[i].d = static_cast<uint16_t>(half(g));
      for (int j = 0; j < q::kQK8_0; ++j) b[i].qs[j] = static_cast<int8_t>(code(g));
    }
  }
  return y;
}

}  // namespace

// kernels/cpu/gemm.h's GemmTilesFn: every (row, token) the reference dot bit for bit, token
// counts around the kernels' steps (8-token panels, two at a time), outputs poisoned with NaN
// and guarded around what the call may write (ldo wider than the rows).
TEST_CASE("row tiles: the tile GEMMs equal the reference bit for bit, awkward shapes",
          "[cpu_kernels][row_tiles][cpu_gemm]") {
  if (!cpu::isa_available(cpu::Isa::kAvx512Vnni)) {
    WARN("this CPU lacks AVX-512 VNNI: the tile GEMMs are not tested");
    return;
  }
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  const float guard = -12345.0f;
  for (TensorType t : {TensorType::Q4_K, TensorType::Q5_0, TensorType::Q8_0}) {
    const cpu::GemmTilesFn gemm = cpu::isa_gemm_tiles(cpu::Isa::kAvx512Vnni, t);
    const cpu::GemmPackFn pack = cpu::isa_gemm_tiles_pack(cpu::Isa::kAvx512Vnni, t);
    REQUIRE(gemm != nullptr);
    REQUIRE(pack != nullptr);
    const TensorType yt = *q::vec_dot_type(t);
    for (int64_t tokens : {1, 7, 8, 9, 16, 17, 23, 33}) {
      const int64_t blocks = std::uniform_int_distribution<int64_t>(1, 9)(g) +
                             (tokens == 33 ? 35 : 0);  // once V2-Lite's 44 blocks of down rows
      const int64_t n_tiles = std::uniform_int_distribution<int64_t>(1, 3)(g);
      const bool raw = tokens % 2 == 1;
      INFO(ktx::type_name(t) << ", " << blocks << " blocks a row, " << n_tiles << " tiles, "
                             << tokens << " tokens, " << (raw ? "raw" : "quantized")
                             << " activations");
      const int64_t n = blocks * block_elements(t);
      const int64_t rows = n_tiles * q::kTileRows;
      const size_t row_bytes = ktx::row_size(t, n);
      std::vector<uint8_t> w = quantized_rows(t, rows, n, g);
      if (tokens == 9) {
        // A NaN scale in one row's last block poisons that row only.
        const uint16_t nan_half = 0x7E00;
        std::memcpy(w.data() + 5 * row_bytes + ktx::row_size(t, (blocks - 1) * block_elements(t)),
                    &nan_half, 2);
      }
      const std::vector<uint8_t> tiles = tiles_of(t, n, w);
      std::vector<std::vector<uint8_t>> y;
      for (int64_t k = 0; k < tokens; ++k) y.push_back(activation_row(yt, n, raw, g));
      // Panels as ops::cpu::GemmPanels keeps them: one after another, 64-byte aligned.
      const size_t panel_bytes = cpu::gemm_tiles_panel_bytes(t, n);
      REQUIRE(panel_bytes % 64 == 0);
      const int64_t n_panels = (tokens + cpu::kGemmTokens - 1) / cpu::kGemmTokens;
      std::vector<uint8_t> storage(panel_bytes * static_cast<size_t>(n_panels) + 64, 0xA5);
      uint8_t* panels =
          storage.data() + (64 - reinterpret_cast<uintptr_t>(storage.data()) % 64) % 64;
      for (int64_t p = 0; p < n_panels; ++p) {
        const void* ptr[cpu::kGemmTokens];
        const int64_t count = std::min<int64_t>(cpu::kGemmTokens, tokens - p * cpu::kGemmTokens);
        for (int64_t k = 0; k < count; ++k)
          ptr[k] = y[static_cast<size_t>(p * cpu::kGemmTokens + k)].data();
        pack(n, ptr, count, panels + static_cast<size_t>(p) * panel_bytes);
      }
      // out[t * ldo + r]: rows [0, rows) poisoned, columns past them and a row past the last
      // token guarded.
      const int64_t ldo = rows + 5;
      std::vector<float> out(static_cast<size_t>((tokens + 1) * ldo), guard);
      for (int64_t k = 0; k < tokens; ++k)
        std::fill_n(out.begin() + k * ldo, rows, std::numeric_limits<float>::quiet_NaN());
      gemm(n, tiles.data(), q::kTileRows * row_bytes, n_tiles, panels, tokens, out.data(),
           static_cast<size_t>(ldo));
      for (int64_t k = 0; k < tokens; ++k) {
        for (int64_t r = 0; r < rows; ++r) {
          const float want = q::vec_dot(t, n, w.data() + static_cast<size_t>(r) * row_bytes,
                                        y[static_cast<size_t>(k)].data());
          const float got = out[static_cast<size_t>(k * ldo + r)];
          INFO("row " << r << ", token " << k << ": " << got << " vs " << want);
          CHECK(same_bits(got, want));
          CHECK(std::isnan(got) == (tokens == 9 && r == 5));
        }
      }
      size_t guards = 0;
      for (int64_t k = 0; k <= tokens; ++k) {
        for (int64_t r = k < tokens ? rows : 0; r < ldo; ++r)
          guards += out[static_cast<size_t>(k * ldo + r)] == guard;
      }
      CHECK(guards == static_cast<size_t>(tokens * (ldo - rows) + ldo));
    }
  }
  // Types without a tile GEMM, and tiers without any.
  CHECK(cpu::isa_gemm_tiles(cpu::Isa::kAvx512Vnni, TensorType::Q6_K) == nullptr);
  CHECK(cpu::isa_gemm_tiles(cpu::Isa::kAvx2, TensorType::Q4_K) == nullptr);
  CHECK(cpu::isa_gemm_tiles(cpu::Isa::kScalar, TensorType::Q8_0) == nullptr);
  CHECK(cpu::gemm_tiles_panel_bytes(TensorType::Q6_K, 256) == 0);
}

TEST_CASE("row tiles: only types with a tile layout have kernels", "[cpu_kernels][row_tiles]") {
  for (TensorType t :
       {TensorType::Q4_0, TensorType::Q5_K, TensorType::Q3_K, TensorType::F32, TensorType::BF16}) {
    CHECK_FALSE(q::has_row_tiles(t));
    CHECK(cpu::isa_vec_dot_tiles(cpu::Isa::kAvx512Vnni, t) == nullptr);
    CHECK(cpu::isa_vec_dot_tiles(cpu::Isa::kAvx2, t) == nullptr);
  }
  for (TensorType t : kTypes) {
    CHECK(q::has_row_tiles(t));
    CHECK(cpu::isa_vec_dot_tiles(cpu::Isa::kAvx2, t) == nullptr);  // AVX-512 only, for now
    CHECK(cpu::isa_vec_dot_tiles(cpu::Isa::kScalar, t) == nullptr);
  }
}

// Resident KiB of the mapping that holds p (/proc/self/smaps), or -1 when none does.
long mapping_rss_kib(const void* p) {
  std::ifstream smaps("/proc/self/smaps");
  const auto addr = reinterpret_cast<uintptr_t>(p);
  bool inside = false;
  for (std::string line; std::getline(smaps, line);) {
    unsigned long begin = 0, end = 0;
    long kib = 0;
    char perms[8] = {};
    // A mapping's first line starts with its address range.
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &begin, &end, perms) == 3) {
      inside = addr >= begin && addr < end;
    } else if (inside && std::sscanf(line.c_str(), "Rss: %ld kB", &kib) == 1) {
      return kib;
    }
  }
  return -1;
}

// Where batches read the tiles too (a tile GEMM for the type), make() drops the tensor's pages
// from the process when they are a read-only file mapping, as the loader's are (they stay in the
// page cache): they must read back unchanged. Any other memory is left alone: anonymous memory
// (which MADV_DONTNEED would zero) and a writable file mapping (whose written pages it would
// revert to the file's bytes).
TEST_CASE("RepackedTensor: the tensor's pages are handed back, its bytes unchanged",
          "[cpu_kernels][row_tiles]") {
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  const int64_t n = 512, rows = 1024;  // 544 KiB of Q8_0: 136 pages
  const std::vector<uint8_t> bytes = quantized_rows(TensorType::Q8_0, rows, n, g);
  ktx::gguf::TensorInfo t;
  t.name = "blk.1.ffn_down_exps.weight";
  t.type = TensorType::Q8_0;
  t.shape = {n, rows};
  t.n_bytes = bytes.size();
  const bool drops = ktx::ops::cpu::RepackedTensor::replaces_file_pages(t);

  // Anonymous memory: a heap copy, and a mapping of its own made read-only.
  const std::vector<uint8_t> heap = bytes;
  t.data = heap.data();
  const std::unique_ptr<ktx::ops::cpu::RepackedTensor> from_heap =
      ktx::ops::cpu::RepackedTensor::make(t, 2);
  CHECK(heap == bytes);
  void* anon =
      ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(anon != MAP_FAILED);
  std::memcpy(anon, bytes.data(), bytes.size());
  REQUIRE(::mprotect(anon, bytes.size(), PROT_READ) == 0);
  t.data = static_cast<const uint8_t*>(anon);
  const std::unique_ptr<ktx::ops::cpu::RepackedTensor> from_anon =
      ktx::ops::cpu::RepackedTensor::make(t, 2);
  CHECK(std::memcmp(anon, bytes.data(), bytes.size()) == 0);
  ::munmap(anon, bytes.size());

  // A file, mapped as the loader maps GGUF files (PROT_READ, MAP_PRIVATE), and mapped writable
  // with one byte changed.
  char path[] = "/tmp/ktx_repack_pages_XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  ::fsync(fd);  // clean pages, as a model file's are
  void* map = ::mmap(nullptr, bytes.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  void* writable = ::mmap(nullptr, bytes.size(), PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  ::close(fd);
  ::unlink(path);
  REQUIRE(map != MAP_FAILED);
  REQUIRE(writable != MAP_FAILED);
  const auto* mapped = static_cast<const uint8_t*>(map);
  CHECK(std::memcmp(mapped, bytes.data(), bytes.size()) == 0);  // every page resident now
  const long rss_before = mapping_rss_kib(map);
  CHECK(rss_before == static_cast<long>(bytes.size() / 1024));
  t.data = mapped;
  const std::unique_ptr<ktx::ops::cpu::RepackedTensor> from_file =
      ktx::ops::cpu::RepackedTensor::make(t, 2);
  if (drops && from_file != nullptr) {
    CHECK(mapping_rss_kib(map) == 0);  // no longer in the process's memory
  } else {
    CHECK(mapping_rss_kib(map) == rss_before);  // nothing handed back
  }
  CHECK(std::memcmp(mapped, bytes.data(), bytes.size()) == 0);  // read again from the file

  auto* changed = static_cast<uint8_t*>(writable);
  std::vector<uint8_t> want = bytes;
  want[4096 + 7] = changed[4096 + 7] = static_cast<uint8_t>(bytes[4096 + 7] ^ 0x5A);
  t.data = changed;
  const std::unique_ptr<ktx::ops::cpu::RepackedTensor> from_writable =
      ktx::ops::cpu::RepackedTensor::make(t, 2);
  CHECK(std::memcmp(changed, want.data(), want.size()) == 0);
  ::munmap(map, bytes.size());
  ::munmap(writable, bytes.size());
}

TEST_CASE("RepackedTensor: decode's dot reads the tiles, exactly the reference",
          "[cpu_kernels][row_tiles]") {
  const uint32_t s = seed();
  INFO("KTX_TEST_SEED=" << s);
  std::mt19937 g(s);
  std::normal_distribution<float> normal;
  const bool has_tiles = cpu::vec_dot_tiles_fn(TensorType::Q5_0) != nullptr;
  // A 3-D tensor of 3 matrices of 176 rows of 64 Q5_0 elements: 33 tiles, packed by 2 threads.
  const int64_t n = 64, rows = 176, slabs = 3;
  const size_t row_bytes = ktx::row_size(TensorType::Q5_0, n);
  const std::vector<uint8_t> bytes = quantized_rows(TensorType::Q5_0, rows * slabs, n, g);
  ktx::gguf::TensorInfo t;
  t.name = "blk.1.ffn_down_exps.weight";
  t.type = TensorType::Q5_0;
  t.shape = {n, rows, slabs};
  t.data = bytes.data();
  const std::unique_ptr<ktx::ops::cpu::RepackedTensor> r =
      ktx::ops::cpu::RepackedTensor::make(t, 2);
  if (!has_tiles) {
    CHECK(r == nullptr);  // no tile kernel in this tier: the file's rows
    return;
  }
  REQUIRE(r != nullptr);
  CHECK(r->bytes() == bytes.size());
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = normal(g);
  std::vector<uint8_t> y(ktx::row_size(TensorType::Q8_0, n));
  q::quantize_row(TensorType::Q8_0, x.data(), y.data(), n);
  for (int64_t e = 0; e < slabs; ++e) {
    ktx::ops::cpu::WeightMatrix w = ktx::ops::cpu::weight_slab(t, e);
    r->attach(w, e);
    REQUIRE(w.tiles != nullptr);
    // Rows 16..47 from the tiles, then 3..18 (not on a tile boundary: the file's rows).
    std::vector<float> out(32, std::numeric_limits<float>::quiet_NaN());
    w.dot(16, 32, y.data(), out.data());
    for (int64_t i = 0; i < 32; ++i) {
      const uint8_t* row = bytes.data() + static_cast<size_t>(e * rows + 16 + i) * row_bytes;
      CHECK(same_bits(out[static_cast<size_t>(i)], q::vec_dot(TensorType::Q5_0, n, row, y.data())));
    }
    std::vector<float> rest(16), want(16);
    w.dot(3, 16, y.data(), rest.data());
    ktx::ops::cpu::weight_slab(t, e).dot(3, 16, y.data(), want.data());
    CHECK(rest == want);
    // Rows 144..163: a whole tile, then a tail of 4 rows from the file's rows.
    std::vector<float> mixed(20), tail(4);
    w.dot(144, 20, y.data(), mixed.data());
    ktx::ops::cpu::weight_slab(t, e).dot(160, 4, y.data(), tail.data());
    for (int64_t i = 0; i < 16; ++i) {
      const uint8_t* row = bytes.data() + static_cast<size_t>(e * rows + 144 + i) * row_bytes;
      CHECK(
          same_bits(mixed[static_cast<size_t>(i)], q::vec_dot(TensorType::Q5_0, n, row, y.data())));
    }
    CHECK(std::equal(tail.begin(), tail.end(), mixed.begin() + 16));
  }
  // Row counts that are not whole tiles, and types without a tile kernel, are not repacked.
  ktx::gguf::TensorInfo odd = t;
  odd.shape = {n, 24, 2};
  CHECK(ktx::ops::cpu::RepackedTensor::make(odd, 2) == nullptr);
  ktx::gguf::TensorInfo f32 = t;
  f32.type = TensorType::F32;
  CHECK(ktx::ops::cpu::RepackedTensor::make(f32, 2) == nullptr);
}
