// The CUDA entry points of a build without CUDA (see engine/device.h).
#include "engine/device.h"

namespace para {

bool CudaBuilt() { return false; }

int CudaDeviceCount(std::string* why) {
  if (why != nullptr)
    *why = "this build has no CUDA backend (nvcc was not found at configure time)";
  return 0;
}

double CudaCopyBandwidthGBps() { return 0; }

absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model*, const KvCache*,
                                                           std::optional<DType>,
                                                           const CudaBackendOptions&, ThreadPool*,
                                                           std::string*) {
  return absl::FailedPreconditionError(
      "--device cuda: this build has no CUDA backend (nvcc was not found at configure time)");
}

}  // namespace para
