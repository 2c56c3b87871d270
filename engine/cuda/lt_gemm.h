// GEMMs of the CUDA backend through cuBLASLt: C[M, N] (+)= X[M, K] · W[N, K]ᵀ with X and W BF16
// row-major (W as in checkpoints, [out, in]), F32 accumulation and an F32 C. For each distinct
// shape (M, N, K, leading dimensions, beta) the matmul descriptors and cuBLASLt's heuristic
// algorithm are chosen once and cached; the workspace is allocated once, at Create. Owned by the
// backend; used from the engine thread only (one stream).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <tuple>

#include "absl/status/statusor.h"

typedef struct CUstream_st* cudaStream_t;
struct cublasLtContext;

namespace para::cuda {

class LtGemm {
 public:
  static absl::StatusOr<std::unique_ptr<LtGemm>> Create(int64_t workspace_bytes);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // c[m, n] = x · wᵀ + beta · c; beta is 0 or 1. Fails (INTERNAL, naming the shape) when cuBLASLt
  // has no algorithm for it or the launch fails.
  absl::Status Run(int64_t m, int64_t n, int64_t k, const uint16_t* x, int64_t ldx,
                   const uint16_t* w, float beta, float* c, int64_t ldc, cudaStream_t stream);
  // Shapes seen so far (each got one heuristic query).
  size_t cached_plans() const { return plans_.size(); }

 private:
  struct Plan;
  using Key = std::tuple<int64_t, int64_t, int64_t, int64_t, int64_t, bool>;
  LtGemm() = default;
  absl::StatusOr<Plan*> GetPlan(const Key& key);

  cublasLtContext* handle_ = nullptr;
  void* workspace_ = nullptr;
  int64_t workspace_bytes_ = 0;
  std::map<Key, std::unique_ptr<Plan>> plans_;
};

}  // namespace para::cuda
