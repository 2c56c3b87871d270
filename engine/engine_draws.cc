// Engine::Step's device-sampling path (engine.h): the draws are planned on the host (uniform
// numbers from each sequence's RNG, as SampleToken would take them), made by the backend where
// the logits are, and their results applied exactly as SampleAll applies host draws. Prompt
// log-probabilities are draws with the prompt's next token forced, and a beam search step one
// with the token forced and its top alternatives wanted (TopLogprobs).
#include <algorithm>

#include "common/status_macros.h"
#include "engine/engine.h"

namespace para {

namespace {

// What a forced draw reads of its parameters: nothing (the token is given).
const SamplingParams kNoSampling{};

DeviceDraw Forced(int64_t row, int32_t token, int32_t top_n) {
  DeviceDraw d;
  d.logit_row = row;
  d.params = &kNoSampling;
  d.top_n = top_n;
  d.forced_token = token;
  return d;
}

}  // namespace

void Engine::PlanDraws(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                       const std::vector<int32_t>& cached_before,
                       std::span<const SequenceUpdate> updates) {
  draws_.clear();
  draw_rngs_.clear();
  draw_first_.assign(seqs.size(), -1);
  draw_prompt_.assign(seqs.size(), 0);
  draw_count_.assign(seqs.size(), 0);
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (first_row[i] < 0 || !updates[i].status.ok()) continue;
    Sequence* s = seqs[i];
    const SamplingParams& p = s->request().sampling;
    draw_first_[i] = static_cast<int32_t>(draws_.size());
    int64_t last = first_row[i];
    if (p.prompt_logprobs && !s->prompt_logprobs_done()) {  // row j predicts prompt token j + 1
      const int64_t cached = cached_before[i], n = s->num_prompt();
      for (int64_t j = std::max<int64_t>(0, cached); j + 1 < n; ++j) {
        draws_.push_back(Forced(first_row[i] + j - cached, s->tokens()[j + 1], *p.prompt_logprobs));
        draw_rngs_.emplace_back();
        ++draw_prompt_[i];
      }
      last = first_row[i] + static_cast<int64_t>(s->tokens().size()) - 1 - cached;
    }
    if (s->beam_candidates > 0) {  // the most likely next tokens, for the group to choose from
      draws_.push_back(Forced(last, 0, s->beam_candidates));
      draw_rngs_.emplace_back();
      draw_count_[i] = static_cast<int32_t>(draws_.size()) - draw_first_[i];
      continue;
    }
    const int32_t fanout = std::max(1, s->fanout);
    const bool wants_entry = fanout > 1 || p.logprobs || s->track_cumulative_logprob;
    for (int32_t d = 0; d < fanout; ++d) {
      std::mt19937_64 branch;  // draw d > 0 of a sampling group: its branch's RNG
      std::mt19937_64* rng = s->rng();
      if (d > 0) {
        branch.seed(s->ForkSeed(d));
        rng = &branch;
      }
      DeviceDraw draw;
      draw.logit_row = last;
      draw.params = &p;
      draw.history = s->history();
      draw.uniform = DrawIsRandom(p) ? UniformDouble(rng) : 0.0;
      draw.top_n = wants_entry ? p.logprobs.value_or(0) : -1;
      draws_.push_back(draw);
      draw_rngs_.push_back(branch);
    }
    draw_count_[i] = static_cast<int32_t>(draws_.size()) - draw_first_[i];
  }
}

absl::Status Engine::ForwardDraws(std::span<const ForwardItem> items) {
  RETURN_IF_ERROR(PrepareBatch(items));
  draw_results_.assign(draws_.size(), DeviceDrawResult{});
  RETURN_IF_ERROR(backend_->ForwardSample(batch_, draws_, std::span(draw_results_)));
  CommitBatch(items);
  return absl::OkStatus();
}

void Engine::FailNonFiniteDraws(std::span<Sequence* const> seqs,
                                std::span<SequenceUpdate> updates) {
  for (size_t i = 0; i < seqs.size(); ++i)
    for (int32_t d = 0; d < draw_count_[i]; ++d)
      if (!draw_results_[draw_first_[i] + d].finite) {
        updates[i].status = NonFiniteError(*seqs[i]);
        break;
      }
}

void Engine::ApplyDraws(std::span<Sequence* const> seqs, std::span<SequenceUpdate> updates) {
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (draw_first_[i] < 0 || !updates[i].status.ok()) continue;
    Sequence* s = seqs[i];
    const SamplingParams& p = s->request().sampling;
    int32_t first = draw_first_[i];
    SequenceUpdate& u = updates[i];
    if (p.prompt_logprobs && !s->prompt_logprobs_done()) {
      for (int32_t j = 0; j < draw_prompt_[i]; ++j)
        s->AddPromptLogprobs(draw_results_[first + j].entry);
      s->MarkPromptLogprobsDone();
      first += draw_prompt_[i];
    }
    if (s->beam_candidates > 0) {
      u.candidates = draw_results_[first].entry.top;
      continue;
    }
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
