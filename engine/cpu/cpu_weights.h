// The CPU backend's weights: each matrix as a WeightView in the dtype the backend computes with —
// the checkpoint's own bytes, memory-mapped, when that is the dtype asked for (no copy at
// start-up), else converted once into a buffer this object owns — and the norm weights as F32.
// Built once when the backend is created; immutable after; read from any thread. The model
// (whose mapped files the views point into) must outlive it.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/aligned_buffer.h"
#include "engine/cpu/gemm16.h"
#include "engine/model.h"
#include "engine/thread_pool.h"

namespace para::cpu {

struct CpuLayerWeights {
  AlignedBuffer attn_norm, ffn_norm;  // [hidden], F32
  WeightView qkv[3];                  // q [q_dim, h], k [kv_dim, h], v [kv_dim, h]
  WeightView o;                       // [h, q_dim]
  WeightView gate_up[2];              // gate, up: [ffn, h] each
  WeightView down;                    // [h, ffn]
};

class CpuWeights {
 public:
  // `dtype`: the dtype to compute with (F32, F16 or BF16); nullopt keeps each tensor's own.
  static absl::StatusOr<std::unique_ptr<CpuWeights>> Build(const Model& model,
                                                           std::optional<DType> dtype,
                                                           ThreadPool* pool);

  const WeightView& embed() const { return embed_; }  // [vocab, hidden]
  const std::vector<CpuLayerWeights>& layers() const { return layers_; }
  const AlignedBuffer& final_norm() const { return final_norm_; }
  const WeightView& lm_head() const { return lm_head_; }  // [vocab, hidden]
  // Bytes of weights this object copied (0 when every matrix is used as stored).
  int64_t owned_bytes() const { return owned_bytes_; }

 private:
  CpuWeights() = default;
  absl::StatusOr<WeightView> Matrix(const TensorView& t, std::optional<DType> dtype,
                                    ThreadPool* pool);

  WeightView embed_, lm_head_;
  std::vector<CpuLayerWeights> layers_;
  AlignedBuffer final_norm_;
  std::vector<AlignedBuffer> owned_;  // converted matrices
  int64_t owned_bytes_ = 0;
};

// Reads one row of a weight matrix (an embedding) into `out` as float32.
void ReadRowF32(const WeightView& w, int64_t row, float* out);

}  // namespace para::cpu
