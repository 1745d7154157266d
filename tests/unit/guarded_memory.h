// Test memory that ends where an unreadable page begins: a kernel that reads one element past
// its data crashes the test instead of passing by luck.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <cstring>
#include <vector>

// A copy of `values` whose last byte is the last readable one (a PROT_NONE page follows). Its
// start is only as aligned as its size makes it.
template <typename T>
class GuardedArray {
 public:
  explicit GuardedArray(const std::vector<T>& values) {
    const size_t bytes = values.size() * sizeof(T);
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t data_pages = (bytes + page - 1) / page;
    size_ = (data_pages + 1) * page;
    void* p = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(p != MAP_FAILED);
    base_ = static_cast<uint8_t*>(p);
    REQUIRE(mprotect(base_ + data_pages * page, page, PROT_NONE) == 0);
    data_ = reinterpret_cast<T*>(base_ + data_pages * page - bytes);
    if (bytes != 0) std::memcpy(data_, values.data(), bytes);
  }
  ~GuardedArray() { munmap(base_, size_); }
  GuardedArray(const GuardedArray&) = delete;
  GuardedArray& operator=(const GuardedArray&) = delete;
  const T* data() const { return data_; }
  T* mutable_data() { return data_; }  // for kernels that work in place

 private:
  uint8_t* base_ = nullptr;
  T* data_ = nullptr;
  size_t size_ = 0;
};

using GuardedBytes = GuardedArray<uint8_t>;
