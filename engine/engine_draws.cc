// Engine::Step's device-sampling path (engine.h): the draws are planned on the host (uniform
// numbers from each sequence's RNG, as SampleToken would take them), made by the backend where
// the logits are, and their results applied exactly as SampleAll applies host draws.
#include <algorithm>

#include "common/status_macros.h"
#include "engine/engine.h"

namespace para {

bool Engine::StepDrawsOnDevice(std::span<Sequence* const> seqs) const {
  if (!samples_on_device()) return false;
  for (const Sequence* s : seqs) {
    const bool prompt_lp = s->request().sampling.prompt_logprobs && !s->prompt_logprobs_done();
    if (prompt_lp || s->beam_candidates > 0) return false;  // these need the host's logits
  }
  return true;
}

void Engine::PlanDraws(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                       std::span<const SequenceUpdate> updates) {
  draws_.clear();
  draw_rngs_.clear();
  draw_first_.assign(seqs.size(), -1);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (first_row[i] < 0 || !updates[i].status.ok()) continue;
    Sequence* s = seqs[i];
    const SamplingParams& p = s->request().sampling;
    const int32_t fanout = std::max(1, s->fanout);
    const bool wants_entry = fanout > 1 || p.logprobs || s->track_cumulative_logprob;
    draw_first_[i] = static_cast<int32_t>(draws_.size());
    for (int32_t d = 0; d < fanout; ++d) {
      std::mt19937_64 branch;  // draw d > 0 of a sampling group: its branch's RNG
      std::mt19937_64* rng = s->rng();
      if (d > 0) {
        branch.seed(s->ForkSeed(d));
        rng = &branch;
      }
      DeviceDraw draw;
      draw.logit_row = first_row[i];
      draw.params = &p;
      draw.history = s->history();
      draw.uniform = DrawIsRandom(p) ? UniformDouble(rng) : 0.0;
      draw.top_n = wants_entry ? p.logprobs.value_or(0) : -1;
      draws_.push_back(draw);
      draw_rngs_.push_back(branch);
    }
  }
}

absl::Status Engine::ForwardDraws(std::span<const ForwardItem> items) {
  RETURN_IF_ERROR(PrepareBatch(items));
  draw_results_.assign(draws_.size(), DeviceDrawResult{});
  RETURN_IF_ERROR(backend_->ForwardSample(batch_, draws_, std::span(draw_results_)));
  CommitBatch(items);
  return absl::OkStatus();
}

void Engine::ApplyDraws(std::span<Sequence* const> seqs, std::span<SequenceUpdate> updates) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (draw_first_[i] < 0 || !updates[i].status.ok()) continue;
    Sequence* s = seqs[i];
    const SamplingParams& p = s->request().sampling;
    const int32_t first = draw_first_[i];
    SequenceUpdate& u = updates[i];
    if (s->fanout > 1) {  // a sampling group's first step: the group forks and appends
      for (int32_t d = 0; d < s->fanout; ++d) {
        const DeviceDrawResult& r = draw_results_[first + d];
        SequenceUpdate::Draw draw;
        draw.token = r.token;
        draw.logprob = r.entry.logprob;
        if (p.logprobs) draw.logprobs = r.entry;
        if (d > 0) draw.rng = draw_rngs_[first + d];
        u.fanout.push_back(std::move(draw));
      }
      continue;
    }
    const DeviceDrawResult& r = draw_results_[first];
    if (s->track_cumulative_logprob) s->AddCumulativeLogprob(r.entry.logprob);
    if (p.logprobs) s->AddLogprobs(r.entry);
    u.token = r.token;
    u.text_delta = s->AppendToken(r.token, config().eos_token_ids, max_model_len_);
    u.finished = s->finished();
  }
}

}  // namespace para
