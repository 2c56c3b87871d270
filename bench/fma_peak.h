// This machine's arithmetic peak, measured: every thread of the pool runs independent chains of
// fused multiply-adds (enough of them to hide the FMA latency on two FMA ports) on registers only,
// so nothing but the FMA units limits it. GFLOP/s counts a multiply-add as 2 FLOPs; best of
// `passes` passes. Header-only; returns 0 for an instruction set the build does not target.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "bench/bandwidth.h"
#include "engine/thread_pool.h"

namespace para::bench {

enum class FmaIsa { kAvx512, kAvx2, kAvx512Bf16 };

inline const char* FmaIsaName(FmaIsa isa) {
  switch (isa) {
    case FmaIsa::kAvx512:
      return "AVX-512 FMA (f32)";
    case FmaIsa::kAvx2:
      return "AVX2 FMA (f32)";
    case FmaIsa::kAvx512Bf16:
      return "AVX512-BF16 dot (vdpbf16ps)";
  }
  return "?";
}

namespace internal {

// 12 independent accumulators: FMA latency 4 cycles x 2 ports needs at least 8 in flight.
inline constexpr int kChains = 12;

// FLOPs done by `iters` iterations, or 0 when the build lacks the instruction set.
inline double FmaChains(FmaIsa isa, int64_t iters, float* sink) {
  switch (isa) {
    case FmaIsa::kAvx512: {
#if defined(__AVX512F__)
      __m512 acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
      const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
      for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
      }
      __m512 s = acc[0];
      for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
      *sink += internal::HorizontalSum(s);
      return 2.0 * 16 * kChains * static_cast<double>(iters);
#else
      return 0;
#endif
    }
    case FmaIsa::kAvx2: {
#if defined(__AVX2__) && defined(__FMA__)
      __m256 acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = _mm256_set1_ps(0.001f * c);
      const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
      for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
      }
      __m256 s = acc[0];
      for (int c = 1; c < kChains; ++c) s = _mm256_add_ps(s, acc[c]);
      alignas(32) float o[8];
      _mm256_store_ps(o, s);
      for (float x : o) *sink += x;
      return 2.0 * 8 * kChains * static_cast<double>(iters);
#else
      return 0;
#endif
    }
    case FmaIsa::kAvx512Bf16: {
#if defined(__AVX512BF16__)
      // Each vdpbf16ps: 16 lanes x 2 bf16 products accumulated in f32 = 64 FLOPs.
      __m512 acc[kChains];
      for (int c = 0; c < kChains; ++c) acc[c] = _mm512_set1_ps(0.001f * c);
      const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80);  // 1.0 in bf16
      const __m512bh b = (__m512bh)_mm512_set1_epi16(0x3380);  // ~6e-8 in bf16
      for (int64_t i = 0; i < iters; ++i) {
#pragma GCC unroll 12
        for (int c = 0; c < kChains; ++c) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
      }
      __m512 s = acc[0];
      for (int c = 1; c < kChains; ++c) s = _mm512_add_ps(s, acc[c]);
      *sink += internal::HorizontalSum(s);
      return 4.0 * 16 * kChains * static_cast<double>(iters);
#else
      return 0;
#endif
    }
  }
  return 0;
}

}  // namespace internal

// GFLOP/s of all the pool's threads together (each runs its own chains for ~`seconds`).
inline double MeasureFmaPeak(ThreadPool& pool, FmaIsa isa, int passes = 5, double seconds = 0.2) {
  float sink = 0;
  // Calibrate the iteration count on one thread so a pass lasts about `seconds`.
  int64_t iters = 1 << 16;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    if (internal::FmaChains(isa, iters, &sink) == 0) return 0;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (s > seconds / 8) {
      iters = static_cast<int64_t>(iters * seconds / s);
      break;
    }
    iters *= 4;
  }
  double best = 0;
  std::vector<float> sinks(pool.num_threads());
  for (int p = 0; p < passes; ++p) {
    std::atomic<int> ready{0};
    std::vector<double> flops(pool.num_threads()), secs(pool.num_threads());
    pool.RunOnAll([&](int t) {
      // Start together, so the threads' passes overlap.
      ready.fetch_add(1);
      while (ready.load() < pool.num_threads()) {
      }
      const auto t0 = std::chrono::steady_clock::now();
      flops[t] = internal::FmaChains(isa, iters, &sinks[t]);
      secs[t] = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    });
    double total = 0, slowest = 0;
    for (int t = 0; t < pool.num_threads(); ++t) {
      total += flops[t];
      slowest = std::max(slowest, secs[t]);
    }
    best = std::max(best, total / slowest / 1e9);
  }
  volatile float keep = sink;
  (void)keep;
  return best;
}

}  // namespace para::bench
