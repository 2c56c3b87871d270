// Vectorised CPU kernels for the forward pass: norms, activations, dot products and the
// GEMM wrapper over OpenBLAS. Pure functions of their arguments; each call touches only the
// memory it is given, so distinct rows may be processed from distinct threads.
#pragma once

#include <cstdint>

#include "engine/thread_pool.h"

namespace para::cpu {

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

// C[M,N] = X[M,K] . W[N,K]^T + beta * C, with W row-major [out, in] as in checkpoints.
// Splits N across the pool's threads; each part is one single-threaded BLAS call. InitBlas()
// must have succeeded.
void Linear(ThreadPool* pool, int64_t m, int64_t n, int64_t k, const float* x, int64_t ldx,
            const float* w, float beta, float* c, int64_t ldc);

}  // namespace para::cpu
