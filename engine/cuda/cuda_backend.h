// The CUDA backend: the LLaMA decoder forward pass on one GPU, behind the same Backend interface
// as the CPU one (engine/backend.h).
//
// Weights are BF16 on the device (cuda_weights.h); activations going into GEMMs are BF16, the
// residual stream, GEMM outputs and every accumulation F32. Projections and the LM head are
// cuBLASLt GEMMs over all rows of the step (lt_gemm.h); the fused elementwise kernels apply PARA's
// scaling where a pass exists anyway (q before RoPE, v before the KV write, u inside SwiGLU);
// attention is split-K over the paged cache for every row (decode and prefill); LoRA deltas are
// added by shrink/expand kernels over row tiles (kernels.h). The KV pool and PARA pages are one
// device allocation, and the step scratch another, both made at Create; a step copies its
// metadata through one pinned buffer and the logits back through another, and allocates nothing
// unless it has more rows than any step before (then the scratch grows) or uses an adapter not yet
// on the device (device_adapters.h). Owns its device memory; borrows the model and the cache,
// which must outlive it. Engine thread only.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/cuda/cuda_weights.h"
#include "engine/cuda/device_adapters.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/lt_gemm.h"
#include "engine/cuda/sample_plan.h"
#include "engine/cuda/step_plan.h"
#include "engine/device.h"
#include "engine/kv_cache.h"
#include "engine/model.h"

namespace para::cuda {

class CudaBackend final : public Backend {
 public:
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(const Model* model,
                                                             const KvCache* cache,
                                                             const CudaBackendOptions& options,
                                                             ThreadPool* pool);
  ~CudaBackend() override;

  absl::Status Forward(std::span<const ForwardSeq> batch, float* logits) override;
  // Logits processing and sampling on the device (cuda_sampling.cc, sample_math.h): the LM head
  // chunks stay on the device and only tokens and log-probabilities are copied back.
  bool SamplesOnDevice() const override { return true; }
  absl::Status ForwardSample(std::span<const ForwardSeq> batch, std::span<const DeviceDraw> draws,
                             std::span<DeviceDrawResult> results) override;
  void CopyBlock(int32_t src, int32_t dst) override;
  const char* name() const override { return "cuda"; }
  const BackendStats& stats() const override { return stats_; }
  AdapterDeviceTier* adapter_device_tier() override { return adapters_.tier(); }  // device tier

  const DeviceAdapters& adapters() const { return adapters_; }
  size_t gemm_plans() const { return gemm_->cached_plans(); }

 private:
  CudaBackend(const Model* model, const KvCache* cache, const CudaBackendOptions& options);
  absl::Status AllocateScratch(int64_t rows);
  absl::Status UploadStep(std::span<const ForwardSeq> batch);
  absl::Status Layer(int32_t layer);
  absl::Status Gemm(int64_t m, int64_t n, int64_t k, const uint16_t* x, const uint16_t* w,
                    float beta, float* c) {
    return gemm_->Run(m, n, k, x, k, w, beta, c, n, stream_);
  }
  void Lora(int32_t layer, LoraSite site, const uint16_t* x, int64_t ldx, float* y, int64_t ncols);
  // The forward pass; then logits copied to `logits`, or (logits null) the draws made.
  absl::Status Run(std::span<const ForwardSeq> batch, float* logits,
                   std::span<const DeviceDraw> draws, std::span<DeviceDrawResult> results);
  absl::Status Logits(float* logits);
  // Logit rows per LM-head chunk (the rows logits_dev_ holds).
  int64_t LogitChunkRows() const;
  // LM head rows [begin, begin + n) of this step's logit rows into logits_dev_.
  absl::Status LmHeadChunk(int64_t begin, int64_t n);
  absl::Status SampleLogits(std::span<const DeviceDraw> draws, std::span<DeviceDrawResult> results);
  // Sizes the sampler's buffers for sample_plan_ (grows only).
  absl::Status ReserveSampling();

  const Model* model_;
  const ModelConfig& cfg_;
  const KvCache* cache_;
  CudaBackendOptions options_;
  BackendStats stats_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CudaWeights> w_;
  std::unique_ptr<LtGemm> gemm_;
  DeviceAdapters adapters_;
  StepPlan plan_;

  DeviceBuffer pool_mem_;   // KV blocks and PARA pages
  DeviceBuffer constants_;  // inverse RoPE frequencies, PARA slots
  DeviceBuffer scratch_;    // per-step activations
  DeviceBuffer meta_dev_;   // per-step metadata (device copy)
  PinnedBuffer meta_host_;  // per-step metadata (host side)
  PinnedBuffer logits_host_;
  PoolView pool_{};
  const double* inv_freq_ = nullptr;
  int64_t scratch_rows_ = 0;

  // Scratch pieces (device).
  float *h_ = nullptr, *qkv_ = nullptr, *gu_ = nullptr, *cos_ = nullptr, *sin_ = nullptr;
  float *partials_ = nullptr, *lora_t_ = nullptr, *para_pooled_ = nullptr, *para_t_ = nullptr;
  float* logits_dev_ = nullptr;
  uint16_t *xn_ = nullptr, *attn_ = nullptr, *act_ = nullptr;
  int64_t max_partials_ = 0;
  int64_t lora_ldt_ = 0;

  // This step's device metadata.
  StepRows rows_{};
  SplitPlan split_{};
  const int32_t* logit_rows_dev_ = nullptr;
  const int32_t* decode_rows_ = nullptr;
  const AttnTile* prefill_tiles_ = nullptr;
  const ParaGenItem* para_items_ = nullptr;  // [layers][generating]
  int32_t para_max_r_ = 0;
  const LoraTile* lora_tiles_ = nullptr;
  const int32_t* lora_rows_ = nullptr;
  const LoraSiteDesc* const* lora_tables_ = nullptr;
  int32_t lora_max_rank_[kNumLoraSites] = {};

  // The device sampler: this step's draws, their metadata and results (pinned host and device
  // twins of one layout), and per-draw scratch for kSampleBatch draws at a time.
  SamplePlan sample_plan_;
  PinnedBuffer sample_host_;
  DeviceBuffer sample_dev_;
  DeviceBuffer sample_scratch_;
  int32_t num_sms_ = 0;
};

}  // namespace para::cuda
