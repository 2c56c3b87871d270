#include "engine/cpu/kernels.h"

#include "engine/cpu/blas.h"

#include <immintrin.h>

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
                    const float* cos, const float* sin, const float* lq, const float* lv) {
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
  for (int64_t g = 0; g < nkv; ++g) Rope(cos, sin, half, k + g * hd);
}

void StoreRow(DType dtype, const float* src, int64_t n, void* dst) {
  if (dtype == DType::kF32) {
    std::memcpy(dst, src, n * sizeof(float));
    return;
  }
  auto* out = static_cast<uint16_t*>(dst);
  int64_t i = 0;
  if (dtype == DType::kF16) {
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                       _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) out[i] = F32ToF16(src[i]);
    return;
  }
  for (; i < n; ++i) out[i] = F32ToBf16(src[i]);
}

namespace {

inline __m256 LoadF16x8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 LoadBF16x8(const uint16_t* p) {
  const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}
inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

template <__m256 (*Load)(const uint16_t*), float (*Scalar)(uint16_t)>
float DotHalf(const float* a, const uint16_t* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), Load(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), Load(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), Load(b + i), acc0);
  float s = HorizontalSum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * Scalar(b[i]);
  return s;
}

template <__m256 (*Load)(const uint16_t*), float (*Scalar)(uint16_t)>
void AxpyHalf(float a, const uint16_t* x, int64_t n, float* y) {
  const __m256 va = _mm256_set1_ps(a);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, Load(x + i), _mm256_loadu_ps(y + i)));
  for (; i < n; ++i) y[i] += a * Scalar(x[i]);
}

}  // namespace

float DotF16(const float* a, const uint16_t* b, int64_t n) {
  return DotHalf<LoadF16x8, F16ToF32>(a, b, n);
}
float DotBF16(const float* a, const uint16_t* b, int64_t n) {
  return DotHalf<LoadBF16x8, Bf16ToF32>(a, b, n);
}
void AxpyF16(float a, const uint16_t* x, int64_t n, float* y) {
  AxpyHalf<LoadF16x8, F16ToF32>(a, x, n, y);
}
void AxpyBF16(float a, const uint16_t* x, int64_t n, float* y) {
  AxpyHalf<LoadBF16x8, Bf16ToF32>(a, x, n, y);
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
