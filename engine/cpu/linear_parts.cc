#include "engine/cpu/linear_parts.h"

#include "engine/cpu/kernels.h"

namespace para::cpu {

void LinearParts(ThreadPool* pool, int64_t m, std::span<const WeightView> parts, const float* x,
                 int64_t ldx, float beta, float* y, int64_t ldy, LinearScratch* scratch) {
  int64_t offset = 0;
  for (const WeightView& w : parts) {
    const float* f32 = static_cast<const float*>(w.data);
    if (w.type != DType::kF32) {
      scratch->converted.EnsureSize(w.rows * w.cols);
      pool->ParallelFor(
          w.rows,
          [&](int64_t b, int64_t e) {
            ConvertToF32(w.type, static_cast<const uint8_t*>(w.data) + b * w.cols * 2,
                         (e - b) * w.cols, scratch->converted.data() + b * w.cols);
          },
          64);
      f32 = scratch->converted.data();
    }
    Linear(pool, m, w.rows, w.cols, x, ldx, f32, beta, y + offset, ldy);
    offset += w.rows;
  }
}

}  // namespace para::cpu
