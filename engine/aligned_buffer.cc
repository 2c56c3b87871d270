#include "engine/aligned_buffer.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace para {
namespace {

constexpr size_t kHugeThreshold = 4u << 20;

float* Allocate(size_t n) {
  if (n == 0) return nullptr;
  const size_t bytes = n * sizeof(float);
  const size_t align = bytes >= kHugeThreshold ? (2u << 20) : 64;
  const size_t rounded = (bytes + align - 1) / align * align;
  void* p = std::aligned_alloc(align, rounded);
  if (p == nullptr) throw std::bad_alloc();
  if (bytes >= kHugeThreshold) ::madvise(p, rounded, MADV_HUGEPAGE);
  return static_cast<float*>(p);
}

}  // namespace

AlignedBuffer::AlignedBuffer(size_t n) : data_(Allocate(n)), size_(n) {}

AlignedBuffer::~AlignedBuffer() { std::free(data_); }

AlignedBuffer& AlignedBuffer::operator=(AlignedBuffer&& o) noexcept {
  if (this != &o) {
    std::free(data_);
    data_ = o.data_;
    size_ = o.size_;
    o.data_ = nullptr;
    o.size_ = 0;
  }
  return *this;
}

void AlignedBuffer::EnsureSize(size_t n) {
  if (n <= size_) return;
  std::free(data_);
  data_ = Allocate(n);
  size_ = n;
}

}  // namespace para
