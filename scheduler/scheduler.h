// The continuous-batching scheduler: which sequences run in each engine step.
//
// Policy only, no model: it sees sequences as token counts, block needs, tenants, adapters and
// times, and is deterministic given its inputs and its Clock, so it is tested with a fake engine.
// Two stages, in the manner of TensorRT-LLM's batch manager:
//   * capacity (admission): which waiting sequences may start now — bounded by max_num_seqs, the
//     free blocks of the pool (KV blocks for the whole prompt, PARA vector pages), each tenant's
//     in-flight limit, LoRA adapters per batch and adapter residency; tenants take turns by a
//     virtual token counter (S-LoRA's VTC) scaled by their weights; FCFS (by priority, then
//     arrival) within a tenant;
//   * step planning: every running sequence decodes one token; admitted prompts are prefilled
//     whole while the step's token budget lasts (a prompt longer than the budget runs as the step's
//     only prefill).
// When the pool cannot give every running sequence its next token's block, victims are preempted
// by recompute: lowest priority first, then the most recently admitted; their KV blocks are freed
// (PARA vector pages are kept: the vectors belong to the original prompt), they go back to the
// front of their tenant's queue and are later prefilled again with prompt + generated tokens.
// Cancelled and expired sequences leave at the next Schedule and their blocks are freed at once.
//
// The scheduler keeps its own exact mirror of each sequence's blocks (the engine reserves the same
// counts), so every plan it returns fits the pool. Not thread-safe: the engine thread owns it
// (EngineLoop feeds it requests and cancellations from other threads through its inbox).
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter_residency.h"
#include "scheduler/clock.h"

namespace para::sched {

using SeqId = int64_t;

struct TenantConfig {
  double weight = 1.0;       // share of service relative to other tenants
  int32_t max_inflight = 0;  // running sequences at most (0 = no limit)
  int32_t max_waiting = 0;   // queued sequences at most (0 = SchedulerConfig default)
};

struct SchedulerConfig {
  int32_t max_num_seqs = 256;         // running sequences at most
  int64_t max_batched_tokens = 8192;  // new tokens per step
  int32_t max_waiting = 100000;       // queued sequences, all tenants
  int32_t max_waiting_per_tenant = 10000;
  int32_t max_loras = 0;  // distinct LoRA adapters among running sequences (0 = no limit)
  // A request that has waited this long for its adapter to become resident (or for a LoRA slot)
  // stops admissions of other adapters' requests until it gets in, so busy adapters drain and
  // make room (0 = at once). Shorter waits let running adapters keep admitting.
  int64_t adapter_drain_after_us = 200'000;
  double block_watermark = 0.01;   // fraction of the pool admission leaves free for decode growth
  double vtc_input_weight = 1.0;   // VTC cost of a prompt token
  double vtc_output_weight = 2.0;  // VTC cost of a generated token
  std::map<std::string, TenantConfig> tenants;
  TenantConfig default_tenant;
};

// The pool the scheduler plans against.
struct PoolShape {
  int32_t total_blocks = 0;
  int32_t block_size = 16;
  int32_t para_pages = 0;  // pages a sequence with a PARA adapter holds for its vectors
};

using para::AdapterKind;
using para::AdapterResidency;

struct SeqSpec {
  std::string tenant;
  int32_t priority = 0;  // higher runs first within its tenant and is preempted last
  int32_t prompt_len = 0;
  int32_t max_total_tokens = 0;    // prompt + max_tokens, capped by the context limit
  std::optional<TimeUs> deadline;  // absolute; expired sequences end at the next step
  AdapterKind adapter_kind = AdapterKind::kNone;
  uint64_t adapter_id = 0;  // identifies the adapter (residency, LoRA slots)
};

enum class EndReason { kCancelled, kExpired };
const char* EndReasonName(EndReason r);

struct StepPlan {
  std::vector<SeqId> preempted;  // free their KV blocks (keep PARA pages) before the step
  std::vector<std::pair<SeqId, EndReason>> ended;  // free everything and report
  std::vector<SeqId> prefill;  // process all their tokens (prompt, + generated after preemption)
  std::vector<SeqId> decode;   // process their last token
  int64_t num_tokens = 0;      // tokens the step processes
  bool empty() const { return prefill.empty() && decode.empty(); }
};

struct SchedulerStats {
  int64_t admitted = 0;
  int64_t preemptions = 0;
  int64_t finished = 0;
  int64_t cancelled = 0;
  int64_t expired = 0;
  int64_t refused = 0;
};

class Scheduler {
 public:
  Scheduler(SchedulerConfig config, PoolShape pool, const Clock* clock,
            AdapterResidency* residency = nullptr);

  // Queues a sequence. RESOURCE_EXHAUSTED when the queue (total or the tenant's) is full;
  // INVALID_ARGUMENT when it could never fit the pool.
  absl::StatusOr<SeqId> Add(const SeqSpec& spec);
  // Marks a sequence cancelled; it leaves at the next Schedule. Unknown ids are ignored.
  void Cancel(SeqId id);
  // Plans the next step.
  StepPlan Schedule();
  // Reports the engine's result for a sequence of the last plan: its token count (prompt +
  // generated) after the step and whether it finished. A finished sequence's blocks are freed.
  void Completed(SeqId id, int32_t total_tokens, bool finished);

  bool HasWork() const { return !seqs_.empty(); }
  // The earliest deadline of a queued or running sequence (for the loop's idle wait).
  std::optional<TimeUs> NextDeadline() const;
  int32_t num_waiting() const { return num_waiting_; }
  int32_t num_running() const { return static_cast<int32_t>(running_.size()); }
  int32_t blocks_used() const { return blocks_used_; }
  const PoolShape& pool() const { return pool_; }
  const SchedulerStats& stats() const { return stats_; }
  // Weighted service a tenant has received (VTC counter before weight scaling), for tests.
  double ServiceOf(const std::string& tenant) const;
  double CounterOf(const std::string& tenant) const;

 private:
  enum class State { kWaiting, kRunning };
  struct Seq {
    SeqId id;
    SeqSpec spec;
    State state = State::kWaiting;
    TimeUs arrival = 0;
    int32_t total_tokens = 0;  // prompt + generated so far
    int32_t kv_blocks = 0;     // KV blocks held (mirror of the engine's reservation)
    int32_t pages = 0;         // PARA vector pages held
    int64_t admit_order = 0;
    bool charged_prompt = false;
    bool cancelled = false;
  };
  struct Tenant {
    TenantConfig config;
    std::deque<SeqId> queue;  // waiting, ordered by (priority desc, arrival)
    int32_t running = 0;
    double counter = 0;  // VTC, weight-scaled
    double service = 0;  // unscaled
  };

  Tenant& TenantFor(const std::string& name);
  int32_t BlocksFor(int64_t tokens) const {
    return static_cast<int32_t>((tokens + pool_.block_size - 1) / pool_.block_size);
  }
  int32_t free_blocks() const { return pool_.total_blocks - blocks_used_; }
  void Enqueue(Seq& s);
  void EndExpiredAndCancelled(StepPlan* plan);
  void ReserveDecode(StepPlan* plan);
  void Admit(StepPlan* plan);
  enum class Blocked { kNo, kTenant, kResidency };
  Blocked Admissible(const Seq& s, const Tenant& t) const;
  void CountRunning(const Seq& s, int delta);
  void Preempt(Seq& s, StepPlan* plan);
  void Free(Seq& s);
  void Remove(SeqId id);
  void Charge(Seq& s, double tokens, double weight);
  std::optional<std::string> PickTenant(const std::map<std::string, bool>& blocked);

  SchedulerConfig config_;
  PoolShape pool_;
  const Clock* clock_;
  AdapterResidency* residency_;
  std::map<SeqId, Seq> seqs_;
  std::map<std::string, Tenant> tenants_;
  std::vector<SeqId> running_;                    // in admission order
  std::map<uint64_t, int32_t> running_loras_;     // LoRA adapter id -> running sequences using it
  std::map<uint64_t, int32_t> running_adapters_;  // any adapter id -> running sequences using it
  int32_t num_waiting_ = 0;
  int32_t blocks_used_ = 0;
  SeqId next_id_ = 1;
  int64_t next_admit_ = 0;
  SchedulerStats stats_;
};

}  // namespace para::sched
