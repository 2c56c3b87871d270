// Vectorised CPU kernels for the forward pass: norms, activations, dot products and the
// GEMM wrapper over OpenBLAS. Pure functions of their arguments; each call touches only the
// memory it is given, so distinct rows may be processed from distinct threads.
#pragma once

#include <cstdint>

#include "engine/dtype.h"
#include "engine/thread_pool.h"

namespace para::cpu {

// exp(x) in float32 within a few ulp over the whole float range (0 below -87.3, clamped above
// 88.7), written without calls or branches so loops that use it vectorise. x = n·ln2 + r with
// n = round(x / ln2) and r reduced in two steps (ln2 split so n·ln2_hi is exact), |r| <= ln2/2;
// e^r by a degree-6 polynomial fitted here to relative error 1e-7; 2^n goes into the exponent.
// NaN gives NaN (without the undefined float-to-int conversion of a NaN exponent).
inline float ExpF(float x) {
  const bool nan = x != x;
  x = nan ? 0.0f : (x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x));
  const float n = __builtin_floorf(x * 1.44269504088896341f + 0.5f);
  const float r = (x - n * 0.693145751953125f) - n * 1.428606765330187e-06f;
  float p = 0.0013859296450391412f;
  p = p * r + 0.008374767377972603f;
  p = p * r + 0.04166772589087486f;
  p = p * r + 0.1666642129421234f;
  p = p * r + 0.4999999403953552f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  const int32_t bits = __builtin_bit_cast(int32_t, p) + (static_cast<int32_t>(n) << 23);
  const float y = x <= -87.3f ? 0.0f : __builtin_bit_cast(float, bits);
  return nan ? __builtin_nanf("") : y;
}

// out[i] = x[i] / sqrt(mean(x^2) + eps) * w[i], for one row of n.
void RmsNorm(const float* x, const float* w, float eps, int64_t n, float* out);
// out[i] = silu(gate[i]) * up[i]
void SiluMul(const float* gate, const float* up, int64_t n, float* out);
float Dot(const float* a, const float* b, int64_t n);
// y += a * x
void Axpy(float a, const float* x, int64_t n, float* y);
// Rotary embedding (Hugging Face "rotate_half" layout) of one head in place:
// x[i], x[i+d/2] rotated by the angle with cos[i], sin[i], i < d/2.
void Rope(const float* cos, const float* sin, int64_t half, float* x);

// One row's attention-input epilogue, in place on the row's q, k, v of the fused QKV output:
// q *= lq (PARA, when lq is non-null) then RoPE; k RoPE; v *= lv (when non-null).
void QkvRowEpilogue(float* q, float* k, float* v, int64_t nq, int64_t nkv, int64_t hd,
                    const float* cos, const float* sin, const float* lq, const float* lv);

// Writes n floats as `dtype` (F32, or F16 / BF16 rounded to nearest even) at `dst`: a key or
// value row going into the paged cache.
void StoreRow(DType dtype, const float* src, int64_t n, void* dst);
// Dot product and y += a * x where the second operand is a cache row of F16 or BF16 elements,
// converted in registers.
float DotF16(const float* a, const uint16_t* b, int64_t n);
float DotBF16(const float* a, const uint16_t* b, int64_t n);
void AxpyF16(float a, const uint16_t* x, int64_t n, float* y);
void AxpyBF16(float a, const uint16_t* x, int64_t n, float* y);
// One row of SwiGLU: out = silu(gate) * (up * lu), lu may be null (unscaled).
void SwiGluRow(const float* gate, const float* up, const float* lu, int64_t n, float* out);

// C[M,N] = X[M,K] . W[N,K]^T + beta * C, with W row-major [out, in] as in checkpoints.
// Splits N across the pool's threads; each part is one single-threaded BLAS call. InitBlas()
// must have succeeded.
void Linear(ThreadPool* pool, int64_t m, int64_t n, int64_t k, const float* x, int64_t ldx,
            const float* w, float beta, float* c, int64_t ldc);

}  // namespace para::cpu
