// An owned, 64-byte aligned (2 MiB for large sizes, to allow huge pages) float array.
// Move-only; not thread-safe for writes, concurrent reads are fine.
#pragma once

#include <cstddef>
#include <cstdint>

namespace para {

class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(size_t n);
  ~AlignedBuffer();
  AlignedBuffer(AlignedBuffer&& o) noexcept : data_(o.data_), size_(o.size_) {
    o.data_ = nullptr;
    o.size_ = 0;
  }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept;
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;

  // Grows to at least n floats (contents are not preserved when it grows).
  void EnsureSize(size_t n);
  float* data() { return data_; }
  const float* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  float* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace para
