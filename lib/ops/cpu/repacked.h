// The "repack" operator option: a copy of a weight tensor's rows in row tiles (quant/row_tiles.h),
// which decode's matrix-vector products read instead of the file's rows. On Zen 4 the tile
// kernels compute Q4_K 1.5×, Q5_0 2.4× and Q8_0 2.7× as fast as the file-layout ones, which makes
// decode's expert products memory-bound again (docs/PERF.md). Batches (prefill) read the tiles
// too where the tier has a tile GEMM for the type (Q4_K, Q5_0, Q8_0 on AVX-512 VNNI:
// batch_matmul.h), 1.2-1.4× the file-layout GEMMs' speed on Emerald Rapids.
//
// What it costs: memory for the copy (the tensor's size, anonymous, in 2 MiB pages where the
// kernel gives them) and the time to write it at load. The file stays mapped. A tensor that
// batches read through the tiles is never read from the file again, so make() drops its file
// pages from the process (MADV_COLD, MADV_DONTNEED): the copy replaces them in memory (the
// 27-layer V2-Lite file: `ktx bench`'s maximum RSS 20.2 -> 11.3 GB, the same as without the
// option), while the page cache keeps them, first in line for reclaim, for the next start. The
// matrices without a tile GEMM (Q6_K on AMD CPUs) keep their pages: batches still read them from
// the file. Off by default; memory-mapped weights without a copy stay the rule.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ktx/gguf.h"
#include "model/module_tree.h"
#include "ops/cpu/linear.h"
#include "registry/registry.h"

namespace ktx::ops::cpu {

class RepackedTensor {
 public:
  // Repacks `t` (2-D, or 3-D with one matrix per slab) when the CPU's kernel tier has a tile
  // kernel for its type and its matrices' row counts are multiples of 16; nullptr otherwise
  // (the operator then reads the file's rows, as without the option). Uses up to `threads`
  // threads. Throws ktx::Error (kIo) naming the tensor when the memory cannot be had.
  static std::unique_ptr<RepackedTensor> make(const gguf::TensorInfo& t, int threads);
  // Whether make() would repack `t` on this CPU: its type, shape and row count (not its data).
  static bool accepts(const gguf::TensorInfo& t);
  // Whether make() would also hand t's file pages back to the kernel, the copy replacing them in
  // memory: accepted, and batches read the copy too (a tile GEMM for the type on this CPU).
  static bool replaces_file_pages(const gguf::TensorInfo& t);

  RepackedTensor(const RepackedTensor&) = delete;
  RepackedTensor& operator=(const RepackedTensor&) = delete;
  ~RepackedTensor();

  // Points w — weight_matrix(t), or weight_slab(t, slab) — at its tiles.
  void attach(WeightMatrix& w, int64_t slab = 0) const;
  size_t bytes() const { return bytes_; }

 private:
  RepackedTensor(uint8_t* data, size_t bytes, size_t slab_bytes, kernels::cpu::VecDotTilesFn fn)
      : data_(data), bytes_(bytes), slab_bytes_(slab_bytes), fn_(fn) {}

  uint8_t* data_;
  size_t bytes_;
  size_t slab_bytes_;  // bytes of one matrix (the whole tensor when 2-D)
  kernels::cpu::VecDotTilesFn fn_;
};

// Option "repack" of the CPU operators (cpu.experts, cpu.mlp, cpu.lm_head, cpu.mla_attention):
// "true" repacks their weight matrices (decode and, where a tile GEMM exists, batches read the
// copy), "false" (the default) reads the file's rows.
// nullopt for any other value.
std::optional<bool> parse_repack(const registry::OpOptions& options);
// The check's message for a bad value, or nullopt.
std::optional<std::string> repack_option_error(const registry::OpOptions& options);

// The roles of a module of `kind` whose matrices option repack copies: the experts' and MLPs'
// three, MLA's projections other than kv_b (q, q_a, q_b, kv_a_mqa, output), the head's weight.
// The one list both the operators (repack_module) and the planner (repacked_bytes) go by.
std::span<const std::string_view> repack_roles(model::ModuleKind kind);

// Repacks the matrices of m that repack_roles names and RepackedTensor::make accepts. Each span
// holds an operator's matrices of one tensor: one matrix of a 2-D tensor, or a 3-D tensor's slabs
// in order. Returns the copies, which the matrices then point into.
std::vector<std::unique_ptr<RepackedTensor>> repack_module(
    const model::ModuleDesc& m, std::initializer_list<std::span<WeightMatrix>> matrices);

// The bytes repack_module copies for m on this CPU (0 where the CPU has no tile kernels).
uint64_t repacked_bytes(const model::ModuleDesc& m);
// Of those, the bytes whose file pages stay mapped beside the copy (matrices without a tile GEMM,
// RepackedTensor::replaces_file_pages): the memory the option adds, for the planner's estimate.
uint64_t repack_added_bytes(const model::ModuleDesc& m);

}  // namespace ktx::ops::cpu
