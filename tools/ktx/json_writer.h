// A minimal streaming JSON writer for the CLI's --json outputs: correct string escaping and
// comma placement, nothing more.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace ktx::cli {

class JsonWriter {
 public:
  explicit JsonWriter(std::FILE* out) : out_(out) {}

  void begin_object() { open('{'); }
  void end_object() { close('}'); }
  void begin_array() { open('['); }
  void end_array() { close(']'); }

  void key(std::string_view k) {
    separate();
    write_string(k);
    std::fputc(':', out_);
    after_key_ = true;
  }
  void value(std::string_view s) { separate(); write_string(s); }
  void value(const char* s) { value(std::string_view(s)); }
  void value(bool b) { separate(); std::fputs(b ? "true" : "false", out_); }
  void value(int64_t v) { separate(); std::fprintf(out_, "%lld", static_cast<long long>(v)); }
  void value(uint64_t v) { separate(); std::fprintf(out_, "%llu", static_cast<unsigned long long>(v)); }
  void value(double v) {
    separate();
    if (std::isfinite(v)) {
      std::fprintf(out_, "%.17g", v);
    } else {
      std::fputs("null", out_);  // JSON has no NaN or infinity
    }
  }
  void null() { separate(); std::fputs("null", out_); }

  template <class T>
  void field(std::string_view k, const T& v) {
    key(k);
    value(v);
  }

 private:
  void open(char c) {
    separate();
    std::fputc(c, out_);
    first_.push_back(true);
  }
  void close(char c) {
    first_.pop_back();
    std::fputc(c, out_);
  }
  // Emits the comma before every element but the first of its container (not after a key).
  void separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) std::fputc(',', out_);
      first_.back() = false;
    }
  }
  void write_string(std::string_view s) {
    std::fputc('"', out_);
    for (unsigned char c : s) {
      switch (c) {
        case '"': std::fputs("\\\"", out_); break;
        case '\\': std::fputs("\\\\", out_); break;
        case '\n': std::fputs("\\n", out_); break;
        case '\r': std::fputs("\\r", out_); break;
        case '\t': std::fputs("\\t", out_); break;
        default:
          if (c < 0x20) {
            std::fprintf(out_, "\\u%04x", c);
          } else {
            std::fputc(c, out_);  // UTF-8 passes through unchanged
          }
      }
    }
    std::fputc('"', out_);
  }

  std::FILE* out_;
  std::vector<bool> first_;
  bool after_key_ = false;
};

}  // namespace ktx::cli
