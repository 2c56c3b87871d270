#include "engine/cpu/blas.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "absl/strings/str_cat.h"

#ifndef PARA_OPENBLAS_LIBRARY
#define PARA_OPENBLAS_LIBRARY "libopenblas.so.0"
#endif

namespace para::cpu {
namespace {

// CBLAS enum values (fixed by the CBLAS standard).
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

using SgemmFn = void (*)(int, int, int, int, int, int, float, const float*, int, const float*, int,
                         float, float*, int);
using SgemvFn = void (*)(int, int, int, int, float, const float*, int, const float*, int, float,
                         float*, int);
using SetThreadsFn = void (*)(int);
using CoreNameFn = char* (*)();

struct Blas {
  SgemmFn sgemm = nullptr;
  SgemvFn sgemv = nullptr;
  CoreNameFn corename = nullptr;
  absl::Status status;
};

Blas& Lib() {
  static Blas blas;
  return blas;
}

void SelectKernels() {
  // One OpenBLAS thread: the engine's pool splits the work, and OpenBLAS worker threads would
  // spin for ~0.1 s after start-up next to it.
  setenv("OPENBLAS_NUM_THREADS", "1", 0);
  if (std::getenv("OPENBLAS_CORETYPE") != nullptr) return;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl")) {
    setenv("OPENBLAS_CORETYPE", "SkylakeX", 0);
  } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
    setenv("OPENBLAS_CORETYPE", "Haswell", 0);
  }
}

absl::Status Load(Blas* b) {
  SelectKernels();
  void* h = dlopen(PARA_OPENBLAS_LIBRARY, RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr) h = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (h == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("cannot load OpenBLAS: ", dlerror()));
  b->sgemm = reinterpret_cast<SgemmFn>(dlsym(h, "cblas_sgemm"));
  b->sgemv = reinterpret_cast<SgemvFn>(dlsym(h, "cblas_sgemv"));
  b->corename = reinterpret_cast<CoreNameFn>(dlsym(h, "openblas_get_corename"));
  auto set_threads = reinterpret_cast<SetThreadsFn>(dlsym(h, "openblas_set_num_threads"));
  if (!b->sgemm || !b->sgemv || !b->corename || !set_threads)
    return absl::FailedPreconditionError(
        "the loaded BLAS library is not OpenBLAS (cblas_sgemm/openblas_* missing)");
  set_threads(1);
  return absl::OkStatus();
}

}  // namespace

absl::Status InitBlas() {
  static std::once_flag once;
  std::call_once(once, [] { Lib().status = Load(&Lib()); });
  return Lib().status;
}

void SgemmNT(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
             int64_t ldb, float beta, float* c, int64_t ldc) {
  Lib().sgemm(kRowMajor, kNoTrans, kTrans, static_cast<int>(m), static_cast<int>(n),
              static_cast<int>(k), 1.0f, a, static_cast<int>(lda), b, static_cast<int>(ldb), beta,
              c, static_cast<int>(ldc));
}

void Sgemv(int64_t n, int64_t k, const float* a, int64_t lda, const float* x, float beta,
           float* y) {
  Lib().sgemv(kRowMajor, kNoTrans, static_cast<int>(n), static_cast<int>(k), 1.0f, a,
              static_cast<int>(lda), x, 1, beta, y, 1);
}

const char* BlasKernelName() { return Lib().corename ? Lib().corename() : ""; }

}  // namespace para::cpu
