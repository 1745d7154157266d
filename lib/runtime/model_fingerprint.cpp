// What identifies a model file to the session files saved from it (session_file.cpp).
#include "core/checksum.h"
#include "runtime/model.h"

namespace ktx::runtime {
namespace {

// Every metadata value, every tensor's name, type and shape, and three 64-byte windows of every
// tensor's data (its start, middle and end). Two quantizations, conversions or fine-tunes of one
// model differ there — a fine-tune that left a tensor's first bytes alone still differs further
// in; reading all the weights (hundreds of GB) to be certain would cost more than a session file
// saves. split.* keys are left out: the same model split differently is the same model.
uint64_t compute(const gguf::File& file) {
  core::Checksum c;
  for (const gguf::KeyValue& kv : file.metadata()) {
    if (kv.key.starts_with("split.")) continue;
    c.update(kv.key);
    c.update_u64(static_cast<uint64_t>(kv.value.type()));
    c.update_u64(static_cast<uint64_t>(kv.value.array_type()));
    c.update_u64(kv.value.array_size());
    if (const std::string* s = kv.value.as_string()) {
      c.update(*s);
    } else if (const std::vector<std::string>* items = kv.value.strings()) {
      for (const std::string& item : *items) c.update(item);
    } else {
      c.update(kv.value.raw_bytes().data(), kv.value.raw_bytes().size());
    }
  }
  constexpr uint64_t kWindow = 64;
  for (const gguf::TensorInfo& t : file.tensors()) {
    c.update(t.name);
    c.update_u64(static_cast<uint64_t>(t.type));
    for (int64_t d : t.shape) c.update_u64(static_cast<uint64_t>(d));
    if (t.n_bytes <= 3 * kWindow) {
      c.update(t.data, t.n_bytes);
    } else {
      for (uint64_t at : {uint64_t{0}, t.n_bytes / 2, t.n_bytes - kWindow}) {
        c.update(t.data + at, kWindow);
      }
    }
  }
  return c.digest();
}

}  // namespace

uint64_t Model::fingerprint() const {
  // Computed on first use, not at load: it touches three pages of every tensor, which a lazily
  // mapped model (or one whose pages option repack released) would otherwise not read.
  std::call_once(fingerprint_once_, [this] { fingerprint_ = compute(file_); });
  return fingerprint_;
}

}  // namespace ktx::runtime
