#include "engine/cuda/cuda_weights.h"

#include <algorithm>

#include "common/status_macros.h"

namespace para::cuda {
namespace {

constexpr size_t kStagingBytes = size_t{64} << 20;

// Copies tensors to the device as BF16 (or F32 for norms) through one pinned staging buffer.
class Uploader {
 public:
  Uploader(ThreadPool* pool) : pool_(pool) {}
  absl::Status Init() { return staging_.Allocate(kStagingBytes, "weight upload staging"); }

  // Writes `t`'s elements as `to` (kBF16 or kF32) at `dst` on the device.
  absl::Status Copy(const TensorView& t, DType to, void* dst) {
    const int64_t n = t.numel();
    const size_t in_size = DTypeSize(t.dtype), out_size = DTypeSize(to);
    const int64_t per_chunk = static_cast<int64_t>(kStagingBytes / out_size);
    for (int64_t begin = 0; begin < n; begin += per_chunk) {
      const int64_t count = std::min(per_chunk, n - begin);
      const uint8_t* src = t.data + begin * in_size;
      uint8_t* stage = staging_.data();
      pool_->ParallelFor(
          count,
          [&](int64_t b, int64_t e) {
            ConvertDType(t.dtype, src + b * in_size, e - b, to, stage + b * out_size);
          },
          1 << 16);
      RETURN_IF_ERROR(CudaCheck(cudaMemcpy(static_cast<uint8_t*>(dst) + begin * out_size, stage,
                                           count * out_size, cudaMemcpyHostToDevice),
                                "uploading weights"));
    }
    return absl::OkStatus();
  }

 private:
  ThreadPool* pool_;
  PinnedBuffer staging_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<CudaWeights>> CudaWeights::Upload(const Model& model,
                                                                 ThreadPool* pool) {
  const ModelConfig& c = model.config();
  const ModelTensors& t = model.tensors();
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  const int64_t qkv_n = c.q_dim() + 2 * c.kv_dim();
  const bool tied = t.lm_head == t.embed;
  auto w = std::unique_ptr<CudaWeights>(new CudaWeights());
  // Two passes over the same carving: sizes, then pointers into the allocation.
  auto carve = [&](Carve& cv, bool assign) {
    auto* embed = cv.Take<uint16_t>(c.vocab_size * h);
    auto* head = tied ? embed : cv.Take<uint16_t>(c.vocab_size * h);
    auto* fnorm = cv.Take<float>(h);
    if (assign) {
      w->embed_ = embed;
      w->lm_head_ = head;
      w->final_norm_ = fnorm;
      w->layers_.clear();
    }
    for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
      DeviceLayerWeights d{};
      d.attn_norm = cv.Take<float>(h);
      d.ffn_norm = cv.Take<float>(h);
      d.qkv = cv.Take<uint16_t>(qkv_n * h);
      d.o = cv.Take<uint16_t>(h * c.q_dim());
      d.gate_up = cv.Take<uint16_t>(2 * f * h);
      d.down = cv.Take<uint16_t>(h * f);
      if (assign) w->layers_.push_back(d);
    }
  };
  Carve sizing;
  carve(sizing, false);
  RETURN_IF_ERROR(w->mem_.Allocate(sizing.used(), "the model weights"));
  Carve real(w->mem_.data());
  carve(real, true);

  Uploader up(pool);
  RETURN_IF_ERROR(up.Init());
  auto bf16 = [](const void* p, int64_t offset) {
    return const_cast<uint16_t*>(static_cast<const uint16_t*>(p)) + offset;
  };
  RETURN_IF_ERROR(up.Copy(*t.embed, DType::kBF16, bf16(w->embed_, 0)));
  if (!tied) RETURN_IF_ERROR(up.Copy(*t.lm_head, DType::kBF16, bf16(w->lm_head_, 0)));
  RETURN_IF_ERROR(up.Copy(*t.final_norm, DType::kF32, const_cast<float*>(w->final_norm_)));
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) {
    const LayerTensors& lt = t.layers[l];
    const DeviceLayerWeights& d = w->layers_[l];
    RETURN_IF_ERROR(up.Copy(*lt.attn_norm, DType::kF32, const_cast<float*>(d.attn_norm)));
    RETURN_IF_ERROR(up.Copy(*lt.ffn_norm, DType::kF32, const_cast<float*>(d.ffn_norm)));
    RETURN_IF_ERROR(up.Copy(*lt.q, DType::kBF16, bf16(d.qkv, 0)));
    RETURN_IF_ERROR(up.Copy(*lt.k, DType::kBF16, bf16(d.qkv, c.q_dim() * h)));
    RETURN_IF_ERROR(up.Copy(*lt.v, DType::kBF16, bf16(d.qkv, (c.q_dim() + c.kv_dim()) * h)));
    RETURN_IF_ERROR(up.Copy(*lt.o, DType::kBF16, bf16(d.o, 0)));
    RETURN_IF_ERROR(up.Copy(*lt.gate, DType::kBF16, bf16(d.gate_up, 0)));
    RETURN_IF_ERROR(up.Copy(*lt.up, DType::kBF16, bf16(d.gate_up, f * h)));
    RETURN_IF_ERROR(up.Copy(*lt.down, DType::kBF16, bf16(d.down, 0)));
  }
  return w;
}

}  // namespace para::cuda
