// The CUDA entry points of a build with CUDA (see engine/device.h).
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/device.h"

namespace para {

bool CudaBuilt() { return true; }

int CudaDeviceCount(std::string* why) {
  int n = 0;
  const cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    if (why != nullptr)
      *why = absl::StrCat("no CUDA device is present (", cudaGetErrorString(e), ")");
    return 0;
  }
  if (n == 0 && why != nullptr) *why = "no CUDA device is present";
  return n;
}

double CudaCopyBandwidthGBps() {
  if (CudaDeviceCount() == 0) return 0;
  const size_t bytes = size_t{1} << 30;
  void *a = nullptr, *b = nullptr;
  if (cudaMalloc(&a, bytes) != cudaSuccess) return 0;
  if (cudaMalloc(&b, bytes) != cudaSuccess) {
    cudaFree(a);
    return 0;
  }
  cudaEvent_t start, stop;
  cudaEventCreate(&start);
  cudaEventCreate(&stop);
  float best_ms = 1e30f;
  for (int i = 0; i < 5; ++i) {
    cudaEventRecord(start);
    cudaMemcpy(b, a, bytes, cudaMemcpyDeviceToDevice);
    cudaEventRecord(stop);
    cudaEventSynchronize(stop);
    float ms = 0;
    cudaEventElapsedTime(&ms, start, stop);
    if (i > 0 && ms > 0) best_ms = std::min(best_ms, ms);
  }
  cudaEventDestroy(start);
  cudaEventDestroy(stop);
  cudaFree(a);
  cudaFree(b);
  return 2.0 * bytes / (best_ms * 1e-3) / 1e9;
}

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model* model, const KvCache* cache,
                                                           std::optional<DType> weights_dtype,
                                                           const CudaBackendOptions& options,
                                                           ThreadPool* pool, std::string* summary) {
  std::string why;
  if (CudaDeviceCount(&why) == 0) return absl::FailedPreconditionError("--device cuda: " + why);
  if (weights_dtype && *weights_dtype != DType::kBF16)
    return absl::InvalidArgumentError(
        absl::StrCat("the CUDA backend holds weights in bf16; --dtype ", DTypeName(*weights_dtype),
                     " is for the CPU backend (use auto or bf16)"));
  ASSIGN_OR_RETURN(std::unique_ptr<cuda::CudaBackend> b,
                   cuda::CudaBackend::Create(model, cache, options, pool));
  cudaDeviceProp prop{};
  cudaGetDeviceProperties(&prop, 0);
  if (summary != nullptr)
    *summary = absl::StrCat("cuda (", prop.name, ", sm_", prop.major, prop.minor, ")");
  return std::unique_ptr<Backend>(std::move(b));
}

}  // namespace para
