// Activations that follow the modules across devices (see activation.h).
#include "exec/activation.h"

#include <fmt/format.h>

#include <cstring>

#include "ktx/error.h"

namespace ktx::exec {

using registry::Device;

Activation::~Activation() {
  for (Copy& c : copies_) {
    if (!c.device.is_cpu() && c.data != nullptr) c.where.backend->free(c.where.index, c.data);
  }
}

Activation::Copy& Activation::copy_on(const Device& device, size_t bytes) {
  Copy* copy = nullptr;
  for (Copy& c : copies_) {
    if (c.device == device) copy = &c;
  }
  if (copy == nullptr) {
    Copy c;
    c.device = device;
    if (!device.is_cpu()) {
      std::optional<registry::DeviceHandle> where =
          backends_ != nullptr ? backends_->locate(device) : std::nullopt;
      if (!where) {
        throw Error(ErrorCode::kInvalidArgument,
                    fmt::format("device {} is not served by any loaded backend", device.name()));
      }
      c.where = *where;
    }
    copies_.push_back(c);
    copy = &copies_.back();
  }
  if (copy->capacity < bytes) {
    if (device.is_cpu()) {
      host_.resize(bytes);
      copy->data = host_.data();
    } else {
      // Grown to the new size only: activations grow to the largest batch once and stay.
      void* fresh = copy->where.backend->alloc(copy->where.index, bytes);
      if (copy->current && copy->data != nullptr) {
        // Never needed by the executor (it writes before it reads a grown buffer), but keeps
        // the current value current rather than silently dropping it.
        try {
          std::vector<uint8_t> staging(copy->capacity);
          copy->where.backend->copy(copy->where.index, staging.data(), copy->data, copy->capacity,
                                    KTX_COPY_DEVICE_TO_HOST);
          copy->where.backend->copy(copy->where.index, fresh, staging.data(), copy->capacity,
                                    KTX_COPY_HOST_TO_DEVICE);
        } catch (...) {
          copy->where.backend->free(copy->where.index, fresh);
          throw;
        }
      }
      if (copy->data != nullptr) copy->where.backend->free(copy->where.index, copy->data);
      copy->data = fresh;
    }
    copy->capacity = bytes;
  }
  return *copy;
}

Activation::Copy* Activation::current_copy() {
  // The host first: from there every device is one copy away.
  for (Copy& c : copies_) {
    if (c.current && c.device.is_cpu()) return &c;
  }
  for (Copy& c : copies_) {
    if (c.current) return &c;
  }
  return nullptr;
}

void Activation::host_to_device(Copy& dst, const void* src, size_t bytes) {
  dst.where.backend->copy(dst.where.index, dst.data, src, bytes, KTX_COPY_HOST_TO_DEVICE);
  if (stats_ != nullptr) {
    stats_->to_device_bytes += bytes;
    stats_->to_device_copies += 1;
  }
}

void Activation::device_to_host(void* dst, const Copy& src, size_t bytes) {
  src.where.backend->copy(src.where.index, dst, src.data, bytes, KTX_COPY_DEVICE_TO_HOST);
  if (stats_ != nullptr) {
    stats_->to_host_bytes += bytes;
    stats_->to_host_copies += 1;
  }
}

void* Activation::write(const Device& device, size_t bytes) {
  Copy& c = copy_on(device, bytes);
  for (Copy& other : copies_) other.current = false;
  c.current = true;
  valid_bytes_ = bytes;
  return c.data;
}

const void* Activation::read(const Device& device, size_t bytes) {
  if (bytes > valid_bytes_) {
    throw Error(ErrorCode::kInternal,
                fmt::format("an activation read of {} bytes on {} after a write of {}", bytes,
                            device.name(), valid_bytes_));
  }
  Copy* src = current_copy();
  if (src == nullptr) {
    throw Error(ErrorCode::kInternal, "an activation was read before it was written");
  }
  if (src->device == device) return src->data;
  const size_t valid = valid_bytes_;
  if (device.is_cpu()) {
    const Copy source = *src;  // copy_on may grow copies_
    Copy& host = copy_on(device, valid);
    device_to_host(host.data, source, valid);
    host.current = true;
    return host.data;
  }
  if (!src->device.is_cpu()) {
    // Accelerator to accelerator: through the host copy, which becomes current too.
    read(Device::cpu(), valid);
  }
  const void* host_data = copy_on(Device::cpu(), valid).data;
  Copy& dst = copy_on(device, valid);
  host_to_device(dst, host_data, valid);
  dst.current = true;
  return dst.data;
}

void* Activation::update(const Device& device, size_t bytes) {
  read(device, bytes);
  const size_t valid = valid_bytes_;
  void* data = write(device, bytes);
  valid_bytes_ = valid;
  return data;
}

void Activation::read_into(void* out, size_t bytes) {
  if (bytes > valid_bytes_) {
    throw Error(
        ErrorCode::kInternal,
        fmt::format("an activation read of {} bytes after a write of {}", bytes, valid_bytes_));
  }
  const Copy* src = current_copy();
  if (src == nullptr) {
    throw Error(ErrorCode::kInternal, "an activation was read before it was written");
  }
  if (src->device.is_cpu()) {
    std::memcpy(out, src->data, bytes);
  } else {
    device_to_host(out, *src, bytes);
  }
}

}  // namespace ktx::exec
