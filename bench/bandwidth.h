// This machine's read bandwidth, measured the same way by every benchmark: each thread of the
// pool sums its slice of a buffer of `bytes`; the best of 5 passes, in GB/s. Header-only.
// MeasureStreamBandwidth reads the same way kernels that walk many weight rows at once do (8 rows
// of 4 KiB per thread side by side, 64 bytes of each in turn, with software prefetch); on this
// machine it gets ~20-30% more than one linear stream per thread, so it is the tighter bound for
// them.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

#include "engine/aligned_buffer.h"
#include "engine/thread_pool.h"

namespace para::bench {

inline double MeasureReadBandwidth(ThreadPool& pool, size_t bytes = size_t{2} << 30) {
  const size_t n = bytes / sizeof(float);
  AlignedBuffer buf(n);
  pool.ParallelFor(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf.data()[i] = 1.0f;
  });
  double best = 0;
  std::vector<float> sums(pool.num_threads());
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.RunOnAll([&](int t) {
      const int64_t b = static_cast<int64_t>(n) * t / pool.num_threads();
      const int64_t e = static_cast<int64_t>(n) * (t + 1) / pool.num_threads();
      float acc[16] = {};
      for (int64_t i = b; i < e; i += 16)
#pragma omp simd
        for (int j = 0; j < 16; ++j) acc[j] += buf.data()[i + j];
      float s = 0;
      for (float a : acc) s += a;
      sums[t] = s;
    });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / secs / 1e9);
  }
  return best;
}

inline double MeasureStreamBandwidth(ThreadPool& pool, size_t bytes = size_t{2} << 30) {
  constexpr int64_t kRow = 4096 / sizeof(float), kRows = 8;
  const int64_t n = static_cast<int64_t>(bytes / sizeof(float)) / (kRow * kRows) * (kRow * kRows);
  AlignedBuffer buf(n);
  pool.ParallelFor(n, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf.data()[i] = 1.0f;
  });
  double best = 0;
  std::vector<float> sums(pool.num_threads());
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.RunOnAll([&](int t) {
      const int64_t groups = n / (kRow * kRows), per = groups / pool.num_threads();
      const int64_t g0 = per * t, g1 = t + 1 == pool.num_threads() ? groups : per * (t + 1);
      float acc[16] = {};
      for (int64_t g = g0; g < g1; ++g) {
        const float* p = buf.data() + g * kRow * kRows;
        for (int64_t off = 0; off < kRow; off += 16) {
          for (int64_t r = 0; r < kRows; ++r) {
            __builtin_prefetch(p + r * kRow + off + 128);
#pragma omp simd
            for (int j = 0; j < 16; ++j) acc[j] += p[r * kRow + off + j];
          }
        }
      }
      float s = 0;
      for (float a : acc) s += a;
      sums[t] = s;
    });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, static_cast<double>(n * sizeof(float)) / secs / 1e9);
  }
  return best;
}

}  // namespace para::bench
