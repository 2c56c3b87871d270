// One generation request's state inside the engine: its tokens, KV blocks, sampler state,
// streamed text and finish status.
//
// Owned by whoever drives the engine (the offline runner, later the scheduler); the engine
// mutates it during Step. Not thread-safe.
#pragma once

#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "engine/kv_cache.h"
#include "engine/lora_adapter.h"
#include "engine/para_adapter.h"
#include "engine/sampling.h"
#include "engine/text/detokenizer.h"

namespace para {

struct StoppingParams {
  int32_t max_tokens = 16;              // generated tokens at most
  int32_t min_tokens = 0;               // before this many, EOS and stop ids cannot be drawn and
                                        // no stop condition is checked
  std::vector<int32_t> stop_token_ids;  // finish (reason "stop") when one is generated
  std::vector<std::string> stop;        // finish when the text contains one
  bool include_stop_str_in_output = false;  // the matched stop string ends the text (else cut)
  bool ignore_eos = false;                  // keep going past the model's EOS tokens
  bool skip_special_tokens = true;          // special tokens add no text (else their content)
};

// How many sequences a request runs and returns (a sequence group).
struct GroupParams {
  enum class EarlyStopping { kHeuristic, kTrue, kNever };  // transformers' False / True / "never"
  int32_t n = 1;                                           // results returned
  int32_t best_of = 1;     // independent samples drawn; the n with the highest cumulative log-prob
                           // are returned (best_of >= n)
  int32_t beam_width = 0;  // > 0: beam search with this many beams; the n best hypotheses
  float length_penalty = 1.0f;  // beam search: a hypothesis scores sum(logprob) / len^penalty
  EarlyStopping early_stopping = EarlyStopping::kHeuristic;
  // Sequences the group runs at once at most.
  int32_t width() const { return beam_width > 0 ? beam_width : best_of; }
};

struct GenerationRequest {
  std::vector<int32_t> prompt_ids;
  SamplingParams sampling;
  StoppingParams stopping;
  GroupParams group;
  std::shared_ptr<const ParaAdapter> para;  // the tenant's PARA adapter; null = none
  std::shared_ptr<const LoraAdapter> lora;  // or its LoRA adapter; both null = base model
};

enum class FinishReason { kNone, kLength, kStop, kEos, kCancelled };
const char* FinishReasonName(FinishReason r);

class Sequence {
 public:
  // `eos_ids` are the model's end-of-sequence ids (suppressed, with the stop ids, until
  // min_tokens are generated).
  Sequence(int64_t id, GenerationRequest request, const Tokenizer* tokenizer, uint64_t seed,
           const std::vector<int32_t>& eos_ids = {});

  int64_t id() const { return id_; }
  const GenerationRequest& request() const { return request_; }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int32_t num_prompt() const { return num_prompt_; }
  int32_t num_generated() const { return static_cast<int32_t>(tokens_.size()) - num_prompt_; }
  std::span<const int32_t> generated() const {
    return std::span<const int32_t>(tokens_).subspan(num_prompt_);
  }
  bool finished() const { return finish_ != FinishReason::kNone; }
  FinishReason finish_reason() const { return finish_; }
  const std::string& text() const { return text_; }
  const std::vector<LogprobEntry>& logprobs() const { return logprobs_; }
  const std::vector<LogprobEntry>& prompt_logprobs() const { return prompt_logprobs_; }
  bool prompt_logprobs_done() const { return prompt_logprobs_done_; }

  KvSequence& kv() { return kv_; }
  const KvSequence& kv() const { return kv_; }
  std::mt19937_64* rng() { return &rng_; }
  // What this sequence's history contributes to its next draw (penalties, min_tokens).
  SamplingHistory history() const;

  // Appends a sampled token and updates text and finish status. Returns the text delta that
  // may be streamed now. `eos_ids` are the model's end-of-sequence ids; `max_len` the context
  // limit.
  std::string AppendToken(int32_t token, const std::vector<int32_t>& eos_ids, int64_t max_len);
  void AddLogprobs(LogprobEntry e) { logprobs_.push_back(std::move(e)); }
  void AddPromptLogprobs(LogprobEntry e) { prompt_logprobs_.push_back(std::move(e)); }
  void MarkPromptLogprobsDone() { prompt_logprobs_done_ = true; }
  // Ends the sequence early (cancel); text held back so far is dropped.
  void Cancel() { finish_ = FinishReason::kCancelled; }

  // Sequence groups. The sum of the log-probabilities of the generated tokens (kept when the
  // group ranks its sequences: best_of, beam search).
  double cumulative_logprob() const { return cumulative_logprob_; }
  void AddCumulativeLogprob(double lp) { cumulative_logprob_ += lp; }
  // Which of its group's sequences this is (0 for a request that runs one).
  int32_t branch() const { return branch_; }
  // What the next Step does for this sequence besides appending one sampled token:
  //  - fanout > 1 (a sampling group's first step): draws `fanout` tokens from the same logits, the
  //    first with this sequence's RNG and draw i with ForkSeed(i)'s; the extra draws come back
  //    in SequenceUpdate::fanout for the group to fork its siblings with.
  //  - beam_candidates > 0 (beam search): appends nothing; the `beam_candidates` most likely
  //    next tokens come back in SequenceUpdate::candidates.
  int32_t fanout = 1;
  int32_t beam_candidates = 0;
  bool track_cumulative_logprob = false;
  // The RNG seed of the group's draw i (i >= 1); deterministic given the request's seed.
  uint64_t ForkSeed(int32_t i) const { return seed_ ^ (0x9E3779B97F4A7C15ull * (i + 1)); }
  // A copy of this sequence's state (tokens, text, stop matching, logprobs, sampler history)
  // for branch `branch`, with `kv` (a fork of this sequence's paged state) and its own RNG.
  std::unique_ptr<Sequence> Fork(int64_t id, int32_t branch, KvSequence kv,
                                 const std::mt19937_64& rng) const;

 private:
  std::string Finish(FinishReason reason);

  int64_t id_;
  GenerationRequest request_;
  std::vector<int32_t> tokens_;
  int32_t num_prompt_;
  KvSequence kv_;
  std::mt19937_64 rng_;
  std::vector<int32_t> penalized_;  // sorted distinct ids seen (for repetition penalty)
  std::vector<std::pair<int32_t, int32_t>> output_counts_;  // sorted (id, count) generated
  std::vector<int32_t> min_tokens_suppressed_;              // EOS and stop ids
  IncrementalDetokenizer detok_;
  StopStringMatcher stops_;
  std::string text_;
  FinishReason finish_ = FinishReason::kNone;
  std::vector<LogprobEntry> logprobs_;
  std::vector<LogprobEntry> prompt_logprobs_;
  bool prompt_logprobs_done_ = false;
  uint64_t seed_ = 0;
  int32_t branch_ = 0;
  double cumulative_logprob_ = 0;
};

}  // namespace para
