// The engine loop: one thread that plans a step with the Scheduler, runs it on the Engine, and
// delivers each request's tokens and end to its observer; then repeats. It waits on a condition
// variable when there is nothing to do (no spinning).
//
// Threading: Submit and Cancel may be called from any thread; they only touch the inbox (a mutex
// and a queue), never engine state, and never wait for a step. Everything else — the scheduler,
// the engine, the observers' callbacks — runs on the loop's thread (Start) or, offline, on the
// thread calling RunUntilIdle (para-cli). Observers must not block.
// Ownership: the loop borrows the Engine (which must outlive it) and owns the Sequences; an
// observer is held until its request's OnDone has been delivered.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/sequence_group.h"
#include "scheduler/clock.h"
#include "scheduler/scheduler.h"

namespace para::sched {

// Everything a request produced, delivered with its end.
struct RequestResult {
  std::vector<int32_t> token_ids;  // generated ids
  std::string text;
  FinishReason finish_reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  std::vector<LogprobEntry> logprobs;
  std::vector<LogprobEntry> prompt_logprobs;
  TimeUs queue_time_us = 0;           // submission -> first admission
  TimeUs time_to_first_token_us = 0;  // submission -> first token
  int32_t preemptions = 0;
  int32_t index = 0;              // which of the request's n results this is
  double cumulative_logprob = 0;  // best_of / beam search: its score's log-prob sum
  // RunOffline, with n > 1: every result, best first (this one repeats choices[0]).
  std::vector<RequestResult> choices;
};

struct TokenEvent {
  uint64_t handle;
  int32_t index = 0;  // which of the request's sequences (n > 1)
  int32_t token;
  std::string text_delta;                  // text that may be shown now (possibly empty)
  const LogprobEntry* logprobs = nullptr;  // when asked, else null
};

struct DoneEvent {
  uint64_t handle;
  // OK when the request finished (result.finish_reason says why: length, stop, eos, or cancelled);
  // DEADLINE_EXCEEDED when it expired; another error when it was refused or failed.
  absl::Status status;
  RequestResult result;
  // With n > 1: every returned sequence, best first (result is choices[0]).
  std::vector<RequestResult> choices;
  // Whether the text came through OnToken (false for beam search: only here).
  bool streamed = true;
};

class RequestObserver {
 public:
  virtual ~RequestObserver() = default;
  virtual void OnToken(const TokenEvent& event) = 0;
  virtual void OnDone(const DoneEvent& event) = 0;
};

struct Submission {
  GenerationRequest request;  // prompt, sampling, stopping, adapter
  std::string tenant;
  int32_t priority = 0;
  std::optional<TimeUs> deadline;  // absolute, on the loop's clock
  std::shared_ptr<RequestObserver> observer;
  // Held until the request ends (e.g. the adapter store's lease on the adapter's version).
  std::shared_ptr<void> keepalive;
  // The adapter's name as clients know it ("" for the base model); for metrics and snapshots.
  std::string adapter_name;
};

// One finished request, as reported to a LoopListener.
struct FinishedRequest {
  std::string tenant;
  std::string adapter;  // "" for the base model
  AdapterKind adapter_kind = AdapterKind::kNone;
  absl::StatusCode code = absl::StatusCode::kOk;  // kOk: finished (finish_reason says how)
  FinishReason finish_reason = FinishReason::kNone;
  int32_t prompt_tokens = 0;
  int32_t generated_tokens = 0;
  std::optional<TimeUs> queue_us;  // submission -> first admission (unset: never admitted)
  std::optional<TimeUs> ttft_us;   // submission -> first token (unset: no token)
  TimeUs e2e_us = 0;               // submission -> end
};

// Observes the loop for metrics. Called on the loop's thread; must not block.
class LoopListener {
 public:
  virtual ~LoopListener() = default;
  // The time between a request's consecutive tokens, once per token after its first.
  virtual void OnInterTokenLatency(TimeUs us) = 0;
  virtual void OnRequestFinished(const FinishedRequest& request) = 0;
};

struct EngineLoopStats {
  int64_t steps = 0;
  int64_t tokens = 0;
};

// A consistent view of the loop's state for other threads (metrics, admin calls).
struct LoopSnapshot {
  int32_t kv_blocks_total = 0;
  int32_t kv_blocks_free = 0;  // free, or cached and idle (evicted on demand)
  // Prefix caching (zero when off): prompt tokens looked up, tokens whose KV was reused, and the
  // blocks the cache holds.
  int64_t prefix_query_tokens = 0;
  int64_t prefix_hit_tokens = 0;
  int32_t prefix_cached_blocks = 0;
  int32_t block_size = 0;
  int32_t running = 0;
  int32_t waiting = 0;
  int64_t in_flight = 0;
  int64_t steps = 0;
  SchedulerStats scheduler;
  // Distinct adapter names (sorted) of running and of waiting requests, per kind.
  std::vector<std::string> running_lora, waiting_lora, running_para, waiting_para;
};

class EngineLoop {
 public:
  // `residency` (may be null) decides which adapters may be batched now (the adapter store).
  EngineLoop(Engine* engine, SchedulerConfig config, const Clock* clock,
             AdapterResidency* residency = nullptr);
  ~EngineLoop();

  // Validates and queues a request (any thread). INVALID_ARGUMENT for a bad request,
  // RESOURCE_EXHAUSTED when the queue is full; refusals found later (a tenant's queue bound) come
  // through the observer's OnDone. Returns the handle for Cancel.
  absl::StatusOr<uint64_t> Submit(Submission submission);
  // Cancels a request (any thread); it leaves the batch at the next step, frees its blocks and
  // gets OnDone with finish reason "cancelled". Unknown or finished handles are ignored.
  void Cancel(uint64_t handle);

  // Sets the listener (borrowed; it must outlive the loop). Call before Start.
  void SetListener(LoopListener* listener) { listener_ = listener; }
  // Runs the loop on its own thread until Stop.
  void Start();
  // Stops the thread after the current step; requests still queued or running get CANCELLED.
  void Stop();
  // Offline: runs steps on the calling thread until nothing is queued or running.
  void RunUntilIdle();
  // One iteration: take the inbox, plan, step, deliver. False when there is no work at all.
  bool RunOnce();

  // Requests submitted and not yet done (any thread).
  int64_t in_flight() const;
  // How long work has waited for the loop's thread to move on (any thread): the age of the
  // iteration in progress, or of the oldest request not yet taken in, whichever is older; 0 when
  // the thread is idle or waiting with nothing to do. A stuck engine makes it grow.
  TimeUs StalledFor() const;
  // The state after the last iteration (any thread).
  LoopSnapshot Snapshot() const;
  const Scheduler& scheduler() const { return scheduler_; }
  const EngineLoopStats& stats() const { return stats_; }

 private:
  struct Entry {
    uint64_t handle;
    std::unique_ptr<SequenceGroup> group;
    std::shared_ptr<RequestObserver> observer;
    std::shared_ptr<void> keepalive;
    TimeUs submitted = 0;
    std::optional<TimeUs> admitted, first_token, last_token;
    int32_t preemptions = 0;
    std::string tenant, adapter_name;
    bool running = false;  // in the last step's batch
    bool was_running = false;
  };
  struct Pending {
    uint64_t handle;
    Submission submission;
    TimeUs submitted;
  };

  void DrainInbox();
  void Finish(SeqId id, absl::Status status);
  void RunStep(const StepPlan& plan);
  void ThreadMain();
  void PublishSnapshot();
  void CollectAdapterNames(LoopSnapshot* s);
  FinishedRequest Record(const Entry& e, const DoneEvent& done) const;

  Engine* engine_;
  const Clock* clock_;
  Scheduler scheduler_;
  std::map<SeqId, Entry> entries_;
  std::map<uint64_t, SeqId> by_handle_;
  EngineLoopStats stats_;
  LoopListener* listener_ = nullptr;
  bool names_dirty_ = true;  // adapter names in the snapshot need rebuilding

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Pending> inbox_;
  std::vector<uint64_t> cancels_;
  uint64_t next_handle_ = 1;
  LoopSnapshot snapshot_;
  int64_t in_flight_ = 0;
  bool stop_ = false;
  std::optional<TimeUs> iteration_started_;  // the thread is inside RunOnce since then
  std::thread thread_;
};

// Runs requests to completion through an EngineLoop on the calling thread (the offline path of
// para-cli and of tests); results in request order, a refused request gets its error. A
// submission's own observer, if any, still receives its events.
std::vector<absl::StatusOr<RequestResult>> RunOffline(Engine* engine,
                                                      std::vector<Submission> submissions,
                                                      const SchedulerConfig& config);

}  // namespace para::sched
