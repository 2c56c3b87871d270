// The device sampler: one thread block per draw runs sample_math.h's SampleRow on its row of
// logits. Only tokens, log-probabilities and flags leave the device.
#include <cuda_runtime.h>

#include "engine/cuda/kernels.h"
#include "engine/cuda/sample_math.h"

namespace para::cuda {
namespace {

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(SampleLaunch a, int32_t first_row) {
  __shared__ SampleShared sh;
  const int64_t r = blockIdx.x;
  const SampleRowDesc d = a.descs[r];
  const int64_t cap = SortCapacity(a.vocab);
  const SampleScratch s{a.v + r * a.vocab, a.keys + r * cap, a.ids + r * cap};
  SampleRow(d, a.logits + static_cast<int64_t>(d.logit_row - first_row) * a.vocab, a.vocab,
            a.edit_ids, a.edits, s, &sh, a.out + r, a.top_ids + r * a.max_top,
            a.top_lp + r * a.max_top);
}

}  // namespace

void LaunchSample(const SampleLaunch& a, int32_t first_row, int32_t draws, cudaStream_t s) {
  if (draws > 0) SampleKernel<<<draws, kSampleThreads, 0, s>>>(a, first_row);
}

}  // namespace para::cuda
