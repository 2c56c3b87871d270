// The model's weights on the device, all in one allocation: every projection as a BF16 [out, in]
// matrix (Q, K and V stacked into one [q_dim + 2 kv_dim, hidden] matrix, gate and up into one
// [2 ffn, hidden], so each is one GEMM), the embedding and LM head BF16, the norm weights F32.
// F32 and F16 checkpoints are rounded to BF16 (nearest even) on the host while being uploaded
// through a pinned staging buffer. Immutable after Upload; owned by the CUDA backend.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/model.h"
#include "engine/thread_pool.h"

namespace para::cuda {

struct DeviceLayerWeights {
  const float *attn_norm, *ffn_norm;
  const uint16_t *qkv, *o, *gate_up, *down;
};

class CudaWeights {
 public:
  static absl::StatusOr<std::unique_ptr<CudaWeights>> Upload(const Model& model, ThreadPool* pool);

  const uint16_t* embed() const { return embed_; }
  const uint16_t* lm_head() const { return lm_head_; }
  const float* final_norm() const { return final_norm_; }
  const std::vector<DeviceLayerWeights>& layers() const { return layers_; }
  int64_t bytes() const { return static_cast<int64_t>(mem_.size()); }

 private:
  CudaWeights() = default;
  DeviceBuffer mem_;
  const uint16_t *embed_ = nullptr, *lm_head_ = nullptr;
  const float* final_norm_ = nullptr;
  std::vector<DeviceLayerWeights> layers_;
};

}  // namespace para::cuda
