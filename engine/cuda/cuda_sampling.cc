// CudaBackend's device sampler (cuda_backend.h): the step's draws become sample_plan.h's arrays,
// go to the device with one copy, run per LM-head chunk right after that chunk's GEMM (the logits
// never leave the device), and their results come back with one copy.
#include <cuda_runtime.h>

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cuda/cuda_backend.h"

namespace para::cuda {
namespace {

constexpr int64_t kSampleBatch = 256;  // draws that share the per-draw scratch at a time

// Where the sampler's arrays sit in sample_host_ / sample_dev_ (the same layout in both): the
// inputs first, then the outputs, so that each direction is one copy.
struct SampleLayout {
  SampleRowDesc* descs;
  int32_t* edit_ids;
  SampleEdit* edits;
  SampleRowOut* out;
  int32_t* top_ids;
  float* top_lp;
  size_t inputs_end, outputs_begin, end;
};

SampleLayout Lay(uint8_t* base, const SamplePlan& p) {
  const int64_t draws = static_cast<int64_t>(p.descs.size());
  const int64_t top = std::max<int64_t>(p.max_top, 1);
  SampleLayout l{};
  Carve c(base);
  l.descs = c.Take<SampleRowDesc>(draws);
  l.edit_ids = c.Take<int32_t>(std::max<int64_t>(1, static_cast<int64_t>(p.edit_ids.size())));
  l.edits = c.Take<SampleEdit>(std::max<int64_t>(1, static_cast<int64_t>(p.edits.size())));
  l.inputs_end = c.used();
  l.out = c.Take<SampleRowOut>(draws);
  l.outputs_begin = base != nullptr ? reinterpret_cast<uint8_t*>(l.out) - base : 0;
  l.top_ids = c.Take<int32_t>(draws * top);
  l.top_lp = c.Take<float>(draws * top);
  l.end = c.used();
  return l;
}

}  // namespace

absl::Status CudaBackend::ForwardSample(std::span<const ForwardSeq> batch,
                                        std::span<const DeviceDraw> draws,
                                        std::span<DeviceDrawResult> results) {
  if (results.size() != draws.size())
    return absl::InvalidArgumentError("ForwardSample needs one result per draw");
  for (size_t i = 1; i < draws.size(); ++i)
    if (draws[i].logit_row < draws[i - 1].logit_row)
      return absl::InvalidArgumentError("ForwardSample's draws must be in logit-row order");
  return Run(batch, nullptr, draws, results);
}

absl::Status CudaBackend::ReserveSampling() {
  const size_t bytes = Lay(nullptr, sample_plan_).end;
  if (sample_host_.size() < bytes) {
    const size_t grown = std::max(bytes, 2 * sample_host_.size());
    RETURN_IF_ERROR(sample_host_.Allocate(grown, "the sampler's metadata"));
    RETURN_IF_ERROR(sample_dev_.Allocate(grown, "the sampler's metadata"));
  }
  if (sample_scratch_.size() == 0) {
    const int64_t per_draw = cfg_.vocab_size * static_cast<int64_t>(sizeof(float)) +
                             SortCapacity(cfg_.vocab_size) * (sizeof(uint32_t) + sizeof(int32_t));
    RETURN_IF_ERROR(sample_scratch_.Allocate(kSampleBatch * per_draw, "the sampler's scratch"));
  }
  return absl::OkStatus();
}

absl::Status CudaBackend::SampleLogits(std::span<const DeviceDraw> draws,
                                       std::span<DeviceDrawResult> results) {
  const int64_t vocab = cfg_.vocab_size, m = static_cast<int64_t>(plan_.logit_rows.size());
  if (draws.empty()) return absl::OkStatus();  // the forward pass alone (it stays queued)
  sample_plan_.Clear();
  for (const DeviceDraw& d : draws) {
    if (d.logit_row < 0 || d.logit_row >= m)
      return absl::InvalidArgumentError(
          absl::StrCat("a draw names logit row ", d.logit_row, " of a step with ", m));
    sample_plan_.Add(static_cast<int32_t>(d.logit_row), *d.params, d.history, d.uniform, d.top_n,
                     d.forced_token);
  }
  RETURN_IF_ERROR(ReserveSampling());
  const SampleLayout host = Lay(sample_host_.data(), sample_plan_);
  const SampleLayout dev = Lay(sample_dev_.data(), sample_plan_);
  std::copy(sample_plan_.descs.begin(), sample_plan_.descs.end(), host.descs);
  std::copy(sample_plan_.edit_ids.begin(), sample_plan_.edit_ids.end(), host.edit_ids);
  std::copy(sample_plan_.edits.begin(), sample_plan_.edits.end(), host.edits);
  RETURN_IF_ERROR(CudaCheck(cudaMemcpyAsync(sample_dev_.data(), sample_host_.data(),
                                            host.inputs_end, cudaMemcpyHostToDevice, stream_),
                            "uploading the sampler's metadata"));
  const int64_t cap = SortCapacity(vocab), top = std::max(sample_plan_.max_top, 1);
  SampleLaunch launch{logits_dev_, vocab,   nullptr, dev.edit_ids,
                      dev.edits,   nullptr, nullptr, nullptr,
                      nullptr,     nullptr, nullptr, static_cast<int32_t>(top)};
  uint8_t* scratch = sample_scratch_.data();
  const int64_t chunk = LogitChunkRows(), total = static_cast<int64_t>(draws.size());
  int64_t next = 0;  // the first draw not made yet
  for (int64_t begin = 0; begin < m && next < total; begin += chunk) {
    const int64_t n = std::min(chunk, m - begin);
    int64_t end = next;
    while (end < total && draws[end].logit_row < begin + n) ++end;
    if (end == next) continue;  // no draw from this chunk's rows
    RETURN_IF_ERROR(LmHeadChunk(begin, n));
    for (int64_t d = next; d < end; d += kSampleBatch) {
      const int64_t k = std::min(kSampleBatch, end - d);
      launch.descs = dev.descs + d;
      launch.v = reinterpret_cast<float*>(scratch);
      launch.keys = reinterpret_cast<uint32_t*>(scratch + kSampleBatch * vocab * sizeof(float));
      launch.ids = reinterpret_cast<int32_t*>(reinterpret_cast<uint8_t*>(launch.keys) +
                                              kSampleBatch * cap * sizeof(uint32_t));
      launch.out = dev.out + d;
      launch.top_ids = dev.top_ids + d * top;
      launch.top_lp = dev.top_lp + d * top;
      LaunchSample(launch, static_cast<int32_t>(begin), static_cast<int32_t>(k), stream_);
    }
    next = end;
  }
  RETURN_IF_ERROR(CudaCheck(cudaGetLastError(), "the sampler's launch"));
  RETURN_IF_ERROR(
      CudaCheck(cudaMemcpyAsync(sample_host_.data() + host.outputs_begin,
                                sample_dev_.data() + dev.outputs_begin,
                                host.end - host.outputs_begin, cudaMemcpyDeviceToHost, stream_),
                "copying sampled tokens"));
  RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(stream_), "the forward pass and sampling"));
  for (int64_t i = 0; i < total; ++i) {
    const SampleRowOut& o = host.out[i];
    DeviceDrawResult& r = results[i];
    r.finite = o.finite != 0;
    r.token = o.token;
    r.entry = LogprobEntry{o.token, o.logprob, o.rank, {}};
    const int32_t n = std::min<int32_t>(draws[i].top_n, static_cast<int32_t>(vocab));
    for (int32_t j = 0; j < n; ++j)
      r.entry.top.push_back({host.top_ids[i * top + j], host.top_lp[i * top + j]});
  }
  return absl::OkStatus();
}

}  // namespace para::cuda
