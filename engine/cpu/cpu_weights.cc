#include "engine/cpu/cpu_weights.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace para::cpu {
namespace {

WType WTypeOf(DType t) {
  return t == DType::kBF16 ? WType::kBF16 : t == DType::kF16 ? WType::kF16 : WType::kF32;
}

absl::StatusOr<AlignedBuffer> NormF32(const TensorView& t) {
  AlignedBuffer out(t.numel());
  ConvertToF32(t.dtype, t.data, t.numel(), out.data());
  return out;
}

}  // namespace

absl::StatusOr<WeightView> CpuWeights::Matrix(const TensorView& t, std::optional<DType> dtype,
                                              ThreadPool* pool) {
  const DType want = dtype.value_or(t.dtype);
  WeightView w{t.data, WTypeOf(want), t.shape[0], t.shape[1]};
  const size_t esize = DTypeSize(want);
  const bool aligned = reinterpret_cast<uintptr_t>(t.data) % DTypeSize(t.dtype) == 0;
  if (want == t.dtype && aligned) return w;  // the mapped checkpoint bytes, as they are
  const size_t bytes = static_cast<size_t>(t.numel()) * esize;
  owned_.emplace_back((bytes + sizeof(float) - 1) / sizeof(float));
  auto* dst = reinterpret_cast<uint8_t*>(owned_.back().data());
  owned_bytes_ += static_cast<int64_t>(bytes);
  const int64_t cols = t.shape[1];
  pool->ParallelFor(
      t.shape[0],
      [&](int64_t b, int64_t e) {
        ConvertDType(t.dtype, t.data + b * cols * DTypeSize(t.dtype), (e - b) * cols, want,
                     dst + b * cols * esize);
      },
      16);
  w.data = dst;
  return w;
}

absl::StatusOr<std::unique_ptr<CpuWeights>> CpuWeights::Build(const Model& model,
                                                              std::optional<DType> dtype,
                                                              ThreadPool* pool) {
  if (dtype && !IsFloatWeightType(*dtype))
    return absl::InvalidArgumentError(
        absl::StrCat("weights cannot be held as ", DTypeName(*dtype), " (f32, f16, bf16)"));
  auto w = std::unique_ptr<CpuWeights>(new CpuWeights());
  const ModelTensors& t = model.tensors();
  ASSIGN_OR_RETURN(w->embed_, w->Matrix(*t.embed, dtype, pool));
  w->lm_head_ = w->embed_;
  if (t.lm_head != t.embed) {
    ASSIGN_OR_RETURN(w->lm_head_, w->Matrix(*t.lm_head, dtype, pool));
  }
  ASSIGN_OR_RETURN(w->final_norm_, NormF32(*t.final_norm));
  w->layers_.resize(t.layers.size());
  for (size_t i = 0; i < t.layers.size(); ++i) {
    const LayerTensors& lt = t.layers[i];
    CpuLayerWeights& l = w->layers_[i];
    ASSIGN_OR_RETURN(l.attn_norm, NormF32(*lt.attn_norm));
    ASSIGN_OR_RETURN(l.ffn_norm, NormF32(*lt.ffn_norm));
    ASSIGN_OR_RETURN(l.qkv[0], w->Matrix(*lt.q, dtype, pool));
    ASSIGN_OR_RETURN(l.qkv[1], w->Matrix(*lt.k, dtype, pool));
    ASSIGN_OR_RETURN(l.qkv[2], w->Matrix(*lt.v, dtype, pool));
    ASSIGN_OR_RETURN(l.o, w->Matrix(*lt.o, dtype, pool));
    ASSIGN_OR_RETURN(l.gate_up[0], w->Matrix(*lt.gate, dtype, pool));
    ASSIGN_OR_RETURN(l.gate_up[1], w->Matrix(*lt.up, dtype, pool));
    ASSIGN_OR_RETURN(l.down, w->Matrix(*lt.down, dtype, pool));
  }
  return w;
}

void ReadRowF32(const WeightView& w, int64_t row, float* out) {
  const DType t = w.type == WType::kBF16  ? DType::kBF16
                  : w.type == WType::kF16 ? DType::kF16
                                          : DType::kF32;
  ConvertToF32(t, static_cast<const uint8_t*>(w.data) + row * w.cols * WTypeSize(w.type), w.cols,
               out);
}

}  // namespace para::cpu
