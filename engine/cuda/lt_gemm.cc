#include "engine/cuda/lt_gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include "absl/strings/str_cat.h"

namespace para::cuda {
namespace {

// cuBLASLt is loaded when the first LtGemm is created, not linked: the library is half a
// gigabyte, and every process of a CPU-only run (tools, tests, the server) would otherwise map it
// at start (about 0.2 s and 200 MB of resident memory each).
struct LtApi {
#define PARA_LT_FN(name) decltype(&::name) name = nullptr;
  PARA_LT_FN(cublasLtCreate)
  PARA_LT_FN(cublasLtDestroy)
  PARA_LT_FN(cublasLtMatmulDescCreate)
  PARA_LT_FN(cublasLtMatmulDescDestroy)
  PARA_LT_FN(cublasLtMatmulDescSetAttribute)
  PARA_LT_FN(cublasLtMatrixLayoutCreate)
  PARA_LT_FN(cublasLtMatrixLayoutDestroy)
  PARA_LT_FN(cublasLtMatmulPreferenceCreate)
  PARA_LT_FN(cublasLtMatmulPreferenceDestroy)
  PARA_LT_FN(cublasLtMatmulPreferenceSetAttribute)
  PARA_LT_FN(cublasLtMatmulAlgoGetHeuristic)
  PARA_LT_FN(cublasLtMatmul)
#undef PARA_LT_FN
};

absl::StatusOr<const LtApi*> LoadLt() {
  static const absl::StatusOr<const LtApi*> api = []() -> absl::StatusOr<const LtApi*> {
    void* lib = nullptr;
    for (const char* name : {"libcublasLt.so.13", "libcublasLt.so.12", "libcublasLt.so"})
      if ((lib = dlopen(name, RTLD_NOW | RTLD_LOCAL)) != nullptr) break;
    if (lib == nullptr)
      return absl::FailedPreconditionError(
          absl::StrCat("cannot load cuBLASLt (libcublasLt.so): ", dlerror()));
    static LtApi a;
    bool ok = true;
#define PARA_LT_LOAD(name) \
  ok &= (a.name = reinterpret_cast<decltype(a.name)>(dlsym(lib, #name))) != nullptr;
    PARA_LT_LOAD(cublasLtCreate)
    PARA_LT_LOAD(cublasLtDestroy)
    PARA_LT_LOAD(cublasLtMatmulDescCreate)
    PARA_LT_LOAD(cublasLtMatmulDescDestroy)
    PARA_LT_LOAD(cublasLtMatmulDescSetAttribute)
    PARA_LT_LOAD(cublasLtMatrixLayoutCreate)
    PARA_LT_LOAD(cublasLtMatrixLayoutDestroy)
    PARA_LT_LOAD(cublasLtMatmulPreferenceCreate)
    PARA_LT_LOAD(cublasLtMatmulPreferenceDestroy)
    PARA_LT_LOAD(cublasLtMatmulPreferenceSetAttribute)
    PARA_LT_LOAD(cublasLtMatmulAlgoGetHeuristic)
    PARA_LT_LOAD(cublasLtMatmul)
#undef PARA_LT_LOAD
    if (!ok)
      return absl::FailedPreconditionError("libcublasLt.so lacks a function the backend uses");
    return &a;
  }();
  return api;
}

const LtApi& Lt() { return **LoadLt(); }  // after a successful LoadLt

}  // namespace

// Row-major C[M, N] = X[M, K] · W[N, K]ᵀ is, in cuBLASLt's column-major terms, Cᵀ[N, M] =
// op(W)[N, K] · Xᵀ[K, M] with W seen as a column-major [K, N] matrix, transposed.
struct LtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) Lt().cublasLtMatrixLayoutDestroy(a);
    if (b) Lt().cublasLtMatrixLayoutDestroy(b);
    if (c) Lt().cublasLtMatrixLayoutDestroy(c);
    if (desc) Lt().cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<LtGemm>> LtGemm::Create(int64_t workspace_bytes) {
  if (absl::StatusOr<const LtApi*> api = LoadLt(); !api.ok()) return api.status();
  auto g = std::unique_ptr<LtGemm>(new LtGemm());
  if (Lt().cublasLtCreate(&g->handle_) != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError("cublasLtCreate failed");
  if (cudaMalloc(&g->workspace_, workspace_bytes) != cudaSuccess)
    return absl::ResourceExhaustedError(
        absl::StrCat("cannot allocate a cuBLASLt workspace of ", workspace_bytes, " bytes"));
  g->workspace_bytes_ = workspace_bytes;
  return g;
}

LtGemm::~LtGemm() {
  plans_.clear();
  if (workspace_) cudaFree(workspace_);
  if (handle_) Lt().cublasLtDestroy(handle_);
}

absl::StatusOr<LtGemm::Plan*> LtGemm::GetPlan(const Key& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  const auto [m, n, k, ldx, ldc, accumulate] = key;
  auto p = std::make_unique<Plan>();
  const std::string shape = absl::StrCat("m=", m, " n=", n, " k=", k);
  if (Lt().cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) !=
      CUBLAS_STATUS_SUCCESS)
    return absl::InternalError("cublasLtMatmulDescCreate failed for " + shape);
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  Lt().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a,
                                      sizeof(trans_a));
  Lt().cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b,
                                      sizeof(trans_b));
  // A = W: column-major [K, N], ld K. B = X: column-major [K, M], ld ldx. C: [N, M], ld ldc.
  if (Lt().cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, k, n, k) != CUBLAS_STATUS_SUCCESS ||
      Lt().cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, k, m, ldx) != CUBLAS_STATUS_SUCCESS ||
      Lt().cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, n, m, ldc) != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError("cublasLtMatrixLayoutCreate failed for " + shape);
  cublasLtMatmulPreference_t pref = nullptr;
  Lt().cublasLtMatmulPreferenceCreate(&pref);
  const uint64_t ws = static_cast<uint64_t>(workspace_bytes_);
  Lt().cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                            sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = Lt().cublasLtMatmulAlgoGetHeuristic(handle_, p->desc, p->a, p->b, p->c,
                                                                p->c, pref, 1, &result, &found);
  Lt().cublasLtMatmulPreferenceDestroy(pref);
  if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    return absl::InternalError("cuBLASLt has no algorithm for the BF16 GEMM " + shape);
  p->algo = result.algo;
  Plan* raw = p.get();
  plans_.emplace(key, std::move(p));
  return raw;
}

absl::Status LtGemm::Run(int64_t m, int64_t n, int64_t k, const uint16_t* x, int64_t ldx,
                         const uint16_t* w, float beta, float* c, int64_t ldc,
                         cudaStream_t stream) {
  if (m == 0) return absl::OkStatus();
  absl::StatusOr<Plan*> plan = GetPlan(Key{m, n, k, ldx, ldc, beta != 0.f});
  if (!plan.ok()) return plan.status();
  const float alpha = 1.f;
  const cublasStatus_t st = Lt().cublasLtMatmul(
      handle_, (*plan)->desc, &alpha, w, (*plan)->a, x, (*plan)->b, &beta, c, (*plan)->c, c,
      (*plan)->c, &(*plan)->algo, workspace_, workspace_bytes_, stream);
  if (st != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("cublasLtMatmul failed (status ", static_cast<int>(st),
                                            ") for m=", m, " n=", n, " k=", k));
  return absl::OkStatus();
}

}  // namespace para::cuda
