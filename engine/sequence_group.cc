#include "engine/sequence_group.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace para {
namespace {

constexpr double kDropped = -1.0e9;  // transformers' score for excluded candidates

bool Contains(const std::vector<int32_t>& v, int32_t x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

}  // namespace

SequenceGroup::SequenceGroup(Engine* engine, std::unique_ptr<Sequence> first)
    : engine_(engine),
      first_request_(first->request()),
      params_(first_request_.group),
      prompt_len_(first->num_prompt()) {
  if (is_beam()) {
    beam_scores_ = {0.0};
  } else if (params_.best_of > 1) {
    first->fanout = params_.best_of;
    first->track_cumulative_logprob = true;  // choices report it; best_of > n ranks by it
  }
  live_.push_back(std::move(first));
}

SequenceGroup::~SequenceGroup() = default;

std::vector<Sequence*> SequenceGroup::Live() {
  std::vector<Sequence*> out;
  const StoppingParams& stop = first_request_.stopping;
  const int32_t n_eos =
      static_cast<int32_t>(stop.stop_token_ids.size()) +
      (stop.ignore_eos ? 0 : static_cast<int32_t>(engine_->config().eos_token_ids.size()));
  for (auto& s : live_) {
    if (s->finished()) continue;
    if (is_beam()) s->beam_candidates = std::max(2, 1 + n_eos) * params_.beam_width;
    out.push_back(s.get());
  }
  return out;
}

absl::StatusOr<std::vector<BranchToken>> SequenceGroup::Apply(
    std::span<const SequenceUpdate> updates) {
  std::vector<BranchToken> out;
  if (is_beam()) {
    RETURN_IF_ERROR(ApplyBeam(updates));
  } else {
    RETURN_IF_ERROR(ApplySampling(updates, &out));
  }
  return out;
}

// ---- n / best_of ------------------------------------------------------------------------------

absl::Status SequenceGroup::ApplySampling(std::span<const SequenceUpdate> updates,
                                          std::vector<BranchToken>* out) {
  const std::vector<int32_t>& eos = engine_->config().eos_token_ids;
  const int64_t max_len = engine_->max_model_len();
  if (!forked_ && !updates.empty() && !updates[0].fanout.empty()) {
    // First step of best_of > 1: siblings fork from the prompt, then every branch takes its draw.
    Sequence& parent = *live_[0];
    const std::vector<SequenceUpdate::Draw>& draws = updates[0].fanout;
    for (size_t d = 1; d < draws.size(); ++d) {
      ASSIGN_OR_RETURN(std::unique_ptr<Sequence> child,
                       engine_->ForkSequence(parent, next_branch_++, draws[d].rng));
      live_.push_back(std::move(child));
    }
    parent.fanout = 1;
    for (size_t d = 0; d < draws.size(); ++d) {
      Sequence& s = *live_[d];
      if (s.track_cumulative_logprob) s.AddCumulativeLogprob(draws[d].logprob);
      if (draws[d].logprobs) s.AddLogprobs(*draws[d].logprobs);
      std::string delta = s.AppendToken(draws[d].token, eos, max_len);
      out->push_back({s.branch(), draws[d].token, std::move(delta),
                      draws[d].logprobs ? &s.logprobs().back() : nullptr});
    }
    forked_ = true;
    generated_ += static_cast<int64_t>(draws.size());
  } else {
    const bool wants = first_request_.sampling.logprobs.has_value();
    for (const SequenceUpdate& u : updates) {
      out->push_back(
          {u.seq->branch(), u.token, u.text_delta, wants ? &u.seq->logprobs().back() : nullptr});
      ++generated_;
    }
    forked_ = true;
  }
  CheckSamplingDone();
  return absl::OkStatus();
}

void SequenceGroup::CheckSamplingDone() {
  for (auto it = live_.begin(); it != live_.end();) {
    if ((*it)->finished()) {
      engine_->Release(it->get());
      done_.push_back(std::move(*it));
      it = live_.erase(it);
    } else {
      ++it;
    }
  }
  finished_ = live_.empty();
}

// ---- beam search ------------------------------------------------------------------------------

namespace {

struct Candidate {
  double score;  // cumulative log-prob with this token
  int32_t beam;  // index into the live beams
  int32_t token;
};

}  // namespace

absl::Status SequenceGroup::ApplyBeam(std::span<const SequenceUpdate> updates) {
  const int32_t W = params_.beam_width;
  const StoppingParams& stop = first_request_.stopping;
  const std::vector<int32_t>& eos = engine_->config().eos_token_ids;
  const int64_t max_len = engine_->max_model_len();
  const int64_t max_length = std::min<int64_t>(prompt_len_ + stop.max_tokens, max_len);
  const int64_t cur_len = static_cast<int64_t>(live_[0]->tokens().size());
  const size_t keep = updates.empty() ? 0 : updates[0].candidates.size();

  // The top K continuations over all beams.
  std::vector<Candidate> all;
  for (size_t b = 0; b < updates.size(); ++b)
    for (const TokenLogprob& c : updates[b].candidates)
      all.push_back({beam_scores_[b] + c.logprob, static_cast<int32_t>(b), c.id});
  std::sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    if (a.score != b.score) return a.score > b.score;
    return a.beam != b.beam ? a.beam < b.beam : a.token < b.token;
  });
  if (all.size() > keep) all.resize(keep);
  auto hits = [&](int32_t token) {
    return (!stop.ignore_eos && Contains(eos, token)) || Contains(stop.stop_token_ids, token) ||
           cur_len + 1 >= max_length;
  };

  // Finished hypotheses: candidates among the first W that end here.
  const bool full = static_cast<int32_t>(done_.size()) == W;
  const double gen_len = static_cast<double>(cur_len + 1 - prompt_len_);
  if (early_stop_unsatisfied_ &&
      !(full && params_.early_stopping == GroupParams::EarlyStopping::kTrue)) {
    for (int32_t k = 0; k < std::min<int32_t>(W, static_cast<int32_t>(all.size())); ++k) {
      const Candidate& c = all[k];
      if (!hits(c.token)) continue;
      const double score = c.score / std::pow(gen_len, params_.length_penalty);
      auto hyp = live_[c.beam]->Fork(-1, 0, KvSequence{}, std::mt19937_64());
      hyp->AppendToken(c.token, eos, max_len);
      hyp->AddCumulativeLogprob(c.score - hyp->cumulative_logprob());
      // Keep the W best, earlier ones first among equal scores.
      size_t at = 0;
      while (at < done_scores_.size() && done_scores_[at] >= score) ++at;
      done_.insert(done_.begin() + at, std::move(hyp));
      done_scores_.insert(done_scores_.begin() + at, score);
      if (static_cast<int32_t>(done_.size()) > W) {
        done_.pop_back();
        done_scores_.pop_back();
      }
    }
  }

  // The best W continuations that do not end become the next beams.
  std::vector<Candidate> next;
  for (const Candidate& c : all) {
    if (static_cast<int32_t>(next.size()) == W) break;
    if (!hits(c.token)) next.push_back(c);
  }
  std::vector<std::unique_ptr<Sequence>> beams;
  std::vector<bool> parent_taken(live_.size(), false);
  for (const Candidate& c : next) {  // forks first, from the parents' state before this step
    if (!parent_taken[c.beam]) {
      parent_taken[c.beam] = true;
      beams.push_back(nullptr);  // the parent itself, moved in below
      continue;
    }
    ASSIGN_OR_RETURN(std::unique_ptr<Sequence> child,
                     engine_->ForkSequence(*live_[c.beam], next_branch_++, std::mt19937_64()));
    beams.push_back(std::move(child));
  }
  for (size_t i = 0; i < next.size(); ++i)
    if (beams[i] == nullptr) beams[i] = std::move(live_[next[i].beam]);
  for (auto& parent : live_)  // beams no continuation chose
    if (parent != nullptr) engine_->Release(parent.get());
  live_ = std::move(beams);
  beam_scores_.clear();
  for (size_t i = 0; i < next.size(); ++i) {
    live_[i]->AppendToken(next[i].token, eos, max_len);
    live_[i]->AddCumulativeLogprob(next[i].score - live_[i]->cumulative_logprob());
    beam_scores_.push_back(next[i].score);
  }
  generated_ += static_cast<int64_t>(next.size());

  early_stop_unsatisfied_ = early_stop_unsatisfied_ && BeamCanImprove(cur_len + 1);
  const bool all_full = static_cast<int32_t>(done_.size()) == W;
  if (!early_stop_unsatisfied_ ||
      (all_full && params_.early_stopping == GroupParams::EarlyStopping::kTrue) || next.empty()) {
    Release();
    finished_ = true;
  }
  return absl::OkStatus();
}

// transformers' _check_early_stop_heuristic for one batch item: can the best running beam still
// beat the worst finished hypothesis?
bool SequenceGroup::BeamCanImprove(int64_t cur_len) const {
  if (beam_scores_.empty()) return false;
  if (static_cast<int32_t>(done_.size()) < params_.beam_width) return true;  // an open slot
  const int64_t max_length =
      std::min<int64_t>(prompt_len_ + first_request_.stopping.max_tokens, engine_->max_model_len());
  const bool never = params_.early_stopping == GroupParams::EarlyStopping::kNever;
  const double best_len = static_cast<double>(
      never && params_.length_penalty > 0 ? max_length - prompt_len_ : cur_len - prompt_len_);
  const double best_possible = beam_scores_[0] / std::pow(best_len, params_.length_penalty);
  return best_possible > done_scores_.back();
}

// ---- common -----------------------------------------------------------------------------------

void SequenceGroup::Release() {
  for (auto& s : live_) engine_->Release(s.get());
}

void SequenceGroup::ReleaseKv() {
  for (auto& s : live_) engine_->ReleaseKv(s.get());
}

void SequenceGroup::Cancel() {
  for (auto& s : live_) {
    s->Cancel();
    engine_->Release(s.get());
  }
  if (!is_beam()) {
    for (auto& s : live_) done_.push_back(std::move(s));
    live_.clear();
  }
  finished_ = true;
}

GroupUsage SequenceGroup::Usage() const {
  GroupUsage u;
  std::vector<int32_t> blocks, pages;
  const KvCache& cache = static_cast<const Engine*>(engine_)->kv_cache();
  for (const auto& s : live_) {
    if (s->finished()) continue;
    blocks.insert(blocks.end(), s->kv().blocks.begin(), s->kv().blocks.end());
    pages.insert(pages.end(), s->kv().vector_pages.begin(), s->kv().vector_pages.end());
    const int32_t own = cache.BlocksFor(static_cast<int64_t>(s->tokens().size()));
    u.step_need += std::max<int32_t>(0, own - static_cast<int32_t>(s->kv().blocks.size()));
    u.readmit_need += own;
  }
  // Distinct, and not in the prefix cache (those are the cache's to count).
  const PrefixCache* prefix = cache.prefix_cache();
  auto exclusive = [&](std::vector<int32_t>& v) {
    std::sort(v.begin(), v.end());
    v.erase(std::unique(v.begin(), v.end()), v.end());
    if (prefix != nullptr)
      v.erase(std::remove_if(v.begin(), v.end(), [&](int32_t b) { return prefix->Contains(b); }),
              v.end());
    return static_cast<int32_t>(v.size());
  };
  u.kv_blocks = exclusive(blocks);
  u.pages = exclusive(pages);
  // Forks after the next step each copy a partly filled last block.
  const int32_t forks = is_beam() ? params_.beam_width - 1 : !forked_ ? params_.best_of - 1 : 0;
  u.step_need += forks;
  u.readmit_need += forks;
  return u;
}

int32_t SequenceGroup::total_tokens() const {
  size_t most = 0;
  for (const auto& s : live_) most = std::max(most, s->tokens().size());
  for (const auto& s : done_) most = std::max(most, s->tokens().size());
  return static_cast<int32_t>(most);
}

std::vector<const Sequence*> SequenceGroup::Results() const {
  std::vector<const Sequence*> out;
  if (is_beam()) {
    for (const auto& s : done_) out.push_back(s.get());  // best first
    if (out.empty())
      for (const auto& s : live_) out.push_back(s.get());
  } else {
    for (const auto& s : done_) out.push_back(s.get());
    std::stable_sort(out.begin(), out.end(), [&](const Sequence* a, const Sequence* b) {
      if (params_.best_of > params_.n && a->cumulative_logprob() != b->cumulative_logprob())
        return a->cumulative_logprob() > b->cumulative_logprob();
      return a->branch() < b->branch();
    });
  }
  if (static_cast<int32_t>(out.size()) > params_.n) out.resize(params_.n);
  return out;
}

}  // namespace para
