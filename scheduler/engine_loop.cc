#include "scheduler/engine_loop.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"

namespace para::sched {
namespace {

SchedulerConfig WithReports(SchedulerConfig c, const Engine& e) {
  c.engine_reports_blocks = c.engine_reports_blocks || e.kv_cache().prefix_cache() != nullptr;
  return c;
}

PoolShape ShapeOf(Engine& e) {
  return {e.kv_cache().pool().num_blocks(), e.kv_cache().block_size(), e.kv_cache().para_pages()};
}

RequestResult ResultOf(const Sequence& s) {
  RequestResult r;
  r.token_ids.assign(s.generated().begin(), s.generated().end());
  r.text = s.text();
  r.finish_reason = s.finish_reason();
  r.prompt_tokens = s.num_prompt();
  r.logprobs = s.logprobs();
  r.prompt_logprobs = s.prompt_logprobs();
  r.index = s.branch();
  r.cumulative_logprob = s.cumulative_logprob();
  return r;
}

GroupProgress ProgressOf(const SequenceGroup& g) {
  GroupProgress p;
  const GroupUsage u = g.Usage();
  p.total_tokens = g.total_tokens();
  p.generated = g.generated_tokens();
  p.finished = g.finished();
  p.kv_blocks = u.kv_blocks;
  p.pages = u.pages;
  p.step_need = u.step_need;
  p.readmit_need = u.readmit_need;
  return p;
}

}  // namespace

EngineLoop::EngineLoop(Engine* engine, SchedulerConfig config, const Clock* clock,
                       AdapterResidency* residency)
    : engine_(engine),
      clock_(clock),
      scheduler_(WithReports(std::move(config), *engine), ShapeOf(*engine), clock, residency) {
  PublishSnapshot();
}

EngineLoop::~EngineLoop() { Stop(); }

absl::StatusOr<uint64_t> EngineLoop::Submit(Submission submission) {
  if (absl::Status s = engine_->ValidateRequest(submission.request); !s.ok()) return s;
  std::lock_guard<std::mutex> lock(mu_);
  if (stop_) return absl::UnavailableError("the engine loop is shutting down");
  const uint64_t handle = next_handle_++;
  inbox_.push_back({handle, std::move(submission), clock_->Now()});
  ++in_flight_;
  cv_.notify_one();
  return handle;
}

void EngineLoop::Cancel(uint64_t handle) {
  std::lock_guard<std::mutex> lock(mu_);
  cancels_.push_back(handle);
  cv_.notify_one();
}

int64_t EngineLoop::in_flight() const {
  std::lock_guard<std::mutex> lock(mu_);
  return in_flight_;
}

void EngineLoop::DrainInbox() {
  std::vector<Pending> inbox;
  std::vector<uint64_t> cancels;
  {
    std::lock_guard<std::mutex> lock(mu_);
    inbox.swap(inbox_);
    cancels.swap(cancels_);
  }
  // Refusals are delivered after the snapshot counts what was admitted with them.
  std::vector<std::pair<std::shared_ptr<RequestObserver>, DoneEvent>> refused;
  for (Pending& p : inbox) {
    GenerationRequest& req = p.submission.request;
    SeqSpec spec;
    spec.tenant = p.submission.tenant;
    spec.priority = p.submission.priority;
    spec.prompt_len = static_cast<int32_t>(req.prompt_ids.size());
    spec.max_total_tokens = static_cast<int32_t>(
        std::min<int64_t>(static_cast<int64_t>(req.prompt_ids.size()) + req.stopping.max_tokens,
                          engine_->max_model_len()));
    spec.deadline = p.submission.deadline;
    spec.width = req.group.width();
    if (req.para) {
      spec.adapter_kind = AdapterKind::kPara;
      spec.adapter_id = reinterpret_cast<uintptr_t>(req.para.get());
    } else if (req.lora) {
      spec.adapter_kind = AdapterKind::kLora;
      spec.adapter_id = reinterpret_cast<uintptr_t>(req.lora.get());
    }
    absl::StatusOr<SeqId> id = scheduler_.Add(spec);
    if (!id.ok()) {
      DoneEvent done{p.handle, id.status(), {}};
      if (listener_ != nullptr) {
        FinishedRequest f;
        f.tenant = p.submission.tenant;
        f.adapter = p.submission.adapter_name;
        f.adapter_kind = spec.adapter_kind;
        f.code = id.status().code();
        f.prompt_tokens = spec.prompt_len;
        f.e2e_us = clock_->Now() - p.submitted;
        listener_->OnRequestFinished(f);
      }
      {
        std::lock_guard<std::mutex> lock(mu_);
        --in_flight_;
      }
      refused.emplace_back(std::move(p.submission.observer), std::move(done));
      continue;
    }
    Entry& e = entries_[*id];
    e.handle = p.handle;
    e.group = std::make_unique<SequenceGroup>(engine_, engine_->NewSequence(std::move(req)));
    e.observer = std::move(p.submission.observer);
    e.keepalive = std::move(p.submission.keepalive);
    e.submitted = p.submitted;
    e.tenant = std::move(p.submission.tenant);
    e.adapter_name = std::move(p.submission.adapter_name);
    by_handle_[p.handle] = *id;
    names_dirty_ = true;
  }
  for (uint64_t h : cancels) {
    auto it = by_handle_.find(h);
    if (it != by_handle_.end()) scheduler_.Cancel(it->second);
  }
  if (inbox.empty()) return;
  PublishSnapshot();
  for (auto& [observer, done] : refused) observer->OnDone(done);
}

FinishedRequest EngineLoop::Record(const Entry& e, const DoneEvent& done) const {
  FinishedRequest f;
  f.tenant = e.tenant;
  f.adapter = e.adapter_name;
  const GenerationRequest& req = e.group->request();
  f.adapter_kind = req.para   ? AdapterKind::kPara
                   : req.lora ? AdapterKind::kLora
                              : AdapterKind::kNone;
  f.code = done.status.code();
  f.finish_reason = done.result.finish_reason;
  f.prompt_tokens = done.result.prompt_tokens;
  f.generated_tokens = static_cast<int32_t>(done.result.token_ids.size());
  if (e.admitted) f.queue_us = *e.admitted - e.submitted;
  if (e.first_token) f.ttft_us = *e.first_token - e.submitted;
  f.e2e_us = clock_->Now() - e.submitted;
  return f;
}

void EngineLoop::Finish(SeqId id, absl::Status status) {
  auto it = entries_.find(id);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  e.group->Release();
  DoneEvent done{e.handle, std::move(status), {}};
  done.streamed = e.group->streams();
  const std::vector<const Sequence*> results = e.group->Results();
  if (!results.empty()) done.result = ResultOf(*results[0]);
  if (e.group->request().group.n > 1)
    for (size_t i = 0; i < results.size(); ++i) {
      done.choices.push_back(ResultOf(*results[i]));
      done.choices.back().index = static_cast<int32_t>(i);
    }
  if (!done.choices.empty()) done.result = done.choices[0];
  done.result.queue_time_us = e.admitted ? *e.admitted - e.submitted : 0;
  done.result.time_to_first_token_us = e.first_token ? *e.first_token - e.submitted : 0;
  done.result.preemptions = e.preemptions;
  if (listener_ != nullptr) listener_->OnRequestFinished(Record(e, done));
  std::shared_ptr<RequestObserver> observer = std::move(e.observer);
  by_handle_.erase(e.handle);
  entries_.erase(it);
  names_dirty_ = true;
  {
    // Before the end is delivered: a client that sees its response must not see it in flight.
    std::lock_guard<std::mutex> lock(mu_);
    --in_flight_;
  }
  observer->OnDone(done);
}

namespace {

// The first failed update of a request's sequences [begin, end), or OK.
absl::Status FirstFailure(const std::vector<SequenceUpdate>& updates, size_t begin, size_t end) {
  for (size_t k = begin; k < end; ++k)
    if (!updates[k].status.ok()) return updates[k].status;
  return absl::OkStatus();
}

}  // namespace

void EngineLoop::RunStep(const StepPlan& plan) {
  for (const auto& [id, reason] : plan.ended) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    if (reason == EndReason::kCancelled) {
      it->second.group->Cancel();
      Finish(id, absl::OkStatus());
    } else if (reason == EndReason::kUnfit) {
      Finish(id, absl::ResourceExhaustedError(
                     "the request was preempted to make room, and its sequences, recomputed "
                     "separately, need more KV blocks than the whole pool holds; retry with a "
                     "smaller n, best_of, beam_width or max_tokens"));
    } else {
      Finish(id, absl::DeadlineExceededError("the request's deadline passed before it finished"));
    }
  }
  for (SeqId id : plan.preempted) {
    auto it = entries_.find(id);
    if (it == entries_.end()) continue;
    it->second.group->ReleaseKv();
    ++it->second.preemptions;
  }
  // Which entries are in this step's batch (no allocation: flags on the entries).
  for (auto& [id, e] : entries_) e.was_running = std::exchange(e.running, false);
  for (const auto* ids : {&plan.prefill, &plan.decode})
    for (SeqId id : *ids)
      if (auto it = entries_.find(id); it != entries_.end()) it->second.running = true;
  for (const auto& [id, e] : entries_)
    if (e.running != e.was_running) names_dirty_ = true;
  if (plan.empty()) return;
  const TimeUs now = clock_->Now();
  std::vector<SeqId> ids(plan.prefill);
  ids.insert(ids.end(), plan.decode.begin(), plan.decode.end());
  std::vector<Sequence*> seqs;
  std::vector<size_t> first_seq;  // each id's first sequence in `seqs`
  for (SeqId id : ids) {
    Entry& e = entries_.at(id);
    if (!e.admitted) e.admitted = now;
    first_seq.push_back(seqs.size());
    for (Sequence* s : e.group->Live()) seqs.push_back(s);
  }
  first_seq.push_back(seqs.size());
  std::vector<SequenceUpdate> updates;
  absl::Status s = engine_->Step(seqs, &updates);
  ++stats_.steps;
  stats_.tokens += plan.num_tokens;
  if (!s.ok()) {  // the plan fits the pool by construction; fail the step's requests, not the loop
    for (SeqId id : ids) {
      scheduler_.Cancel(id);
      Finish(id, absl::InternalError(absl::StrCat("engine step failed: ", s.message())));
    }
    return;
  }
  // Before any token is delivered: a client that has seen its first token sees itself running.
  PublishSnapshot();
  const TimeUs done_at = clock_->Now();
  for (size_t i = 0; i < ids.size(); ++i) {
    Entry& e = entries_.at(ids[i]);
    SequenceGroup& g = *e.group;
    if (absl::Status failed = FirstFailure(updates, first_seq[i], first_seq[i + 1]); !failed.ok()) {
      scheduler_.Cancel(ids[i]);  // only this request ends; the others' tokens are delivered
      Finish(ids[i], std::move(failed));
      continue;
    }
    absl::StatusOr<std::vector<BranchToken>> tokens = g.Apply(std::span<const SequenceUpdate>(
        updates.data() + first_seq[i], first_seq[i + 1] - first_seq[i]));
    if (!tokens.ok()) {  // a fork found no block: the request ends, the others go on
      scheduler_.Cancel(ids[i]);
      Finish(ids[i], absl::InternalError(
                         absl::StrCat("sequence group step failed: ", tokens.status().message())));
      continue;
    }
    if (!e.first_token) e.first_token = done_at;
    if (e.last_token && listener_ != nullptr)
      listener_->OnInterTokenLatency(done_at - *e.last_token);
    e.last_token = done_at;
    if (g.streams())
      for (const BranchToken& t : *tokens)
        e.observer->OnToken(TokenEvent{e.handle, t.branch, t.token, t.text_delta, t.logprobs});
    if (g.request().group.width() > 1 || engine_->kv_cache().prefix_cache() != nullptr) {
      scheduler_.CompletedGroup(ids[i], ProgressOf(g));
    } else {
      scheduler_.Completed(ids[i], g.total_tokens(), g.finished());
    }
    if (g.finished()) Finish(ids[i], absl::OkStatus());
  }
}

bool EngineLoop::RunOnce() {
  DrainInbox();
  if (!scheduler_.HasWork()) {
    PublishSnapshot();
    return false;
  }
  RunStep(scheduler_.Schedule());
  if (const PrefixCache* cache = engine_->kv_cache().prefix_cache())
    scheduler_.SyncPinned(cache->pinned());  // cached blocks in use, counted once
  PublishSnapshot();
  return true;
}

void EngineLoop::PublishSnapshot() {
  LoopSnapshot s;
  const BlockPool& pool = engine_->kv_cache().pool();
  s.kv_blocks_total = pool.num_blocks();
  s.kv_blocks_free = engine_->kv_cache().available();  // idle cached blocks are free to take
  if (const PrefixCache* cache = engine_->kv_cache().prefix_cache()) {
    s.prefix_query_tokens = cache->stats().query_tokens;
    s.prefix_hit_tokens = cache->stats().hit_tokens;
    s.prefix_cached_blocks = cache->members();
  }
  s.block_size = engine_->kv_cache().block_size();
  s.running = scheduler_.num_running();
  s.waiting = scheduler_.num_waiting();
  s.steps = stats_.steps;
  s.scheduler = scheduler_.stats();
  CollectAdapterNames(&s);
  std::lock_guard<std::mutex> lock(mu_);
  s.in_flight = in_flight_;
  snapshot_ = s;
}

void EngineLoop::CollectAdapterNames(LoopSnapshot* s) {
  // Rebuilt only when a request came, ended, or entered or left the batch.
  if (!names_dirty_) {
    std::lock_guard<std::mutex> lock(mu_);
    s->running_lora = snapshot_.running_lora;
    s->waiting_lora = snapshot_.waiting_lora;
    s->running_para = snapshot_.running_para;
    s->waiting_para = snapshot_.waiting_para;
    return;
  }
  names_dirty_ = false;
  std::set<std::string> running_lora, waiting_lora, running_para, waiting_para;
  for (const auto& [id, e] : entries_) {
    if (e.adapter_name.empty()) continue;
    const GenerationRequest& req = e.group->request();
    if (req.lora) (e.running ? running_lora : waiting_lora).insert(e.adapter_name);
    if (req.para) (e.running ? running_para : waiting_para).insert(e.adapter_name);
  }
  s->running_lora.assign(running_lora.begin(), running_lora.end());
  s->waiting_lora.assign(waiting_lora.begin(), waiting_lora.end());
  s->running_para.assign(running_para.begin(), running_para.end());
  s->waiting_para.assign(waiting_para.begin(), waiting_para.end());
}

TimeUs EngineLoop::StalledFor() const {
  const TimeUs now = clock_->Now();
  std::lock_guard<std::mutex> lock(mu_);
  TimeUs since = now;
  if (iteration_started_) since = std::min(since, *iteration_started_);
  if (!inbox_.empty()) since = std::min(since, inbox_.front().submitted);
  return now - since;
}

LoopSnapshot EngineLoop::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  LoopSnapshot s = snapshot_;
  s.in_flight = in_flight_;
  return s;
}

void EngineLoop::RunUntilIdle() {
  for (;;) {
    const int64_t steps = stats_.steps;
    if (!RunOnce()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (inbox_.empty()) return;
      continue;
    }
    // Work remains but nothing could run (an adapter is on its way in): do not spin.
    if (stats_.steps == steps) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

void EngineLoop::ThreadMain() {
  for (;;) {
    const int64_t steps = stats_.steps;
    {
      std::lock_guard<std::mutex> lock(mu_);
      iteration_started_ = clock_->Now();
    }
    const bool work = RunOnce();
    std::unique_lock<std::mutex> lock(mu_);
    iteration_started_.reset();
    if (stop_) break;
    if (!inbox_.empty() || !cancels_.empty()) continue;
    if (!work) {
      cv_.wait(lock, [&] { return stop_ || !inbox_.empty() || !cancels_.empty(); });
    } else if (stats_.steps == steps) {
      // Work is queued but nothing could run now (waiting for an adapter or a deadline): sleep
      // until something arrives, at most until the next deadline or 5 ms.
      cv_.wait_for(lock, std::chrono::milliseconds(5),
                   [&] { return stop_ || !inbox_.empty() || !cancels_.empty(); });
    }
  }
  // Stopping: everything still queued or running ends as cancelled.
  DrainInbox();
  std::vector<SeqId> ids;
  for (const auto& [id, e] : entries_) ids.push_back(id);
  for (SeqId id : ids) {
    scheduler_.Cancel(id);
    entries_.at(id).group->Cancel();
    Finish(id, absl::OkStatus());
  }
  scheduler_.Schedule();  // frees the cancelled sequences' accounting
  PublishSnapshot();
}

void EngineLoop::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stop_ = false;
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "para-engine");
    ThreadMain();
  });
}

void EngineLoop::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
    cv_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

namespace {

// Collects one request's result for RunOffline, passing events on to the caller's observer.
class Collector : public RequestObserver {
 public:
  Collector(absl::StatusOr<RequestResult>* out, std::shared_ptr<RequestObserver> inner)
      : out_(out), inner_(std::move(inner)) {}
  void OnToken(const TokenEvent& e) override {
    if (inner_) inner_->OnToken(e);
  }
  void OnDone(const DoneEvent& e) override {
    if (e.status.ok()) {
      RequestResult r = e.result;
      r.choices = e.choices;
      *out_ = std::move(r);
    } else {
      *out_ = e.status;
    }
    if (inner_) inner_->OnDone(e);
  }

 private:
  absl::StatusOr<RequestResult>* out_;
  std::shared_ptr<RequestObserver> inner_;
};

}  // namespace

std::vector<absl::StatusOr<RequestResult>> RunOffline(Engine* engine,
                                                      std::vector<Submission> submissions,
                                                      const SchedulerConfig& config) {
  SystemClock clock;
  EngineLoop loop(engine, config, &clock);
  std::vector<absl::StatusOr<RequestResult>> results(submissions.size(),
                                                     absl::UnknownError("not run"));
  for (size_t i = 0; i < submissions.size(); ++i) {
    submissions[i].observer =
        std::make_shared<Collector>(&results[i], std::move(submissions[i].observer));
    absl::StatusOr<uint64_t> h = loop.Submit(std::move(submissions[i]));
    if (!h.ok()) results[i] = h.status();
  }
  loop.RunUntilIdle();
  return results;
}

}  // namespace para::sched
