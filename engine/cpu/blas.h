// Runtime binding to OpenBLAS, loaded with dlopen on first use.
//
// Why not link it: Debian's OpenBLAS (0.3.21, DYNAMIC_ARCH) does not recognise recent Xeons and
// falls back to its SSE3 "Prescott" kernels, 4x slower than its AVX-512 ones. It chooses kernels
// in its library constructor from OPENBLAS_CORETYPE, which a linked library would run before
// main. Loading it ourselves lets InitBlas pick the kernel family from the CPU's features first
// (an OPENBLAS_CORETYPE set by the user always wins). InitBlas also makes OpenBLAS
// single-threaded (OPENBLAS_NUM_THREADS=1 before loading, so it starts no worker threads): the
// engine's own pool splits the work.
// InitBlas is thread-safe and idempotent; it must succeed before Sgemm/Sgemv are called, which
// are then safe from any thread.
#pragma once

#include <cstdint>

#include "absl/status/status.h"

namespace para::cpu {

absl::Status InitBlas();

// C[m,n] = A[m,k] . B[n,k]^T + beta C (row-major, B transposed as checkpoints store weights).
void SgemmNT(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float beta, float* c, int64_t ldc);
// y[n] = A[n,k] . x + beta y (row-major).
void Sgemv(int64_t n, int64_t k, const float* a, int64_t lda, const float* x, float beta, float* y);

// The OpenBLAS kernel family in use (e.g. "SkylakeX"), for reports; "" before InitBlas.
const char* BlasKernelName();

}  // namespace para::cpu
