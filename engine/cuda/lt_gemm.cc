#include "engine/cuda/lt_gemm.h"

#include <cublasLt.h>
#include <cuda_runtime.h>

#include "absl/strings/str_cat.h"

namespace para::cuda {

// Row-major C[M, N] = X[M, K] · W[N, K]ᵀ is, in cuBLASLt's column-major terms, Cᵀ[N, M] =
// op(W)[N, K] · Xᵀ[K, M] with W seen as a column-major [K, N] matrix, transposed.
struct LtGemm::Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  ~Plan() {
    if (a) cublasLtMatrixLayoutDestroy(a);
    if (b) cublasLtMatrixLayoutDestroy(b);
    if (c) cublasLtMatrixLayoutDestroy(c);
    if (desc) cublasLtMatmulDescDestroy(desc);
  }
};

absl::StatusOr<std::unique_ptr<LtGemm>> LtGemm::Create(int64_t workspace_bytes) {
  auto g = std::unique_ptr<LtGemm>(new LtGemm());
  if (cublasLtCreate(&g->handle_) != CUBLAS_STATUS_SUCCESS)
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
  if (handle_) cublasLtDestroy(handle_);
}

absl::StatusOr<LtGemm::Plan*> LtGemm::GetPlan(const Key& key) {
  if (auto it = plans_.find(key); it != plans_.end()) return it->second.get();
  const auto [m, n, k, ldx, ldc, accumulate] = key;
  auto p = std::make_unique<Plan>();
  const std::string shape = absl::StrCat("m=", m, " n=", n, " k=", k);
  if (cublasLtMatmulDescCreate(&p->desc, CUBLAS_COMPUTE_32F, CUDA_R_32F) != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError("cublasLtMatmulDescCreate failed for " + shape);
  const cublasOperation_t trans_a = CUBLAS_OP_T, trans_b = CUBLAS_OP_N;
  cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &trans_a, sizeof(trans_a));
  cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &trans_b, sizeof(trans_b));
  // A = W: column-major [K, N], ld K. B = X: column-major [K, M], ld ldx. C: [N, M], ld ldc.
  if (cublasLtMatrixLayoutCreate(&p->a, CUDA_R_16BF, k, n, k) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&p->b, CUDA_R_16BF, k, m, ldx) != CUBLAS_STATUS_SUCCESS ||
      cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, n, m, ldc) != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError("cublasLtMatrixLayoutCreate failed for " + shape);
  cublasLtMatmulPreference_t pref = nullptr;
  cublasLtMatmulPreferenceCreate(&pref);
  const uint64_t ws = static_cast<uint64_t>(workspace_bytes_);
  cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                       sizeof(ws));
  cublasLtMatmulHeuristicResult_t result{};
  int found = 0;
  const cublasStatus_t st = cublasLtMatmulAlgoGetHeuristic(handle_, p->desc, p->a, p->b, p->c, p->c,
                                                           pref, 1, &result, &found);
  cublasLtMatmulPreferenceDestroy(pref);
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
  const cublasStatus_t st = cublasLtMatmul(handle_, (*plan)->desc, &alpha, w, (*plan)->a, x,
                                           (*plan)->b, &beta, c, (*plan)->c, c, (*plan)->c,
                                           &(*plan)->algo, workspace_, workspace_bytes_, stream);
  if (st != CUBLAS_STATUS_SUCCESS)
    return absl::InternalError(absl::StrCat("cublasLtMatmul failed (status ", static_cast<int>(st),
                                            ") for m=", m, " n=", n, " k=", k));
  return absl::OkStatus();
}

}  // namespace para::cuda
