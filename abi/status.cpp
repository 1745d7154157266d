// Status objects and the boundary's exception mapping, plus the buffer and JSON helpers the other
// ABI files share.
#include <new>
#include <string_view>

#include "abi_internal.h"
#include "ktx/error.h"

namespace ktx::abi {
namespace {

// Handed out when even the status cannot be allocated; never freed.
ktx_status g_out_of_memory{KTX_STATUS_OUT_OF_MEMORY, "out of memory"};  // fits SSO: no allocation

ktx_status_code code_for(ErrorCode code) {
  switch (code) {
    case ErrorCode::kInvalidArgument:
      return KTX_STATUS_INVALID_ARGUMENT;
    case ErrorCode::kInvalidFile:
      return KTX_STATUS_INVALID_FILE;
    case ErrorCode::kIo:
      return KTX_STATUS_IO_ERROR;
    case ErrorCode::kUnsupported:
      return KTX_STATUS_UNSUPPORTED;
    case ErrorCode::kOutOfMemory:
      return KTX_STATUS_OUT_OF_MEMORY;
    case ErrorCode::kInternal:
      return KTX_STATUS_INTERNAL;
  }
  return KTX_STATUS_INTERNAL;
}

}  // namespace

ktx_status* make_status(ktx_status_code code, const std::string& message) noexcept {
  try {
    return new ktx_status{code, message};
  } catch (...) {
    return &g_out_of_memory;
  }
}

ktx_status* status_from_exception(const char* function) noexcept {
  auto named = [&](ktx_status_code code, const std::string& message) {
    const std::string prefix = std::string(function) + ": ";
    if (message.compare(0, prefix.size(), prefix) == 0) return make_status(code, message);
    return make_status(code, prefix + message);
  };
  try {
    try {
      throw;
    } catch (const Error& e) {
      return named(code_for(e.code()), e.what());
    } catch (const AbiFailure& f) {
      return named(f.code, f.message);
    } catch (const std::bad_alloc&) {
      return named(KTX_STATUS_OUT_OF_MEMORY, "out of memory");
    } catch (const std::exception& e) {
      return named(KTX_STATUS_INTERNAL, std::string("internal error: ") + e.what());
    } catch (...) {
      return named(KTX_STATUS_INTERNAL, "internal error: an unknown exception");
    }
  } catch (...) {  // building the message ran out of memory
    return &g_out_of_memory;
  }
}

ktx_status* write_text(const char* function, const std::string& text, char* buf, size_t capacity,
                       size_t* len) {
  if (len == nullptr) return null_argument(function, "len");
  if (buf == nullptr && capacity != 0) {
    return invalid_argument(function, "buf is NULL but capacity is " + std::to_string(capacity));
  }
  if (buf == nullptr) {
    *len = text.size();
    return nullptr;
  }
  if (capacity < text.size() + 1) {
    *len = text.size();
    return make_status(KTX_STATUS_BUFFER_TOO_SMALL, std::string(function) + ": the text needs " +
                                                        std::to_string(text.size() + 1) +
                                                        " bytes with its NUL, capacity is " +
                                                        std::to_string(capacity));
  }
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  *len = text.size();
  return nullptr;
}

ktx_status* write_tokens(const char* function, const std::vector<int32_t>& tokens, int32_t* buf,
                         size_t capacity, size_t* n) {
  if (n == nullptr) return null_argument(function, "n_tokens");
  if (buf == nullptr && capacity != 0) {
    return invalid_argument(function, "tokens is NULL but capacity is " + std::to_string(capacity));
  }
  if (buf == nullptr) {
    *n = tokens.size();
    return nullptr;
  }
  if (capacity < tokens.size()) {
    *n = tokens.size();
    return make_status(KTX_STATUS_BUFFER_TOO_SMALL,
                       std::string(function) + ": the text makes " + std::to_string(tokens.size()) +
                           " tokens, capacity is " + std::to_string(capacity));
  }
  if (!tokens.empty()) std::memcpy(buf, tokens.data(), tokens.size() * sizeof(int32_t));
  *n = tokens.size();
  return nullptr;
}

std::string json_quote(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (u < 0x20) {
          char esc[8];
          std::snprintf(esc, sizeof esc, "\\u%04x", u);
          out += esc;
        } else {
          out += c;  // UTF-8 passes through
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace ktx::abi

extern "C" {

ktx_status_code ktx_status_get_code(const ktx_status* status) {
  return status == nullptr ? KTX_STATUS_OK : status->code;
}

const char* ktx_status_get_message(const ktx_status* status) {
  if (status == nullptr) return "";
  return status->message.c_str();
}

const char* ktx_status_code_name(ktx_status_code code) {
  switch (code) {
    case KTX_STATUS_OK:
      return "KTX_STATUS_OK";
    case KTX_STATUS_INVALID_ARGUMENT:
      return "KTX_STATUS_INVALID_ARGUMENT";
    case KTX_STATUS_INVALID_FILE:
      return "KTX_STATUS_INVALID_FILE";
    case KTX_STATUS_IO_ERROR:
      return "KTX_STATUS_IO_ERROR";
    case KTX_STATUS_UNSUPPORTED:
      return "KTX_STATUS_UNSUPPORTED";
    case KTX_STATUS_OUT_OF_MEMORY:
      return "KTX_STATUS_OUT_OF_MEMORY";
    case KTX_STATUS_INTERNAL:
      return "KTX_STATUS_INTERNAL";
    case KTX_STATUS_CANCELLED:
      return "KTX_STATUS_CANCELLED";
    case KTX_STATUS_BUFFER_TOO_SMALL:
      return "KTX_STATUS_BUFFER_TOO_SMALL";
    case KTX_STATUS_NOT_FOUND:
      return "KTX_STATUS_NOT_FOUND";
  }
  return "KTX_STATUS_UNKNOWN";
}

void ktx_status_release(ktx_status* status) {
  if (status != &ktx::abi::g_out_of_memory) delete status;
}

}  // extern "C"
