// Runs a set of generation requests to completion through one Engine, batching them together:
// the offline path behind `para-cli generate`.
//
// Admission is first-come-first-served: a request starts when fewer than max_num_seqs run, the
// step's prefill token budget allows, and the pool can hold the blocks it may need over its whole
// life (prompt + max_tokens), so running sequences never run out of blocks. The continuous-
// batching scheduler (scheduler/) replaces this policy for the server. Not thread-safe; drives
// the engine from the calling thread.
#pragma once

#include <functional>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"

namespace para {

struct BatchRunnerOptions {
  int32_t max_num_seqs = 256;         // sequences in one step at most
  int64_t max_batched_tokens = 8192;  // new tokens in one step (a longer prompt runs alone)
};

struct GenerationResult {
  std::vector<int32_t> token_ids;  // generated ids
  std::string text;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t num_prompt_tokens = 0;
  std::vector<LogprobEntry> logprobs;
  std::vector<LogprobEntry> prompt_logprobs;
};

// Called after every step with that step's updates (for streaming); may be empty.
using StepCallback = std::function<void(int64_t request_index, const SequenceUpdate&)>;

// Results in request order; a request that fails validation gets its error instead.
std::vector<absl::StatusOr<GenerationResult>> RunBatch(Engine* engine,
                                                       std::vector<GenerationRequest> requests,
                                                       const BatchRunnerOptions& options,
                                                       const StepCallback& on_update = nullptr);

}  // namespace para
