// Split models: `name-00001-of-00003.gguf` and its siblings, as llama.cpp's gguf-split writes
// them (split.no u16, 0-based; split.count u16; split.tensors.count i32 — any integer type is
// accepted). Every part must exist and agree on the count and the total, and a tensor name may
// appear in one part only. A single file that says it is one part of several is refused, since
// its siblings cannot be found.
#include <fmt/format.h>

#include <optional>

#include "gguf/file_impl.h"
#include "gguf/rules.h"
#include "ktx/error.h"

namespace ktx::gguf {
namespace detail {
namespace {

struct SplitName {
  std::string prefix;  // everything before "-00001-of-00003.gguf", folder included
  uint32_t no = 0;     // 1-based, as in the name
  uint32_t count = 0;
};

// Parses the trailing "-NNNNN-of-MMMMM.gguf" of `path`; nullopt when absent or nonsensical
// (part 0, or a part past the count), in which case the path is a plain single file.
std::optional<SplitName> parse_split_name(std::string_view path) {
  constexpr std::string_view kTail = ".gguf";
  constexpr size_t kLen = 1 + 5 + 4 + 5 + 5;  // "-00001-of-00003.gguf"
  if (path.size() < kLen || path.substr(path.size() - kTail.size()) != kTail) return std::nullopt;
  const std::string_view s = path.substr(path.size() - kLen);
  auto digits = [](std::string_view d, uint32_t& out) {
    out = 0;
    for (char c : d) {
      if (c < '0' || c > '9') return false;
      out = out * 10 + static_cast<uint32_t>(c - '0');
    }
    return true;
  };
  SplitName name;
  if (s[0] != '-' || s.substr(6, 4) != "-of-" || !digits(s.substr(1, 5), name.no) ||
      !digits(s.substr(10, 5), name.count)) {
    return std::nullopt;
  }
  if (name.no == 0 || name.count == 0 || name.no > name.count) return std::nullopt;
  name.prefix = std::string(path.substr(0, path.size() - kLen));
  return name;
}

// The value of an integer split key of `part`, or nullopt when absent. reserved_key_problem has
// already made sure it is a non-negative integer.
std::optional<int64_t> split_key(const Part& part, std::string_view key, uint64_t& at) {
  const int64_t k = part.find(key);
  if (k < 0) return std::nullopt;
  at = part.value_offsets[static_cast<size_t>(k)];
  return part.metadata[static_cast<size_t>(k)].value.as_int();
}

[[noreturn]] void fail(const Part& part, uint64_t at, std::string_view field,
                       std::string_view problem) {
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}: byte {}: {}: {}", part.path(), at, field, problem));
}

[[noreturn]] void fail_missing(const Part& part, std::string_view key, std::string_view why) {
  throw Error(ErrorCode::kInvalidFile,
              fmt::format("{}: metadata key '{}' is missing: {}", part.path(), key, why));
}

void check_single(const Part& part) {
  uint64_t at = 0;
  const auto count = split_key(part, kSplitCountKey, at);
  if (count && *count > 1) {
    fail(part, at, "metadata key 'split.count'",
         fmt::format("the file is one of {} parts of a split model, but its name does not end "
                     "in -NNNNN-of-{:05d}.gguf, so the other parts cannot be found",
                     *count, *count));
  }
  const auto no = split_key(part, kSplitNoKey, at);
  if (no && *no != 0) {
    fail(part, at, "metadata key 'split.no'",
         fmt::format("the file says it is part {} (0-based) of a split model, expected 0 for a "
                     "single file",
                     *no));
  }
  const auto total = split_key(part, kSplitTensorsCountKey, at);
  if (total && static_cast<uint64_t>(*total) != part.tensors.size()) {
    fail(part, at, "metadata key 'split.tensors.count'",
         fmt::format("{} tensors announced, but the file holds {}", *total, part.tensors.size()));
  }
}

void check_parts(const std::vector<Part>& parts) {
  const auto count = static_cast<int64_t>(parts.size());
  int64_t announced_total = -1;
  uint64_t total = 0;
  for (size_t i = 0; i < parts.size(); ++i) {
    const Part& part = parts[i];
    const std::string why = fmt::format("the name says this is part {} of {}", i + 1, count);
    uint64_t at = 0;
    const auto n = split_key(part, kSplitCountKey, at);
    if (!n) fail_missing(part, kSplitCountKey, why);
    if (*n != count) {
      fail(part, at, "metadata key 'split.count'",
           fmt::format("{} parts, but the file name says {} (…-of-{:05d}.gguf)", *n, count, count));
    }
    const auto no = split_key(part, kSplitNoKey, at);
    if (!no) fail_missing(part, kSplitNoKey, why);
    if (*no != static_cast<int64_t>(i)) {
      fail(part, at, "metadata key 'split.no'",
           fmt::format("part {} (0-based), but the file name says part {} of {} (expected {})", *no,
                       i + 1, count, i));
    }
    const auto t = split_key(part, kSplitTensorsCountKey, at);
    if (!t) fail_missing(part, kSplitTensorsCountKey, why);
    if (announced_total < 0) {
      announced_total = *t;
    } else if (*t != announced_total) {
      fail(
          part, at, "metadata key 'split.tensors.count'",
          fmt::format("{} tensors, but part 1 ({}) says {}", *t, parts[0].path(), announced_total));
    }
    total += part.tensors.size();
  }
  if (total != static_cast<uint64_t>(announced_total)) {
    uint64_t at = 0;
    split_key(parts[0], kSplitTensorsCountKey, at);
    fail(parts[0], at, "metadata key 'split.tensors.count'",
         fmt::format("{} tensors announced, but the {} parts hold {}", announced_total, count,
                     total));
  }
  // Names across parts; each part already refused its own duplicates.
  absl::flat_hash_map<std::string_view, size_t> owner;  // name -> part index
  for (size_t i = 0; i < parts.size(); ++i) {
    for (size_t j = 0; j < parts[i].tensors.size(); ++j) {
      const std::string& name = parts[i].tensors[j].name;
      if (auto [it, inserted] = owner.emplace(name, i); !inserted) {
        fail(parts[i], parts[i].name_offsets[j], fmt::format("tensor #{} '{}'", j, name),
             fmt::format("duplicate tensor name: part {} ({}) already holds a tensor of that "
                         "name",
                         it->second + 1, parts[it->second].path()));
      }
    }
  }
}

}  // namespace

std::vector<Part> open_parts(const std::string& path) {
  std::vector<Part> parts;
  const auto split = parse_split_name(path);
  if (!split || split->count == 1) {
    parts.push_back(read_part(MappedFile::open(path)));
    check_single(parts.back());
    return parts;
  }
  // The name alone does not make a split model (llama.cpp goes by split.count too): a single
  // file that happens to be called like a part — written by a tool that knows nothing of
  // splits, or renamed — opens as itself.
  {
    Part named = read_part(MappedFile::open(path));
    uint64_t at = 0;
    const auto count = split_key(named, kSplitCountKey, at);
    if (!count || *count <= 1) {
      check_single(named);
      parts.push_back(std::move(named));
      return parts;
    }
  }
  parts.reserve(split->count);
  for (uint32_t i = 0; i < split->count; ++i) {
    const std::string part_path = split_path(split->prefix, i, split->count);
    MappedFile map;
    try {
      map = MappedFile::open(part_path);
    } catch (const Error& e) {
      throw Error(e.code(), fmt::format("{}: split model part {} of {} cannot be opened: {}", path,
                                        i + 1, split->count, e.what()));
    }
    parts.push_back(read_part(std::move(map)));
  }
  check_parts(parts);
  return parts;
}

}  // namespace detail

std::string split_path(std::string_view prefix, uint32_t index, uint32_t count) {
  return fmt::format("{}-{:05d}-of-{:05d}.gguf", prefix, index + 1, count);
}

}  // namespace ktx::gguf
