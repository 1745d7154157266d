// Checks and writes for files ktx creates at a path the user gave: never over one of the files
// the same command reads (a model, a rule file), never half-written.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace ktx::core {

// Throws ktx::Error (kInvalidArgument) when `out_path` names one of `inputs` — the same name,
// the same file through a symbolic or hard link — or a directory. `option` names the output in
// the message ("-o", "--rules-out", "OUT.gguf").
void refuse_output_path(const std::string& out_path, const std::vector<std::string>& inputs,
                        std::string_view option);

// The file that writing `path` by a rename must replace: `path` itself, or the file a symbolic
// link there points to (the link stays a link). Throws ktx::Error (kInvalidArgument) when what
// is there is not a regular file, or the path is under /dev or /proc: renaming over a device, a
// FIFO or a descriptor's file would replace it.
std::string rename_target(const std::string& path);

// Writes `bytes` to `path`, checking every write and the close; a failure throws ktx::Error
// (kIo) naming the path. A regular file (or none yet) is written through a temporary file in the
// same folder and a rename, so a full disk leaves the old file as it was; /dev/stdout and
// /dev/stderr go to those descriptors; a device, a FIFO or another /dev or /proc path is written
// in place.
void write_file_atomically(const std::string& path, std::string_view bytes);

// Temporary files being written (the writers above, gguf::Writer): a program that is stopped
// by a signal should not leave model-sized leftovers behind. Registered while they exist;
// remove_temporaries() unlinks those still registered and is async-signal-safe, for a signal
// handler (the ktx tool installs one for SIGINT, SIGTERM and SIGHUP). A path too long for the
// registry (4 KiB) or beyond its 16 places is simply not registered.
void register_temporary(const std::string& path) noexcept;
void unregister_temporary(const std::string& path) noexcept;
void remove_temporaries() noexcept;

// Registers a temporary for its own lifetime.
class RegisteredTemporary {
 public:
  explicit RegisteredTemporary(std::string path) : path_(std::move(path)) {
    register_temporary(path_);
  }
  ~RegisteredTemporary() { unregister_temporary(path_); }
  RegisteredTemporary(const RegisteredTemporary&) = delete;
  RegisteredTemporary& operator=(const RegisteredTemporary&) = delete;

 private:
  std::string path_;
};

}  // namespace ktx::core
