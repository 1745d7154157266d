// quantize_model: plans every tensor's type (preset.cpp), converts the rows that change type on
// worker threads into a staging area, then hands metadata and tensors to the GGUF writer, which
// writes through a temporary file and renames it.
#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/output_path.h"
#include "ktx/error.h"
#include "ktx/gguf.h"
#include "ktx/quant.h"
#include "ktx/quantize.h"
#include "quantize/staging.h"
#include "runtime/thread_pool.h"

namespace ktx::quantize {
namespace {

using TT = TensorType;

constexpr double kGiB = 1024.0 * 1024.0 * 1024.0;
// Staged tensors start on cache lines, so two workers never write the same line.
constexpr uint64_t kStagingAlign = 64;
// Rows are handed out in chunks of about this many elements: large enough that the shared
// counter is touched rarely, small enough that the last chunk does not leave threads idle.
constexpr int64_t kChunkElements = 64 * 1024;

// The file ggml itself writes into general.quantization_version (GGML_QNT_VERSION).
constexpr uint32_t kQuantizationVersion = 2;

bool is_quantized(TT type) { return traits(type).block_size > 1; }

// Converts every row of `src` into `to` at `dst`, rows spread over the pool.
void convert_tensor(const gguf::TensorInfo& src, TT to, uint8_t* dst, runtime::ThreadPool& pool) {
  const int64_t row = src.shape[0];
  const int64_t rows = src.rows();
  if (row == 0 || rows == 0) return;
  const size_t in_row_bytes = row_size(src.type, row);
  const size_t out_row_bytes = row_size(to, row);
  pool.parallel_for(rows, std::max<int64_t>(1, kChunkElements / row), [&](int64_t r0, int64_t r1) {
    std::vector<float> values(static_cast<size_t>(row));
    for (int64_t r = r0; r < r1; ++r) {
      const uint8_t* in = src.data + static_cast<uint64_t>(r) * in_row_bytes;
      if (src.type == TT::F32) {
        std::memcpy(values.data(), in, static_cast<size_t>(row) * sizeof(float));
      } else {
        quant::dequantize_row(src.type, in, values.data(), row);
      }
      // llama.cpp validates each quantized row and refuses NaN / Inf; checking the input refuses
      // the same data and names the row.
      for (float v : values) {
        if (!std::isfinite(v)) {
          throw Error(ErrorCode::kInvalidFile,
                      fmt::format("tensor '{}': row {} holds a non-finite value ({}); it cannot be "
                                  "quantized",
                                  src.name, r, v));
        }
      }
      quant::quantize_row(to, values.data(), dst + static_cast<uint64_t>(r) * out_row_bytes, row);
    }
  });
}

bool is_split_key(std::string_view key) {
  return key == "split.no" || key == "split.count" || key == "split.tensors.count";
}

std::vector<TypeCount> to_counts(const std::map<uint32_t, TypeCount>& by_type) {
  std::vector<TypeCount> out;
  for (const auto& [id, count] : by_type) out.push_back(count);
  return out;
}

std::string list_names(const std::vector<std::string>& names, size_t max_shown) {
  std::string out;
  for (size_t i = 0; i < names.size() && i < max_shown; ++i) {
    if (i > 0) out += ", ";
    out += names[i];
  }
  if (names.size() > max_shown) out += fmt::format(" and {} more", names.size() - max_shown);
  return out;
}

}  // namespace

Summary quantize_model(const std::string& in_path, const std::string& out_path, Preset preset,
                       const Options& options) {
  const auto start = std::chrono::steady_clock::now();
  preset_info(preset);  // refuses a number that is not a preset
  // The output is built while the input is still mapped: replacing a mapped file would pull the
  // data from under the reader.
  core::refuse_output_path(out_path, {in_path}, "the output");

  const gguf::File file = gguf::File::open(in_path);
  core::refuse_output_path(out_path, file.paths(), "the output");
  const ModelInfo model = ModelInfo::from_file(file);
  const std::vector<gguf::TensorInfo>& sources = file.tensors();

  std::vector<TensorDesc> descs;
  descs.reserve(sources.size());
  for (const gguf::TensorInfo& t : sources) descs.push_back({t.name, t.type, t.shape});
  const std::vector<TensorPlan> plans = plan_types(model, descs, preset, {.pure = options.pure});

  Summary summary;
  summary.preset = preset;
  summary.n_tensors = plans.size();
  auto warn = [&](std::string message) {
    summary.warnings.push_back(std::move(message));
    if (options.progress) {
      Progress p;
      p.kind = Progress::Kind::kWarning;
      p.message = summary.warnings.back();
      options.progress(p);
    }
  };

  if (model.architecture != "deepseek2" && model.architecture != "llama") {
    warn(
        fmt::format("architecture '{}': ktx applies llama.cpp's generic type rules, which it has "
                    "checked for deepseek2 and llama only",
                    model.architecture));
  }

  // Everything that can fail on the input is checked before any work starts.
  std::vector<std::string> requantized;
  std::vector<std::string> fallbacks;
  for (const TensorPlan& plan : plans) {
    if (plan.fallback) fallbacks.push_back(plan.name);
    if (!plan.converts()) continue;
    if (plan.from != TT::F32 && !quant::can_dequantize(plan.from)) {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("{}: tensor '{}' is stored as {}, which ktx cannot convert from",
                              in_path, plan.name, type_name(plan.from)));
    }
    if (!quant::can_quantize(plan.to)) {
      throw Error(ErrorCode::kUnsupported,
                  fmt::format("{}: tensor '{}' needs type {} ({}), which ktx cannot produce",
                              in_path, plan.name, type_name(plan.to), plan.why));
    }
    if (is_quantized(plan.from)) {
      requantized.push_back(fmt::format("{} ({})", plan.name, type_name(plan.from)));
    }
  }
  summary.n_requantized = requantized.size();
  summary.n_fallback = fallbacks.size();
  if (!requantized.empty()) {
    warn(
        fmt::format("{} tensor(s) are already quantized and are converted again, which adds a "
                    "second rounding error (quantize the F16/BF16 original when you have it): {}",
                    requantized.size(), list_names(requantized, 4)));
  }
  if (!fallbacks.empty()) {
    warn(
        fmt::format("{} of {} tensor(s) got a substitute type, as in llama.cpp, because their "
                    "row length is not a multiple of the chosen type's block: {}",
                    fallbacks.size(), plans.size(), list_names(fallbacks, 4)));
  }

  // Staging layout: one slot per converted tensor, in writing order.
  std::vector<uint64_t> offsets(plans.size(), 0);
  uint64_t staged = 0;
  for (size_t k = 0; k < plans.size(); ++k) {
    if (!plans[k].converts()) continue;
    const gguf::TensorInfo& src = sources[plans[k].index];
    offsets[k] = staged;
    const uint64_t bytes = row_size(plans[k].to, src.shape[0]) * static_cast<uint64_t>(src.rows());
    staged += (bytes + kStagingAlign - 1) / kStagingAlign * kStagingAlign;
  }
  const std::filesystem::path out_dir = std::filesystem::path(out_path).parent_path();
  const std::string scratch_dir = out_dir.empty() ? std::string(".") : out_dir.string();
  detail::Staging staging(staged, options.memory_limit, scratch_dir);

  const int threads = options.threads > 0 ? options.threads : runtime::default_thread_count();
  runtime::ThreadPool pool(threads);

  std::map<uint32_t, TypeCount> types_in, types_out;
  gguf::Writer writer(3);
  for (const gguf::KeyValue& kv : file.metadata()) {
    // The result is one file, and the two keys below are set afresh at the end (where llama.cpp's
    // gguf_set_val puts them).
    if (is_split_key(kv.key) || kv.key == "general.quantization_version" ||
        kv.key == "general.file_type") {
      continue;
    }
    writer.set_metadata(kv.key, kv.value);
  }
  writer.set_metadata("general.quantization_version", gguf::Value::uint32(kQuantizationVersion));
  writer.set_metadata("general.file_type", gguf::Value::uint32(static_cast<uint32_t>(preset)));

  for (size_t k = 0; k < plans.size(); ++k) {
    const TensorPlan& plan = plans[k];
    const gguf::TensorInfo& src = sources[plan.index];
    const uint8_t* data = src.data;
    uint64_t n_bytes = src.n_bytes;
    if (plan.converts()) {
      uint8_t* dst = staging.data() + offsets[k];
      convert_tensor(src, plan.to, dst, pool);
      data = dst;
      n_bytes = row_size(plan.to, src.shape[0]) * static_cast<uint64_t>(src.rows());
      ++summary.n_converted;
    } else {
      ++summary.n_copied;
    }
    writer.add_tensor(plan.name, plan.to, plan.shape, data, n_bytes, /*borrow=*/true);

    TypeCount& in = types_in[static_cast<uint32_t>(plan.from)];
    in.type = plan.from;
    ++in.tensors;
    in.bytes += src.n_bytes;
    TypeCount& out = types_out[static_cast<uint32_t>(plan.to)];
    out.type = plan.to;
    ++out.tensors;
    out.bytes += n_bytes;
    summary.bytes_in += src.n_bytes;
    summary.bytes_out += n_bytes;
    summary.n_elements += src.n_elements;

    if (options.progress) {
      Progress p;
      p.kind = Progress::Kind::kTensor;
      p.done = k + 1;
      p.count = plans.size();
      p.tensor = &plan;
      options.progress(p);
    }
  }

  writer.write(out_path);

  summary.types_in = to_counts(types_in);
  summary.types_out = to_counts(types_out);
  summary.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return summary;
}

std::string format_summary(const Summary& s) {
  auto bpw = [&](uint64_t bytes) {
    return s.n_elements == 0 ? 0.0 : 8.0 * static_cast<double>(bytes) / s.n_elements;
  };
  std::string out = fmt::format(
      "{} (general.file_type {}): {} tensors, {} converted, {} copied, {} fallback(s), {} "
      "requantized\n",
      preset_info(s.preset).name, static_cast<uint32_t>(s.preset), s.n_tensors, s.n_converted,
      s.n_copied, s.n_fallback, s.n_requantized);
  out += fmt::format("size: {:.3f} GiB ({:.2f} bpw) -> {:.3f} GiB ({:.2f} bpw) in {:.1f} s\n",
                     s.bytes_in / kGiB, bpw(s.bytes_in), s.bytes_out / kGiB, bpw(s.bytes_out),
                     s.seconds);
  auto table = [&](std::string_view label, const std::vector<TypeCount>& counts) {
    for (const TypeCount& c : counts) {
      out += fmt::format("  {:<4} {:<7} {:>6} tensors {:>12.2f} MiB\n", label, type_name(c.type),
                         c.tensors, c.bytes / (1024.0 * 1024.0));
      label = "";
    }
  };
  table("in", s.types_in);
  table("out", s.types_out);
  for (const std::string& w : s.warnings) out += fmt::format("warning: {}\n", w);
  return out;
}

}  // namespace ktx::quantize
