#include "engine/cpu/kernels.h"

#include "engine/cpu/blas.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace para::cpu {

void RmsNorm(const float* x, const float* w, float eps, int64_t n, float* out) {
  float ss = 0.f;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float scale = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * w[i];
}

void SiluMul(const float* gate, const float* up, int64_t n, float* out) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + ExpF(-g)) * up[i];
  }
}

float Dot(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

void Axpy(float a, const float* x, int64_t n, float* y) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

void Rope(const float* cos, const float* sin, int64_t half, float* x) {
  float* x2 = x + half;
#pragma omp simd
  for (int64_t i = 0; i < half; ++i) {
    const float a = x[i], b = x2[i];
    x[i] = a * cos[i] - b * sin[i];
    x2[i] = b * cos[i] + a * sin[i];
  }
}

void QkvRowEpilogue(float* q, float* k, float* v, int64_t nq, int64_t nkv, int64_t hd,
                    const float* cos, const float* sin, const float* lq, const float* lv,
                    float* const* k_dst, float* const* v_dst) {
  const int64_t half = hd / 2;
  if (lq != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < nq * hd; ++i) q[i] *= lq[i];
  }
  for (int64_t h = 0; h < nq; ++h) Rope(cos, sin, half, q + h * hd);
  if (lv != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < nkv * hd; ++i) v[i] *= lv[i];
  }
  for (int64_t g = 0; g < nkv; ++g) {
    Rope(cos, sin, half, k + g * hd);
    std::memcpy(k_dst[g], k + g * hd, hd * sizeof(float));
    std::memcpy(v_dst[g], v + g * hd, hd * sizeof(float));
  }
}

void SwiGluRow(const float* gate, const float* up, const float* lu, int64_t n, float* out) {
  if (lu == nullptr) {
    SiluMul(gate, up, n, out);
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + ExpF(-g)) * (up[i] * lu[i]);
  }
}

void Linear(ThreadPool* pool, int64_t m, int64_t n, int64_t k, const float* x, int64_t ldx,
            const float* w, float beta, float* c, int64_t ldc) {
  // Column chunks of at least 64 outputs, aligned to 16 so each thread's slice of W is whole rows
  // on cache-line boundaries.
  const int64_t parts = std::min<int64_t>(pool->num_threads(), std::max<int64_t>(1, n / 64));
  auto run = [&](int64_t p) {
    int64_t n0 = n * p / parts / 16 * 16;
    int64_t n1 = p + 1 == parts ? n : n * (p + 1) / parts / 16 * 16;
    if (n1 <= n0) return;
    if (m == 1) {
      Sgemv(n1 - n0, k, w + n0 * k, k, x, beta, c + n0);
    } else {
      SgemmNT(m, n1 - n0, k, x, ldx, w + n0 * k, k, beta, c + n0, ldc);
    }
  };
  if (parts == 1) {
    run(0);
  } else {
    pool->RunOnAll([&](int t) {
      if (t < parts) run(t);
    });
  }
}

}  // namespace para::cpu
