// Which compute devices this build and this machine have, and the CUDA backend's factory. The
// CUDA functions are implemented in engine/cuda/ when CMake found nvcc, and by stubs that report
// "not built" otherwise, so the engine compiles the same either way. Thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/thread_pool.h"

namespace para {

// True when this build has the CUDA backend.
bool CudaBuilt();
// The number of usable CUDA devices (0 when none, or when not built); `why` (optional) says why
// there is none: "this build has no CUDA backend", or the CUDA runtime's answer.
int CudaDeviceCount(std::string* why = nullptr);

// Device-to-device copy bandwidth of device 0 in GB/s (bytes read + written per second, the best
// of a few 1 GiB copies), for benchmarks' bandwidth bounds; 0 without a device.
double CudaCopyBandwidthGBps();

struct CudaBackendOptions {
  int64_t max_step_rows = 8192;              // rows the step scratch is sized for at start
  int64_t adapter_bytes = int64_t{4} << 30;  // device memory for adapter copies
  int64_t max_lora_rank = 64;
};

// The CUDA backend on device 0: uploads the weights (as BF16) and allocates the KV pool, the
// PARA pages and the step scratch. FAILED_PRECONDITION without a device (or without CUDA in this
// build), INVALID_ARGUMENT for a weights dtype it does not hold (it holds BF16), and
// RESOURCE_EXHAUSTED when device memory is short. `summary` gets e.g. "cuda (NVIDIA H200)".
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(const Model* model, const KvCache* cache,
                                                           std::optional<DType> weights_dtype,
                                                           const CudaBackendOptions& options,
                                                           ThreadPool* pool, std::string* summary);

}  // namespace para
