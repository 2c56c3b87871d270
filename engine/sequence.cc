#include "engine/sequence.h"

#include <algorithm>

namespace para {

const char* FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kNone:
      return "";
    case FinishReason::kLength:
      return "length";
    case FinishReason::kStop:
      return "stop";
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kCancelled:
      return "cancelled";
  }
  return "";
}

Sequence::Sequence(int64_t id, GenerationRequest request, const Tokenizer* tokenizer, uint64_t seed,
                   const std::vector<int32_t>& eos_ids)
    : id_(id),
      request_(std::move(request)),
      tokens_(request_.prompt_ids),
      num_prompt_(static_cast<int32_t>(tokens_.size())),
      rng_(seed),
      detok_(tokenizer, request_.stopping.skip_special_tokens),
      stops_(request_.stopping.stop, request_.stopping.include_stop_str_in_output) {
  if (request_.sampling.repetition_penalty != 1.0f) {
    penalized_ = tokens_;
    std::sort(penalized_.begin(), penalized_.end());
    penalized_.erase(std::unique(penalized_.begin(), penalized_.end()), penalized_.end());
  }
  seed_ = seed;
  const StoppingParams& stop = request_.stopping;
  if (stop.min_tokens > 0) {
    min_tokens_suppressed_ = stop.stop_token_ids;
    if (!stop.ignore_eos)
      min_tokens_suppressed_.insert(min_tokens_suppressed_.end(), eos_ids.begin(), eos_ids.end());
  }
}

std::unique_ptr<Sequence> Sequence::Fork(int64_t id, int32_t branch, KvSequence kv,
                                         const std::mt19937_64& rng) const {
  auto child = std::make_unique<Sequence>(*this);
  child->id_ = id;
  child->branch_ = branch;
  child->kv_ = std::move(kv);
  child->rng_ = rng;
  child->fanout = 1;
  return child;
}

SamplingHistory Sequence::history() const {
  SamplingHistory h;
  h.penalized = penalized_;
  h.output_counts = output_counts_;
  if (num_generated() < request_.stopping.min_tokens) h.suppressed = min_tokens_suppressed_;
  return h;
}

std::string Sequence::AppendToken(int32_t token, const std::vector<int32_t>& eos_ids,
                                  int64_t max_len) {
  tokens_.push_back(token);
  const SamplingParams& sp = request_.sampling;
  if (sp.repetition_penalty != 1.0f) {
    auto it = std::lower_bound(penalized_.begin(), penalized_.end(), token);
    if (it == penalized_.end() || *it != token) penalized_.insert(it, token);
  }
  if (sp.presence_penalty != 0.0f || sp.frequency_penalty != 0.0f) {
    auto it = std::lower_bound(output_counts_.begin(), output_counts_.end(),
                               std::pair<int32_t, int32_t>(token, 0));
    if (it != output_counts_.end() && it->first == token) {
      ++it->second;
    } else {
      output_counts_.insert(it, {token, 1});
    }
  }
  const StoppingParams& stop = request_.stopping;
  auto contains = [](const std::vector<int32_t>& v, int32_t t) {
    return std::find(v.begin(), v.end(), t) != v.end();
  };
  const bool may_stop = num_generated() >= stop.min_tokens;  // vLLM: no stop check before
  if (may_stop && !stop.ignore_eos && contains(eos_ids, token)) return Finish(FinishReason::kEos);
  if (may_stop && contains(stop.stop_token_ids, token)) return Finish(FinishReason::kStop);
  std::string delta = stops_.Feed(detok_.Append(token), /*may_match=*/may_stop);
  if (stops_.matched()) {
    finish_ = FinishReason::kStop;
    text_ += delta;
    return delta;
  }
  text_ += delta;
  if (num_generated() >= stop.max_tokens || static_cast<int64_t>(tokens_.size()) >= max_len)
    return delta + Finish(FinishReason::kLength);
  return delta;
}

std::string Sequence::Finish(FinishReason reason) {
  finish_ = reason;
  std::string tail = stops_.Feed(detok_.Flush());
  if (!stops_.matched()) tail += stops_.Flush();
  text_ += tail;
  return tail;
}

}  // namespace para
