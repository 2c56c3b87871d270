// The CPU backend: the LLaMA decoder forward pass over a mixed prefill/decode batch.
//
// GEMMs over all rows of the step go through OpenBLAS (one call per thread slice); norms, RoPE,
// attention over the paged KV cache and SwiGLU are vectorised loops spread over the engine's
// thread pool. Owns its scratch buffers (grown to the largest step seen); borrows the model,
// cache and pool, which must outlive it. Used from the engine thread only.
#pragma once

#include <memory>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"

#include "engine/aligned_buffer.h"
#include "engine/backend.h"
#include "engine/cpu/cpu_weights.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/kv_storage.h"
#include "engine/cpu/lora_kernels.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/thread_pool.h"

namespace para::cpu {

class CpuBackend final : public Backend {
 public:
  // Fails when OpenBLAS cannot be loaded.
  // Allocates the storage of the cache's blocks (KV rows and PARA vector pages) as its layout
  // says. Fails when OpenBLAS cannot be loaded or the memory cannot be mapped.
  // `weights_dtype`: the dtype the weights are held and read in (nullopt: as stored).
  static absl::StatusOr<std::unique_ptr<CpuBackend>> Create(const Model* model,
                                                            const KvCache* cache,
                                                            std::optional<DType> weights_dtype,
                                                            ThreadPool* pool);
  absl::Status Forward(std::span<const ForwardSeq> batch, float* logits) override;
  void CopyBlock(int32_t src, int32_t dst) override;
  const char* name() const override { return "cpu"; }
  const BackendStats& stats() const override { return stats_; }

 private:
  CpuBackend(const Model* model, const KvCache* cache, std::unique_ptr<CpuWeights> weights,
             std::unique_ptr<KvStorage> storage, ThreadPool* pool);

  // Cache rows of each element type, for the attention loop.
  struct KvF32 {
    using Element = float;
    static float Dot(const float* a, const float* b, int64_t n) { return cpu::Dot(a, b, n); }
    static void Axpy(float a, const float* x, int64_t n, float* y) { cpu::Axpy(a, x, n, y); }
  };
  struct KvF16 {
    using Element = uint16_t;
    static float Dot(const float* a, const uint16_t* b, int64_t n) { return DotF16(a, b, n); }
    static void Axpy(float a, const uint16_t* x, int64_t n, float* y) { AxpyF16(a, x, n, y); }
  };
  struct KvBF16 {
    using Element = uint16_t;
    static float Dot(const float* a, const uint16_t* b, int64_t n) { return DotBF16(a, b, n); }
    static void Axpy(float a, const uint16_t* x, int64_t n, float* y) { AxpyBF16(a, x, n, y); }
  };

  struct Row {
    int32_t seq;  // index into the batch
    int32_t pos;  // absolute position
  };
  struct AttnTask {
    int32_t seq;
    int32_t kv_head;
    int32_t row_begin, row_end;  // rows of the step (global row indices)
  };

  void PrepareRows(std::span<const ForwardSeq> batch);
  void PrepareParaVectors(std::span<const ForwardSeq> batch);
  // The PARA vector of a batch sequence for (layer, segment); null without an adapter.
  const float* Vec(int32_t seq, int64_t layer, int segment) const {
    return para_vecs_.empty() ? nullptr
                              : para_vecs_[(seq * cfg_.num_hidden_layers + layer) * 3 + segment];
  }
  void GenerateParaVectors(std::span<const ForwardSeq> batch, int64_t layer);
  // Adds the LoRA deltas of `site` for every LoRA row of the step (no-op without LoRA rows).
  void Lora(int64_t layer, LoraSite site, const float* x, int64_t ldx, float* y, int64_t ldy) {
    if (!lora_groups_.empty())
      ApplyLoraSite(pool_, lora_groups_, layer, site, x, ldx, y, ldy, &lora_scratch_);
  }
  void Layer(std::span<const ForwardSeq> batch, int64_t layer);
  void RopeAndStore(std::span<const ForwardSeq> batch, int64_t layer);
  void Attention(std::span<const ForwardSeq> batch, int64_t layer);
  template <typename Kv>
  void AttendTask(const ForwardSeq& seq, const AttnTask& task, int64_t layer, float* scores);
  void Logits(std::span<const ForwardSeq> batch, float* logits);

  const Model* model_;
  const ModelConfig& cfg_;
  const KvCache* cache_;
  std::unique_ptr<CpuWeights> w_;
  std::unique_ptr<KvStorage> kv_;
  ThreadPool* pool_;
  std::vector<double> inv_freq_;  // [head_dim / 2]
  BackendStats stats_;

  // Per-step state.
  int64_t rows_ = 0;
  std::vector<Row> row_info_;
  std::vector<int32_t> seq_row_begin_;
  std::vector<AttnTask> attn_tasks_;
  std::vector<float*> para_vecs_;    // [seq][layer][segment], empty when no sequence has an adapter
  std::vector<int32_t> generating_;  // batch indices of sequences generating vectors this step
  std::vector<const LoraAdapter*> row_lora_;  // each row's LoRA adapter (null = none)
  std::vector<LoraRowGroup> lora_groups_;     // rows of this step grouped by LoRA adapter
  std::vector<int64_t> logit_rows_;           // rows whose logits the step returns
  LoraScratch lora_scratch_;
  LinearScratch linear_;
  AlignedBuffer para_scratch_;  // per thread: pooled row + bottleneck
  AlignedBuffer h_, xn_, qkv_, attn_, gu_, act_, rope_cos_, rope_sin_, out_rows_, scores_;
};

// Inverse RoPE frequencies for a config, with its rope_scaling applied.
std::vector<double> RopeInvFreq(const ModelConfig& config);

}  // namespace para::cpu
