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
// is there is not a regular file: renaming over a device or a FIFO would replace it.
std::string rename_target(const std::string& path);

// Writes `bytes` to `path`, checking every write and the close; a failure throws ktx::Error
// (kIo) naming the path. A regular file (or none yet) is written through a temporary file in the
// same folder and a rename, so a full disk leaves the old file as it was; a device or a FIFO
// (/dev/stdout) is written in place.
void write_file_atomically(const std::string& path, std::string_view bytes);

}  // namespace ktx::core
