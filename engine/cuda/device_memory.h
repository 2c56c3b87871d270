// Owning handles for CUDA memory: DeviceBuffer (cudaMalloc) and PinnedBuffer (page-locked host
// memory, cudaMallocHost), each a single allocation freed on destruction, plus Carve, which hands
// out aligned pieces of one allocation. Move-only; not thread-safe (the backend's engine thread).
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace para::cuda {

// OK, or INTERNAL naming `what` and CUDA's error string.
inline absl::Status CudaCheck(cudaError_t e, const char* what) {
  if (e == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(what, ": ", cudaGetErrorString(e)));
}

template <bool kPinned>
class CudaBuffer {
 public:
  CudaBuffer() = default;
  ~CudaBuffer() { Reset(); }
  CudaBuffer(CudaBuffer&& o) noexcept
      : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  CudaBuffer& operator=(CudaBuffer&& o) noexcept {
    if (this != &o) {
      Reset();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  // Replaces the allocation by one of `bytes` (RESOURCE_EXHAUSTED naming `what` on failure).
  absl::Status Allocate(size_t bytes, const char* what) {
    Reset();
    const cudaError_t e = kPinned ? cudaMallocHost(&p_, bytes) : cudaMalloc(&p_, bytes);
    if (e != cudaSuccess) {
      p_ = nullptr;
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes of ", kPinned ? "pinned host" : "device",
                       " memory for ", what, ": ", cudaGetErrorString(e)));
    }
    n_ = bytes;
    return absl::OkStatus();
  }
  void Reset() {
    if (p_ != nullptr) kPinned ? cudaFreeHost(p_) : cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  uint8_t* data() const { return static_cast<uint8_t*>(p_); }
  size_t size() const { return n_; }

 private:
  void* p_ = nullptr;
  size_t n_ = 0;
};
using DeviceBuffer = CudaBuffer<false>;
using PinnedBuffer = CudaBuffer<true>;

// Hands out consecutive 256-byte-aligned pieces of [base, base + capacity); with a null base it
// only counts (a first pass that sizes the allocation).
class Carve {
 public:
  explicit Carve(uint8_t* base = nullptr) : base_(base) {}
  template <typename T>
  T* Take(int64_t count) {
    used_ = (used_ + 255) / 256 * 256;
    T* p = base_ ? reinterpret_cast<T*>(base_ + used_) : nullptr;
    used_ += static_cast<size_t>(count) * sizeof(T);
    return p;
  }
  size_t used() const { return used_; }

 private:
  uint8_t* base_;
  size_t used_ = 0;
};

}  // namespace para::cuda
