// ktx::Error: the one exception type the library throws. Every message names where the problem
// is (file, tensor, byte offset, rule line, argument) and what was expected, so a user can act
// on it without a debugger. The C ABI (abi/) turns these into status objects.
#pragma once

#include <stdexcept>
#include <string>

namespace ktx {

// What kind of failure; the C ABI maps these one-to-one onto its status codes.
enum class ErrorCode : int {
  kInvalidArgument = 1,  // the caller passed something out of range or malformed
  kInvalidFile = 2,      // a file's contents break its format (GGUF, rules …)
  kIo = 3,               // the operating system refused (open, mmap, read, write)
  kUnsupported = 4,      // valid input that ktx does not implement (yet)
  kOutOfMemory = 5,
  kInternal = 6,         // a broken invariant inside ktx: a bug to report
};

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const noexcept { return code_; }

 private:
  ErrorCode code_;
};

}  // namespace ktx
