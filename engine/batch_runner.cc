#include "engine/batch_runner.h"

#include <deque>

#include "absl/strings/str_cat.h"

namespace para {
namespace {

GenerationResult ResultOf(const Sequence& s) {
  GenerationResult r;
  r.token_ids.assign(s.generated().begin(), s.generated().end());
  r.text = s.text();
  r.finish_reason = s.finish_reason();
  r.num_prompt_tokens = s.num_prompt();
  r.logprobs = s.logprobs();
  r.prompt_logprobs = s.prompt_logprobs();
  return r;
}

struct Running {
  int64_t index;
  std::unique_ptr<Sequence> seq;
  int32_t reserved_blocks;
};

}  // namespace

std::vector<absl::StatusOr<GenerationResult>> RunBatch(Engine* engine,
                                                       std::vector<GenerationRequest> requests,
                                                       const BatchRunnerOptions& options,
                                                       const StepCallback& on_update) {
  std::vector<absl::StatusOr<GenerationResult>> results(requests.size(),
                                                        absl::UnknownError("not run"));
  std::deque<int64_t> waiting;
  const int32_t total_blocks = engine->kv_cache().pool().num_blocks();
  for (int64_t i = 0; i < static_cast<int64_t>(requests.size()); ++i) {
    absl::Status s = engine->ValidateRequest(requests[i]);
    if (s.ok() && engine->MaxBlocksFor(requests[i]) > total_blocks)
      s = absl::ResourceExhaustedError(absl::StrCat(
          "request needs up to ", engine->MaxBlocksFor(requests[i]), " KV blocks; the pool has ",
          total_blocks, " (lower max_tokens or enlarge the cache)"));
    if (s.ok()) {
      waiting.push_back(i);
    } else {
      results[i] = s;
    }
  }
  std::vector<Running> running;
  int32_t reserved = 0;
  std::vector<SequenceUpdate> updates;
  while (!waiting.empty() || !running.empty()) {
    int64_t step_tokens = static_cast<int64_t>(running.size());
    while (!waiting.empty() && static_cast<int32_t>(running.size()) < options.max_num_seqs) {
      const GenerationRequest& req = requests[waiting.front()];
      const int32_t need = engine->MaxBlocksFor(req);
      const int64_t prompt = static_cast<int64_t>(req.prompt_ids.size());
      const bool fits_budget =
          step_tokens + prompt <= options.max_batched_tokens || running.empty();
      if (reserved + need > total_blocks || !fits_budget) break;
      reserved += need;
      step_tokens += prompt;
      running.push_back(
          {waiting.front(), engine->NewSequence(std::move(requests[waiting.front()])), need});
      waiting.pop_front();
    }
    std::vector<Sequence*> batch;
    for (auto& r : running) batch.push_back(r.seq.get());
    updates.clear();
    absl::Status s = engine->Step(batch, &updates);
    if (!s.ok()) {  // cannot happen with the reservations above; fail every running request
      for (auto& r : running) {
        results[r.index] = s;
        engine->Release(r.seq.get());
      }
      running.clear();
      reserved = 0;
      continue;
    }
    if (on_update) {
      for (size_t i = 0; i < updates.size(); ++i) on_update(running[i].index, updates[i]);
    }
    std::vector<Running> still;
    for (auto& r : running) {
      if (r.seq->finished()) {
        results[r.index] = ResultOf(*r.seq);
        engine->Release(r.seq.get());
        reserved -= r.reserved_blocks;
      } else {
        still.push_back(std::move(r));
      }
    }
    running = std::move(still);
  }
  return results;
}

}  // namespace para
