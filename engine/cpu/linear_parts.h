// y = x · Wᵀ for a weight matrix given as row parts of any stored dtype (F32, F16, BF16):
// y[m, n] = beta * y[m, n] + sum_k x[m, k] * W[n, k], W being the parts stacked by rows.
// Stateless apart from the caller's scratch; one call at a time per scratch.
#pragma once

#include <cstdint>
#include <span>

#include "engine/aligned_buffer.h"
#include "engine/dtype.h"
#include "engine/thread_pool.h"

namespace para::cpu {

// A row-major [rows, cols] matrix (rows = outputs, cols = inputs, as checkpoints store them) of
// `type`, possibly unaligned (memory-mapped).
struct WeightView {
  const void* data = nullptr;
  DType type = DType::kF32;
  int64_t rows = 0, cols = 0;
};

struct LinearScratch {
  AlignedBuffer converted;
};

void LinearParts(ThreadPool* pool, int64_t m, std::span<const WeightView> parts, const float* x,
                 int64_t ldx, float beta, float* y, int64_t ldy, LinearScratch* scratch);

}  // namespace para::cpu
