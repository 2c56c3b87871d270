#include "scheduler/scheduler.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"

namespace para::sched {

const char* EndReasonName(EndReason r) {
  return r == EndReason::kCancelled ? "cancelled" : r == EndReason::kExpired ? "expired" : "unfit";
}

Scheduler::Scheduler(SchedulerConfig config, PoolShape pool, const Clock* clock,
                     AdapterResidency* residency)
    : config_(std::move(config)), pool_(pool), clock_(clock), residency_(residency) {}

Scheduler::Tenant& Scheduler::TenantFor(const std::string& name) {
  auto it = tenants_.find(name);
  if (it != tenants_.end()) return it->second;
  Tenant t;
  auto cfg = config_.tenants.find(name);
  t.config = cfg != config_.tenants.end() ? cfg->second : config_.default_tenant;
  if (t.config.max_waiting <= 0) t.config.max_waiting = config_.max_waiting_per_tenant;
  if (t.config.weight <= 0) t.config.weight = 1.0;
  return tenants_.emplace(name, std::move(t)).first->second;
}

absl::StatusOr<SeqId> Scheduler::Add(const SeqSpec& spec) {
  if (spec.prompt_len < 1 || spec.max_total_tokens <= spec.prompt_len)
    return absl::InvalidArgumentError(
        "a sequence needs a prompt and room for at least one generated token");
  const int32_t pages = spec.adapter_kind == AdapterKind::kPara ? pool_.para_pages : 0;
  // A group's prompt blocks are shared; each of its sequences has the rest of its own, and a step
  // that forks copies a partly filled last block for every sequence but one before the old
  // sequences let theirs go.
  const int32_t shared = spec.width > 1 ? spec.prompt_len / pool_.block_size : 0;
  const int32_t need =
      shared + spec.width * (BlocksFor(spec.max_total_tokens) - shared) + (spec.width - 1) + pages;
  if (need > pool_.total_blocks) {
    ++stats_.refused;
    return absl::InvalidArgumentError(absl::StrCat("request needs up to ", need,
                                                   " KV blocks; the pool has ", pool_.total_blocks,
                                                   " (shorten the prompt or max_tokens)"));
  }
  Tenant& t = TenantFor(spec.tenant);
  if (num_waiting_ >= config_.max_waiting) {
    ++stats_.refused;
    return absl::ResourceExhaustedError(absl::StrCat("server overloaded: ", num_waiting_,
                                                     " requests are already waiting (limit ",
                                                     config_.max_waiting, ")"));
  }
  if (static_cast<int32_t>(t.queue.size()) >= t.config.max_waiting) {
    ++stats_.refused;
    return absl::ResourceExhaustedError(absl::StrCat("tenant '", spec.tenant, "' has ",
                                                     t.queue.size(), " requests waiting (limit ",
                                                     t.config.max_waiting, ")"));
  }
  // VTC: a tenant that comes back after being idle starts at the least-served active tenant's
  // counter, so idleness is not banked as credit.
  if (t.queue.empty() && t.running == 0) {
    double lowest = std::numeric_limits<double>::infinity();
    for (const auto& [name, other] : tenants_)
      if (&other != &t && (!other.queue.empty() || other.running > 0))
        lowest = std::min(lowest, other.counter);
    if (std::isfinite(lowest)) t.counter = std::max(t.counter, lowest);
  }
  const SeqId id = next_id_++;
  Seq& s = seqs_[id];
  s.id = id;
  s.spec = spec;
  s.arrival = clock_->Now();
  s.total_tokens = spec.prompt_len;
  s.reported = spec.width > 1 || config_.engine_reports_blocks;
  if (s.reported)  // the prompt once, and a copy of its last block for each fork after it
    s.admit_need = BlocksFor(spec.prompt_len) + (spec.width - 1);
  Enqueue(s);
  return id;
}

void Scheduler::Enqueue(Seq& s) {
  s.state = State::kWaiting;
  std::deque<SeqId>& q = TenantFor(s.spec.tenant).queue;
  // Ordered by priority (higher first), then arrival; scan from the back (new arrivals go last).
  auto before = [&](SeqId other) {
    const Seq& o = seqs_.at(other);
    return o.spec.priority > s.spec.priority ||
           (o.spec.priority == s.spec.priority &&
            (o.arrival < s.arrival || (o.arrival == s.arrival && o.id < s.id)));
  };
  auto it = q.end();
  while (it != q.begin() && !before(*(it - 1))) --it;
  q.insert(it, s.id);
  ++num_waiting_;
}

void Scheduler::Cancel(SeqId id) {
  auto it = seqs_.find(id);
  if (it != seqs_.end()) it->second.cancelled = true;
}

std::optional<TimeUs> Scheduler::NextDeadline() const {
  std::optional<TimeUs> next;
  for (const auto& [id, s] : seqs_)
    if (s.spec.deadline && (!next || *s.spec.deadline < *next)) next = s.spec.deadline;
  return next;
}

double Scheduler::ServiceOf(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.service;
}

double Scheduler::CounterOf(const std::string& tenant) const {
  auto it = tenants_.find(tenant);
  return it == tenants_.end() ? 0 : it->second.counter;
}

void Scheduler::Charge(Seq& s, double tokens, double weight) {
  Tenant& t = TenantFor(s.spec.tenant);
  t.service += tokens * weight;
  t.counter += tokens * weight / t.config.weight;
}

void Scheduler::Free(Seq& s) {
  blocks_used_ -= s.kv_blocks + s.pages;
  s.kv_blocks = 0;
  s.pages = 0;
  Tenant& t = TenantFor(s.spec.tenant);
  if (s.state == State::kRunning) {
    running_.erase(std::find(running_.begin(), running_.end(), s.id));
    --t.running;
    CountRunning(s, -1);
  } else {
    t.queue.erase(std::find(t.queue.begin(), t.queue.end(), s.id));
    --num_waiting_;
  }
}

void Scheduler::Remove(SeqId id) { seqs_.erase(id); }

void Scheduler::EndExpiredAndCancelled(StepPlan* plan) {
  const TimeUs now = clock_->Now();
  std::vector<SeqId> ending;
  for (auto& [id, s] : seqs_) {
    if (s.cancelled || (s.spec.deadline && now >= *s.spec.deadline)) ending.push_back(id);
  }
  for (SeqId id : ending) {
    Seq& s = seqs_.at(id);
    const EndReason reason = s.cancelled ? EndReason::kCancelled : EndReason::kExpired;
    ++(reason == EndReason::kCancelled ? stats_.cancelled : stats_.expired);
    plan->ended.push_back({id, reason});
    Free(s);
    Remove(id);
  }
}

void Scheduler::Preempt(Seq& s, StepPlan* plan) {
  blocks_used_ -= s.kv_blocks;  // PARA pages stay: the vectors belong to the original prompt
  s.kv_blocks = 0;
  s.step_need = 0;
  running_.erase(std::find(running_.begin(), running_.end(), s.id));
  Tenant& t = TenantFor(s.spec.tenant);
  --t.running;
  CountRunning(s, -1);
  Enqueue(s);  // keeps its arrival: it goes back ahead of later requests of its tenant
  plan->preempted.push_back(s.id);
  ++stats_.preemptions;
}

bool Scheduler::Readmittable(const Seq& s) const {
  const int32_t pages = s.spec.adapter_kind == AdapterKind::kPara ? pool_.para_pages : 0;
  return (s.reported ? s.admit_need : BlocksFor(s.total_tokens)) + pages <= pool_.total_blocks;
}

void Scheduler::ReserveDecode(StepPlan* plan) {
  auto need = [&](const Seq& s) {
    return s.reported ? s.step_need : BlocksFor(s.total_tokens) - s.kv_blocks;
  };
  int64_t total_need = 0;
  for (SeqId id : running_) total_need += need(seqs_.at(id));
  while (total_need > free_blocks() && !running_.empty()) {
    // Victim: one that can be readmitted later if any (a group recomputes its sequences without
    // sharing their prompt blocks), then the lowest priority, then the most recently admitted.
    SeqId victim = running_.front();
    for (SeqId id : running_) {
      const Seq& a = seqs_.at(id);
      const Seq& v = seqs_.at(victim);
      const bool ra = Readmittable(a), rv = Readmittable(v);
      if (ra != rv) {
        if (ra) victim = id;
        continue;
      }
      if (a.spec.priority < v.spec.priority ||
          (a.spec.priority == v.spec.priority && a.admit_order > v.admit_order))
        victim = id;
    }
    Seq& v = seqs_.at(victim);
    total_need -= need(v);
    Preempt(v, plan);
  }
  for (SeqId id : running_) {
    Seq& s = seqs_.at(id);
    const int32_t n = need(s);
    s.kv_blocks += n;  // a group's reservation; its report after the step makes it exact
    blocks_used_ += n;
    s.step_need = 0;
    plan->decode.push_back(id);
  }
  plan->num_tokens = static_cast<int64_t>(plan->decode.size());
}

void Scheduler::CountRunning(const Seq& s, int delta) {
  if (s.spec.adapter_kind == AdapterKind::kNone) return;
  auto bump = [&](std::map<uint64_t, int32_t>& m) {
    if ((m[s.spec.adapter_id] += delta) == 0) m.erase(s.spec.adapter_id);
  };
  bump(running_adapters_);
  if (s.spec.adapter_kind == AdapterKind::kLora) bump(running_loras_);
}

Scheduler::Blocked Scheduler::Admissible(const Seq& s, const Tenant& t) const {
  if (t.config.max_inflight > 0 && t.running >= t.config.max_inflight) return Blocked::kTenant;
  if (s.spec.adapter_kind != AdapterKind::kNone && residency_ != nullptr &&
      !residency_->IsResident(s.spec.adapter_kind, s.spec.adapter_id)) {
    residency_->RequestResidency(s.spec.adapter_kind, s.spec.adapter_id,
                                 [this](uint64_t id) { return running_adapters_.count(id) > 0; });
    if (!residency_->IsResident(s.spec.adapter_kind, s.spec.adapter_id)) return Blocked::kResidency;
  }
  if (s.spec.adapter_kind == AdapterKind::kLora && config_.max_loras > 0 &&
      !running_loras_.count(s.spec.adapter_id) &&
      static_cast<int32_t>(running_loras_.size()) >= config_.max_loras)
    return Blocked::kResidency;  // a LoRA slot is residency too: it frees as others finish
  return Blocked::kNo;
}

std::optional<std::string> Scheduler::PickTenant(const std::map<std::string, bool>& blocked) {
  // The least-served tenant (lowest weighted counter); on a tie, the one with fewer sequences
  // running, so a tenant lifted to the others' level on arrival goes first.
  const Tenant* best = nullptr;
  std::optional<std::string> name;
  for (const auto& [n, t] : tenants_) {
    if (t.queue.empty() || blocked.count(n)) continue;
    if (best == nullptr || t.counter < best->counter ||
        (t.counter == best->counter && t.running < best->running)) {
      best = &t;
      name = n;
    }
  }
  return name;
}

void Scheduler::Admit(StepPlan* plan) {
  const int32_t watermark =
      static_cast<int32_t>(std::ceil(pool_.total_blocks * config_.block_watermark));
  std::map<std::string, bool> blocked;
  // Set when a tenant ahead in fairness order waits for its adapter to become resident (or for a
  // LoRA slot): from then on this step admits no adapter that is not already running, so no
  // later adapter takes the room it waits for. Once it has waited adapter_drain_after_us, `drain`
  // also stops the running adapters' new requests, so they drain and make room (otherwise a busy
  // tenant's adapter could keep it out for ever). Base-model requests always go.
  bool residency_wait = false;
  bool drain = false;
  while (static_cast<int32_t>(running_.size()) < config_.max_num_seqs) {
    std::optional<std::string> name = PickTenant(blocked);
    if (!name) break;
    Tenant& t = tenants_.at(*name);
    Seq& s = seqs_.at(t.queue.front());
    const Blocked why = Admissible(s, t);
    if (why == Blocked::kResidency) {
      residency_wait = true;
      drain = drain || clock_->Now() - s.arrival >= config_.adapter_drain_after_us;
    }
    const bool adapter = s.spec.adapter_kind != AdapterKind::kNone;
    if (why != Blocked::kNo ||
        (adapter && (drain || (residency_wait && !running_adapters_.count(s.spec.adapter_id))))) {
      blocked[*name] = true;  // FCFS within the tenant; other tenants go on
      continue;
    }
    if (!Readmittable(s)) {  // preempted, and it would wait for ever: end it, let others go on
      if (std::find(plan->preempted.begin(), plan->preempted.end(), s.id) !=
          plan->preempted.end()) {  // preempted by this very plan: it ends at the next one
        blocked[*name] = true;
        continue;
      }
      ++stats_.refused;
      plan->ended.push_back({s.id, EndReason::kUnfit});
      const SeqId id = s.id;
      Free(s);
      Remove(id);
      continue;
    }
    const int64_t n = s.total_tokens;
    if (plan->num_tokens + n > config_.max_batched_tokens && !plan->prefill.empty()) break;
    const int32_t pages =
        s.spec.adapter_kind == AdapterKind::kPara && s.pages == 0 ? pool_.para_pages : 0;
    const int32_t kv = s.reported ? s.admit_need : BlocksFor(n);
    const int32_t need = kv + pages;
    if (need > free_blocks() - (running_.empty() ? 0 : watermark)) break;  // wait for blocks
    t.queue.pop_front();
    --num_waiting_;
    s.state = State::kRunning;
    s.kv_blocks = kv;
    s.pages += pages;
    blocks_used_ += need;
    s.admit_order = next_admit_++;
    running_.push_back(s.id);
    ++t.running;
    CountRunning(s, +1);
    plan->prefill.push_back(s.id);
    plan->num_tokens += n;
    ++stats_.admitted;
    if (!s.charged_prompt) {
      Charge(s, s.spec.prompt_len, config_.vtc_input_weight);
      s.charged_prompt = true;
    }
  }
}

StepPlan Scheduler::Schedule() {
  StepPlan plan;
  EndExpiredAndCancelled(&plan);
  ReserveDecode(&plan);
  Admit(&plan);
  return plan;
}

void Scheduler::CompletedGroup(SeqId id, const GroupProgress& p) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Seq& s = it->second;
  if (p.generated > s.charged_output) {
    Charge(s, static_cast<double>(p.generated - s.charged_output), config_.vtc_output_weight);
    s.charged_output = p.generated;
  }
  s.total_tokens = p.total_tokens;
  if (p.finished) {
    ++stats_.finished;
    Free(s);
    Remove(id);
    return;
  }
  // The engine's counts replace the reservation.
  blocks_used_ += (p.kv_blocks + p.pages) - (s.kv_blocks + s.pages);
  s.kv_blocks = p.kv_blocks;
  s.pages = p.pages;
  s.step_need = p.step_need;
  s.admit_need = p.readmit_need;
}

void Scheduler::SyncPinned(int32_t pinned) {
  blocks_used_ += pinned - pinned_;
  pinned_ = pinned;
}

void Scheduler::Completed(SeqId id, int32_t total_tokens, bool finished) {
  auto it = seqs_.find(id);
  if (it == seqs_.end()) return;
  Seq& s = it->second;
  if (total_tokens > s.total_tokens)
    Charge(s, total_tokens - s.total_tokens, config_.vtc_output_weight);
  s.total_tokens = total_tokens;
  if (finished) {
    ++stats_.finished;
    Free(s);
    Remove(id);
  }
}

}  // namespace para::sched
