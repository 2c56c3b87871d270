// The host side of the device sampler: turns a step's draws (SamplingParams, history, uniform
// number, log-probabilities wanted) into the flat arrays sample_math.h's SampleRow reads. Plain
// C++ (no CUDA), used by the CUDA backend and by the CPU tests that run SampleRow on the host.
// A value type; not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "engine/cuda/sample_math.h"
#include "engine/sampling.h"

namespace para::cuda {

struct SamplePlan {
  std::vector<SampleRowDesc> descs;
  std::vector<int32_t> edit_ids;
  std::vector<SampleEdit> edits;
  int32_t max_top = 0;  // the largest top_n of the draws

  void Clear() {
    descs.clear();
    edit_ids.clear();
    edits.clear();
    max_top = 0;
  }

  // Adds a draw from row `logit_row`; top_n < 0: no log-probabilities; forced_token >= 0: no
  // draw, that token's log-probabilities (p and h are then not read).
  void Add(int32_t logit_row, const SamplingParams& p, const SamplingHistory& h, double uniform,
           int32_t top_n, int32_t forced_token = -1) {
    SampleRowDesc d{};
    d.forced_token = forced_token;
    d.logit_row = logit_row;
    d.temperature = p.temperature;
    d.top_k = p.top_k;
    d.top_p = p.top_p;
    d.min_p = p.min_p;
    d.repetition_penalty = p.repetition_penalty;
    d.presence_penalty = p.presence_penalty;
    d.frequency_penalty = p.frequency_penalty;
    d.uniform = uniform;
    d.top_n = top_n;
    d.suppressed_begin = static_cast<int32_t>(edit_ids.size());
    d.suppressed_count = static_cast<int32_t>(h.suppressed.size());
    edit_ids.insert(edit_ids.end(), h.suppressed.begin(), h.suppressed.end());
    d.penalized_begin = static_cast<int32_t>(edit_ids.size());
    d.penalized_count = p.repetition_penalty != 1.0f ? static_cast<int32_t>(h.penalized.size()) : 0;
    if (d.penalized_count > 0)
      edit_ids.insert(edit_ids.end(), h.penalized.begin(), h.penalized.end());
    d.bias_begin = static_cast<int32_t>(edits.size());
    d.bias_count = static_cast<int32_t>(p.logit_bias.size());
    for (const auto& [id, bias] : p.logit_bias) edits.push_back({id, bias});
    d.counts_begin = static_cast<int32_t>(edits.size());
    const bool penalties = p.presence_penalty != 0.0f || p.frequency_penalty != 0.0f;
    d.counts_count = penalties ? static_cast<int32_t>(h.output_counts.size()) : 0;
    if (penalties)
      for (const auto& [id, count] : h.output_counts)
        edits.push_back({id, static_cast<float>(count)});
    if (top_n > max_top) max_top = top_n;
    descs.push_back(d);
  }
};

// The draws of `plan` made on the CPU by the device sampler's own code (sample_math.h, its
// threads run one after another): what the device computes, for tests. `logits` holds the rows
// the descs name ([rows, vocab]).
struct HostSampleResult {
  SampleRowOut out;
  std::vector<int32_t> top_ids;
  std::vector<float> top_lp;
};
inline std::vector<HostSampleResult> SampleOnHost(const SamplePlan& plan, const float* logits,
                                                  int64_t vocab) {
  const int64_t cap = SortCapacity(vocab);
  std::vector<float> v(vocab);
  std::vector<uint32_t> keys(cap);
  std::vector<int32_t> ids(cap);
  auto shared = std::make_unique<SampleShared>();
  std::vector<HostSampleResult> results(plan.descs.size());
  for (size_t i = 0; i < plan.descs.size(); ++i) {
    const SampleRowDesc& d = plan.descs[i];
    HostSampleResult& r = results[i];
    r.top_ids.assign(d.top_n > 0 ? d.top_n : 0, -1);
    r.top_lp.assign(r.top_ids.size(), 0.0f);
    SampleRow(d, logits + static_cast<int64_t>(d.logit_row) * vocab, vocab, plan.edit_ids.data(),
              plan.edits.data(), SampleScratch{v.data(), keys.data(), ids.data()}, shared.get(),
              &r.out, r.top_ids.data(), r.top_lp.data());
    if (static_cast<int64_t>(r.top_ids.size()) > vocab) {
      r.top_ids.resize(vocab);
      r.top_lp.resize(vocab);
    }
  }
  return results;
}

}  // namespace para::cuda
