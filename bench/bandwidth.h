// This machine's read bandwidth, measured the same way by every benchmark: every thread of the
// pool sums its contiguous slice of a buffer of `bytes` (2 GiB by default: several times the L3,
// and about the bytes a TinyLlama-sized decode step streams), all threads starting together; a
// pass lasts as long as its slowest thread, and the result is the best of `passes` passes, in GB/s
// (1e9 bytes/s). The buffer is 2 MiB aligned with huge pages asked for (AlignedBuffer) and
// written before the first pass. Header-only.
//
// The sum runs on AVX-512 loads where the build targets AVX-512 (the compiler's vectorisation
// otherwise), with two accumulators and a software prefetch 1 KiB ahead: on the development
// machine, idle, that reads 36-38 GB/s on 2 threads, where 4 or 8 accumulators read 29-33 and the
// earlier kernel (two 256-bit accumulators, best of 5) 35-36. A neighbour's compile on the same
// cores halves any of them: see bench/README.md ("Against llama.cpp").
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "engine/aligned_buffer.h"
#include "engine/thread_pool.h"

namespace para::bench {

namespace internal {

#if defined(__AVX512F__)
// The sum of a vector's lanes (not _mm512_reduce_add_ps, which trips GCC 12's -Wuninitialized).
inline float HorizontalSum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float s = 0;
  for (float x : lanes) s += x;
  return s;
}
#endif

// Sums n floats (n a multiple of 64; p 64-byte aligned): two AVX-512 accumulators, and a
// software prefetch of the line 1 KiB ahead of each load.
inline float SumStream(const float* p, int64_t n) {
#if defined(__AVX512F__)
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  for (int64_t i = 0; i < n; i += 32) {
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + 1024, _MM_HINT_T0);
    _mm_prefetch(reinterpret_cast<const char*>(p + i) + 1024 + 64, _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, _mm512_load_ps(p + i));
    a1 = _mm512_add_ps(a1, _mm512_load_ps(p + i + 16));
  }
  return HorizontalSum(_mm512_add_ps(a0, a1));
#else
  float acc[16] = {};
  for (int64_t i = 0; i < n; i += 16)
#pragma omp simd
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  float s = 0;
  for (float a : acc) s += a;
  return s;
#endif
}

}  // namespace internal

inline double MeasureReadBandwidth(ThreadPool& pool, size_t bytes = size_t{2} << 30,
                                   int passes = 10) {
  const int threads = pool.num_threads();
  // Every thread's slice is a whole number of 256-byte blocks.
  const int64_t n = static_cast<int64_t>(bytes / sizeof(float)) / (64 * threads) * (64 * threads);
  AlignedBuffer buf(static_cast<size_t>(n));
  // Each thread first writes the slice it will read (the pages land near it).
  pool.RunOnAll([&](int t) {
    std::fill(buf.data() + n * t / threads, buf.data() + n * (t + 1) / threads, 1.0f);
  });
  double best = 0;
  std::vector<float> sums(threads);
  std::vector<double> secs(threads);
  for (int rep = 0; rep < passes; ++rep) {
    std::atomic<int> ready{0};
    pool.RunOnAll([&](int t) {
      ready.fetch_add(1);
      while (ready.load() < threads) {
      }
      const auto t0 = std::chrono::steady_clock::now();
      sums[t] = internal::SumStream(buf.data() + n * t / threads, n / threads);
      secs[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
    const double slowest = *std::max_element(secs.begin(), secs.end());
    best = std::max(best, static_cast<double>(n * sizeof(float)) / slowest / 1e9);
  }
  return best;
}

// MeasureStreamBandwidth reads the way kernels that walk many weight rows at once do (8 rows of
// 4 KiB per thread side by side, 64 bytes of each in turn, with software prefetch): the bound
// bench/kernels_bench.cc compares its GEMV-like kernels with.
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
