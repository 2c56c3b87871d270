// Deterministic simulations of the scheduler against a fake engine and a manual clock. The fake
// engine allocates from a real BlockPool exactly what the plans say, so a plan that does not fit,
// a leaked block or a mirror that drifts from the pool fails the test; its "model" makes the next
// token a hash of the whole history, so a preempted and recomputed sequence must continue exactly
// as it would have.
#include "scheduler/scheduler.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <set>

#include "engine/kv_cache.h"

namespace para::sched {
namespace {

using ::testing::HasSubstr;

struct FakeSeq {
  std::vector<int32_t> blocks, pages;
  std::vector<int32_t> tokens;
  int32_t prompt_len = 0, max_total = 0;
  bool para = false;
};

struct Outcome {
  std::vector<int32_t> tokens;
  std::optional<EndReason> ended;
  int64_t added_step = 0, admitted_step = -1, done_step = -1;
};

class FakeEngine {
 public:
  FakeEngine(PoolShape shape) : shape_(shape), pool_(shape.total_blocks) {}

  void Add(SeqId id, const SeqSpec& spec, std::vector<int32_t> prompt) {
    FakeSeq& s = seqs_[id];
    s.tokens = std::move(prompt);
    s.prompt_len = spec.prompt_len;
    s.max_total = spec.max_total_tokens;
    s.para = spec.adapter_kind == AdapterKind::kPara;
  }

  // Runs a plan like the real engine loop would; fills `outcomes` for ended/finished sequences.
  void Execute(Scheduler& sched, const StepPlan& plan, int64_t step,
               std::map<SeqId, Outcome>* outcomes) {
    for (const auto& [id, reason] : plan.ended) {
      Release(id, true);
      (*outcomes)[id].ended = reason;
      (*outcomes)[id].done_step = step;
      seqs_.erase(id);
    }
    for (SeqId id : plan.preempted) Release(id, false);
    auto run = [&](SeqId id) {
      FakeSeq& s = seqs_.at(id);
      const int32_t need =
          (static_cast<int32_t>(s.tokens.size()) + shape_.block_size - 1) / shape_.block_size;
      ASSERT_TRUE(pool_.Allocate(need - static_cast<int32_t>(s.blocks.size()), &s.blocks).ok())
          << "plan does not fit the pool (seq " << id << ")";
      if (s.para && s.pages.empty()) ASSERT_TRUE(pool_.Allocate(shape_.para_pages, &s.pages).ok());
      if ((*outcomes)[id].admitted_step < 0) (*outcomes)[id].admitted_step = step;
      s.tokens.push_back(NextToken(s.tokens));
    };
    for (SeqId id : plan.prefill) run(id);
    for (SeqId id : plan.decode) run(id);
    std::vector<SeqId> ids(plan.prefill);
    ids.insert(ids.end(), plan.decode.begin(), plan.decode.end());
    for (SeqId id : ids) {
      FakeSeq& s = seqs_.at(id);
      const bool finished =
          static_cast<int32_t>(s.tokens.size()) >= s.max_total || s.tokens.back() % 53 == 0;
      sched.Completed(id, static_cast<int32_t>(s.tokens.size()), finished);
      if (finished) {
        (*outcomes)[id].tokens.assign(s.tokens.begin() + s.prompt_len, s.tokens.end());
        (*outcomes)[id].done_step = step;
        Release(id, true);
        seqs_.erase(id);
      }
    }
  }

  const BlockPool& pool() const { return pool_; }
  static int32_t NextToken(const std::vector<int32_t>& h) {
    uint64_t x = 1469598103934665603ull;
    for (int32_t t : h) x = (x ^ static_cast<uint64_t>(t)) * 1099511628211ull;
    return static_cast<int32_t>(x % 1000) + 1;
  }

 private:
  void Release(SeqId id, bool all) {
    FakeSeq& s = seqs_.at(id);
    pool_.Release(s.blocks);
    s.blocks.clear();
    if (all) {
      pool_.Release(s.pages);
      s.pages.clear();
    }
  }

  PoolShape shape_;
  BlockPool pool_;
  std::map<SeqId, FakeSeq> seqs_;
};

struct Req {
  std::string tenant;
  int32_t prompt_len, max_tokens;
  int32_t priority = 0;
  AdapterKind kind = AdapterKind::kNone;
  uint64_t adapter = 0;
  std::optional<TimeUs> deadline;
  int64_t arrive_step = 0;
  int64_t cancel_step = -1;
};

std::vector<int32_t> PromptOf(size_t i, int32_t len) {
  std::vector<int32_t> p;
  for (int32_t k = 0; k < len; ++k) p.push_back(static_cast<int32_t>((i * 131 + k * 7) % 1000) + 1);
  return p;
}

// Drives a scenario step by step with invariant checks; returns per-request outcomes.
class Sim {
 public:
  Sim(SchedulerConfig config, PoolShape shape, AdapterResidency* residency = nullptr)
      : config_(config), shape_(shape), sched_(config, shape, &clock_, residency), engine_(shape) {}

  std::vector<Outcome> Run(const std::vector<Req>& reqs, int64_t max_steps = 100000) {
    std::map<SeqId, size_t> index;
    std::map<size_t, SeqId> ids;
    std::map<SeqId, Outcome> outcomes;
    size_t next = 0;
    std::vector<Outcome> out(reqs.size());
    std::vector<size_t> order(reqs.size());
    for (size_t i = 0; i < reqs.size(); ++i) order[i] = i;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return reqs[a].arrive_step < reqs[b].arrive_step; });
    for (int64_t step = 0; step < max_steps; ++step) {
      while (next < order.size() && reqs[order[next]].arrive_step <= step) {
        const size_t i = order[next++];
        const Req& r = reqs[i];
        SeqSpec spec{r.tenant,   r.priority, r.prompt_len, r.prompt_len + r.max_tokens,
                     r.deadline, r.kind,     r.adapter};
        absl::StatusOr<SeqId> id = sched_.Add(spec);
        if (!id.ok()) {
          refusals.push_back(std::string(id.status().message()));
          out[i].ended = std::nullopt;
          out[i].done_step = step;
          continue;
        }
        index[*id] = i;
        ids[i] = *id;
        engine_.Add(*id, spec, PromptOf(i, r.prompt_len));
        outcomes[*id].added_step = step;
      }
      for (const auto& [i, id] : ids)
        if (reqs[i].cancel_step == step) sched_.Cancel(id);
      StepPlan plan = sched_.Schedule();
      CheckPlan(plan);
      engine_.Execute(sched_, plan, step, &outcomes);
      EXPECT_EQ(sched_.blocks_used(), engine_.pool().num_used())
          << "scheduler's block mirror drifted at step " << step;
      preemptions += static_cast<int64_t>(plan.preempted.size());
      steps = step + 1;
      clock_.Advance(10'000);
      if (next == order.size() && !sched_.HasWork()) break;
    }
    for (const auto& [id, o] : outcomes) out[index.at(id)] = o;
    return out;
  }

  void CheckPlan(const StepPlan& plan) {
    const int64_t seqs = static_cast<int64_t>(plan.prefill.size() + plan.decode.size());
    EXPECT_LE(seqs, config_.max_num_seqs);
    if (plan.prefill.size() > 1 ||
        plan.num_tokens - static_cast<int64_t>(plan.decode.size()) <= config_.max_batched_tokens)
      EXPECT_LE(plan.num_tokens,
                config_.max_batched_tokens + static_cast<int64_t>(config_.max_num_seqs));
    std::set<SeqId> unique(plan.prefill.begin(), plan.prefill.end());
    unique.insert(plan.decode.begin(), plan.decode.end());
    EXPECT_EQ(static_cast<int64_t>(unique.size()), seqs) << "a sequence planned twice";
    max_step_tokens = std::max(max_step_tokens, plan.num_tokens);
  }

  ManualClock clock_;
  SchedulerConfig config_;
  PoolShape shape_;
  Scheduler sched_;
  FakeEngine engine_;
  std::vector<std::string> refusals;
  int64_t preemptions = 0, steps = 0, max_step_tokens = 0;
};

// The tokens a request generates alone with a pool that never preempts.
std::vector<int32_t> SoloTokens(size_t i, const Req& r) {
  std::vector<int32_t> t = PromptOf(i, r.prompt_len);
  const size_t prompt = t.size();
  do {
    t.push_back(FakeEngine::NextToken(t));
  } while (static_cast<int32_t>(t.size()) < r.prompt_len + r.max_tokens && t.back() % 53 != 0);
  return std::vector<int32_t>(t.begin() + prompt, t.end());
}

TEST(SchedulerSimTest,
     RandomWorkloadUnderPressureEndsEveryRequestLeaksNothingAndPreemptionIsExact) {
  std::mt19937_64 rng(5);
  std::vector<Req> reqs;
  for (int i = 0; i < 300; ++i) {
    Req r{"t" + std::to_string(rng() % 6), 1 + static_cast<int32_t>(rng() % 60),
          1 + static_cast<int32_t>(rng() % 40)};
    r.priority = static_cast<int32_t>(rng() % 3);
    r.arrive_step = static_cast<int64_t>(rng() % 200);
    if (rng() % 4 == 0) r.kind = AdapterKind::kPara;
    if (rng() % 17 == 0) r.cancel_step = r.arrive_step + static_cast<int64_t>(rng() % 30);
    if (rng() % 19 == 0) r.deadline = (r.arrive_step + static_cast<int64_t>(rng() % 40)) * 10'000;
    reqs.push_back(r);
  }
  SchedulerConfig c;
  c.max_num_seqs = 24;
  c.max_batched_tokens = 128;
  Sim sim(c, PoolShape{48, 4, 2});
  auto out = sim.Run(reqs);
  std::printf("%ld steps, %ld preemptions\n", sim.steps, sim.preemptions);
  EXPECT_GT(sim.preemptions, 10) << "the pool is meant to be small enough to preempt";
  EXPECT_EQ(sim.engine_.pool().num_free(), 48) << "blocks leaked";
  EXPECT_FALSE(sim.sched_.HasWork());
  int finished = 0, cancelled = 0, expired = 0;
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_GE(out[i].done_step, 0) << "request " << i << " never ended";
    if (out[i].ended) {
      ++(*out[i].ended == EndReason::kCancelled ? cancelled : expired);
      continue;
    }
    ++finished;
    EXPECT_EQ(out[i].tokens, SoloTokens(i, reqs[i])) << "request " << i;
  }
  EXPECT_GT(cancelled, 0);
  EXPECT_GT(expired, 0);
  EXPECT_GT(finished, 200);
}

TEST(SchedulerSimTest, TokenBudgetAndLongPromptRunsAlone) {
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.max_batched_tokens = 32;
  Sim sim(c, PoolShape{200, 8, 0});
  std::vector<Req> reqs = {{"a", 20, 5}, {"a", 20, 5}, {"b", 100, 3}, {"b", 10, 5}};
  auto out = sim.Run(reqs);
  for (const auto& o : out) EXPECT_FALSE(o.ended.has_value());
  // Two 20-token prompts cannot share a 32-token step; the 100-token prompt runs as its step's
  // only prefill.
  EXPECT_NE(out[0].admitted_step, out[1].admitted_step);
  EXPECT_LE(sim.max_step_tokens, 100 + 8);
}

TEST(SchedulerSimTest, QueueBoundsRefuseWithReasons) {
  SchedulerConfig c;
  c.max_waiting = 6;
  c.max_waiting_per_tenant = 4;
  c.max_num_seqs = 1;
  Sim sim(c, PoolShape{64, 16, 0});
  std::vector<Req> reqs;
  for (int i = 0; i < 5; ++i) reqs.push_back({"a", 4, 50});
  for (int i = 0; i < 3; ++i) reqs.push_back({"b", 4, 50});
  reqs.push_back({"c", 2000, 10});  // can never fit 64 blocks of 16
  sim.Run(reqs);
  ASSERT_EQ(sim.refusals.size(), 3u);
  EXPECT_THAT(sim.refusals[0], HasSubstr("tenant 'a' has 4 requests waiting (limit 4)"));
  EXPECT_THAT(sim.refusals[1], HasSubstr("server overloaded: 6 requests are already waiting"));
  EXPECT_THAT(sim.refusals[2], HasSubstr("the pool has 64"));
}

TEST(SchedulerSimTest, FloodingTenantCannotStarveAnother) {
  // Tenant A submits 1000 requests at once; B submits one every 7 steps. Every request asks for
  // 20 tokens, 8 run at a time. Bound: a B request waits at most for the next running request to
  // finish, i.e. at most max_tokens (20) steps.
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.max_batched_tokens = 4096;
  std::vector<Req> reqs;
  for (int i = 0; i < 1000; ++i) reqs.push_back({"A", 8, 20});
  for (int i = 0; i < 40; ++i) {
    Req r{"B", 8, 20};
    r.arrive_step = 5 + 7 * i;
    reqs.push_back(r);
  }
  Sim sim(c, PoolShape{4096, 16, 0});
  auto out = sim.Run(reqs, 3000);
  int64_t worst_b = 0, a_done_early = 0;
  for (size_t i = 1000; i < reqs.size(); ++i)
    worst_b = std::max(worst_b, out[i].admitted_step - reqs[i].arrive_step);
  for (size_t i = 0; i < 1000; ++i) a_done_early += out[i].done_step >= 0 && out[i].done_step < 300;
  std::printf("B's worst queueing delay: %ld steps; A requests done by step 300: %ld\n", worst_b,
              a_done_early);
  EXPECT_LE(worst_b, 20) << "B's worst queueing delay in steps";
  EXPECT_GT(a_done_early, 50) << "A keeps being served meanwhile";
}

TEST(SchedulerSimTest, WeightsTwoToOneGiveTwoToOneService) {
  SchedulerConfig c;
  c.max_num_seqs = 6;
  c.tenants["A"].weight = 2;
  c.tenants["B"].weight = 1;
  std::vector<Req> reqs;
  for (int i = 0; i < 600; ++i) reqs.push_back({i % 2 ? "A" : "B", 16, 16});
  Sim sim(c, PoolShape{4096, 16, 0});
  sim.Run(reqs, 400);  // both still backlogged after 400 steps
  ASSERT_TRUE(sim.sched_.HasWork());
  const double ratio = sim.sched_.ServiceOf("A") / sim.sched_.ServiceOf("B");
  std::printf("service A:B = %.4f\n", ratio);
  EXPECT_NEAR(ratio, 2.0, 0.1) << "token service A:B";
}

TEST(SchedulerSimTest, PerTenantInflightLimitAndPriorities) {
  SchedulerConfig c;
  c.max_num_seqs = 10;
  c.tenants["A"].max_inflight = 2;
  Sim sim(c, PoolShape{4096, 16, 0});
  std::vector<Req> reqs;
  for (int i = 0; i < 6; ++i) reqs.push_back({"A", 4, 10});
  reqs[5].priority = 5;  // arrives last, runs among the first
  auto out = sim.Run(reqs);
  EXPECT_EQ(out[5].admitted_step, 0);
  int at_zero = 0;
  for (const auto& o : out) at_zero += o.admitted_step == 0;
  EXPECT_EQ(at_zero, 2) << "only two of tenant A's requests may be in flight";
}

TEST(SchedulerSimTest, PreemptionPicksLowestPriorityThenNewest) {
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.block_watermark = 0;
  // 3 sequences of 4-token prompts in a 6-block pool of 4: they fill it as they grow.
  std::vector<Req> reqs = {{"a", 4, 12}, {"a", 4, 12}, {"a", 4, 12}};
  reqs[0].priority = 1;
  Sim sim(c, PoolShape{6, 4, 0});
  auto out = sim.Run(reqs);
  EXPECT_GT(sim.preemptions, 0);
  // The high-priority request is never a victim, so it finishes first.
  EXPECT_LT(out[0].done_step, out[1].done_step);
  EXPECT_LT(out[0].done_step, out[2].done_step);
  for (size_t i = 0; i < reqs.size(); ++i) EXPECT_EQ(out[i].tokens, SoloTokens(i, reqs[i]));
}

// A group's sequences share their prompt blocks while they run, but a recompute after preemption
// gives each its own: a preempted group whose recompute needs more than the whole pool ends with
// kUnfit at the next plan instead of waiting for ever at the head of the queue (which stalled
// every tenant), and a group that can be readmitted is preferred as the victim.
TEST(SchedulerSimTest, APreemptedGroupThatCanNeverBeReadmittedEndsInsteadOfWaiting) {
  SchedulerConfig c;
  c.max_num_seqs = 8;
  c.block_watermark = 0;
  ManualClock clock;
  Scheduler s(c, PoolShape{10, 16, 0}, &clock);
  // 3 beams over a 40-token prompt (2 shared blocks), 8 new tokens: 2 + 3 * 1 + 2 fork copies = 7.
  SeqSpec g{"a", 0, 40, 48};
  g.width = 3;
  SeqSpec h = g;
  h.tenant = "b";
  SeqSpec too_big = g;
  too_big.max_total_tokens = 80;  // 2 + 3 * 3 + 2 = 13 blocks: refused at once, naming them
  auto refused = s.Add(too_big);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr("13 KV blocks"));
  const SeqId a = *s.Add(g), b = *s.Add(h);
  StepPlan first = s.Schedule();  // each admitted with its prompt (3) and 2 fork copies: 10 of 10
  ASSERT_EQ(first.prefill.size(), 2u);
  // After the step each holds 5 blocks, needs 2 more next step, and a recompute would need
  // 3 * 3 + 2 = 11 > 10: neither can ever be readmitted.
  const GroupProgress p{41, 3, false, 5, 0, 2, 11};
  s.CompletedGroup(a, p);
  s.CompletedGroup(b, p);
  StepPlan second = s.Schedule();
  ASSERT_EQ(second.preempted, std::vector<SeqId>{b}) << "the most recently admitted";
  EXPECT_TRUE(second.ended.empty()) << "a sequence preempted by a plan ends at the next one";
  EXPECT_EQ(second.decode, std::vector<SeqId>{a});
  StepPlan third = s.Schedule();
  ASSERT_EQ(third.ended.size(), 1u);
  EXPECT_EQ(third.ended[0], std::make_pair(b, EndReason::kUnfit));
  EXPECT_EQ(third.decode, std::vector<SeqId>{a}) << "the other group goes on";
}

TEST(SchedulerSimTest, CancelFreesBlocksAtTheNextStep) {
  SchedulerConfig c;
  Sim sim(c, PoolShape{100, 4, 0});
  std::vector<Req> reqs = {{"a", 30, 50}, {"b", 4, 5}};
  reqs[0].cancel_step = 3;
  auto out = sim.Run(reqs);
  ASSERT_TRUE(out[0].ended.has_value());
  EXPECT_EQ(*out[0].ended, EndReason::kCancelled);
  EXPECT_EQ(out[0].done_step, 3);
  EXPECT_EQ(sim.engine_.pool().num_free(), 100);
}

TEST(SchedulerSimTest, DeadlinesExpireQueuedAndRunningRequests) {
  SchedulerConfig c;
  c.max_num_seqs = 1;
  Sim sim(c, PoolShape{100, 4, 0});
  std::vector<Req> reqs = {{"a", 4, 30}, {"a", 4, 30}};
  reqs[0].deadline = 50'000;  // expires while running (steps are 10 ms)
  reqs[1].deadline = 20'000;  // expires while queued behind it
  auto out = sim.Run(reqs);
  ASSERT_TRUE(out[0].ended && out[1].ended);
  EXPECT_EQ(*out[0].ended, EndReason::kExpired);
  EXPECT_EQ(out[0].done_step, 5);
  EXPECT_EQ(*out[1].ended, EndReason::kExpired);
  EXPECT_EQ(out[1].admitted_step, -1);
}

TEST(SchedulerSimTest, LoraSlotsLimitDistinctAdaptersWithoutBlockingOthers) {
  SchedulerConfig c;
  c.max_num_seqs = 16;
  c.max_loras = 2;
  Sim sim(c, PoolShape{4096, 16, 0});
  std::vector<Req> reqs;
  for (int i = 0; i < 9; ++i) {
    Req r{"t" + std::to_string(i % 3), 4, 10};
    r.kind = AdapterKind::kLora;
    r.adapter = 100 + i % 3;
    reqs.push_back(r);
  }
  reqs.push_back({"plain", 4, 10});
  auto out = sim.Run(reqs);
  std::set<uint64_t> at_zero;
  for (size_t i = 0; i < 9; ++i)
    if (out[i].admitted_step == 0) at_zero.insert(reqs[i].adapter);
  EXPECT_EQ(at_zero.size(), 2u);
  EXPECT_EQ(out[9].admitted_step, 0) << "the plain request is not held up";
  for (const auto& o : out) EXPECT_GE(o.done_step, 0);
}

class SlowResidency : public AdapterResidency {
 public:
  bool IsResident(AdapterKind, uint64_t id) override { return resident.count(id) > 0; }
  void RequestResidency(AdapterKind, uint64_t id, const std::function<bool(uint64_t)>&) override {
    requested.insert(id);
  }
  std::set<uint64_t> resident, requested;
};

TEST(SchedulerSimTest, RequestsWaitForTheirAdapterWithoutBlockingOtherTenants) {
  SlowResidency residency;
  SchedulerConfig c;
  Sim sim(c, PoolShape{4096, 16, 0}, &residency);
  std::vector<Req> reqs = {{"a", 4, 5}, {"b", 4, 5}};
  reqs[0].kind = AdapterKind::kPara;
  reqs[0].adapter = 7;
  // The adapter "arrives" at step 3: simulate with a second run phase.
  StepPlan plan;
  auto id_a = sim.sched_.Add({"a", 0, 4, 9, std::nullopt, AdapterKind::kPara, 7});
  auto id_b = sim.sched_.Add({"b", 0, 4, 9, std::nullopt, AdapterKind::kNone, 0});
  ASSERT_TRUE(id_a.ok() && id_b.ok());
  plan = sim.sched_.Schedule();
  EXPECT_EQ(plan.prefill, std::vector<SeqId>{*id_b});
  EXPECT_TRUE(residency.requested.count(7));
  residency.resident.insert(7);
  sim.sched_.Completed(*id_b, 5, false);
  plan = sim.sched_.Schedule();
  EXPECT_EQ(plan.prefill, std::vector<SeqId>{*id_a});
}

// A device tier with room for one adapter: it swaps only when the adapter there is not running.
class OneSlotResidency : public AdapterResidency {
 public:
  bool IsResident(AdapterKind, uint64_t id) override { return slot == id; }
  void RequestResidency(AdapterKind, uint64_t id,
                        const std::function<bool(uint64_t)>& is_running) override {
    if (slot == 0 || !is_running(slot)) slot = id;
  }
  uint64_t slot = 0;
};

TEST(SchedulerSimTest, AnAdapterWaitingForRoomIsNotStarvedByABusyOne) {
  OneSlotResidency residency;
  SchedulerConfig c;
  Sim sim(c, PoolShape{4096, 16, 0}, &residency);
  // Tenant "hot" always has requests for adapter 1 waiting (a new one every step, of varied
  // lengths, so some always run); "cold" asks for adapter 2 at step 5.
  std::vector<Req> reqs;
  for (int i = 0; i < 200; ++i) {
    Req r{"hot", 4, 3 + i % 7};
    r.kind = AdapterKind::kPara;
    r.adapter = 1;
    r.arrive_step = i;
    reqs.push_back(r);
  }
  Req cold{"cold", 4, 5};
  cold.kind = AdapterKind::kPara;
  cold.adapter = 2;
  cold.arrive_step = 5;
  reqs.push_back(cold);
  Req plain{"plain", 4, 5};
  plain.arrive_step = 6;
  reqs.push_back(plain);
  auto out = sim.Run(reqs);
  const Outcome& o = out[200];
  ASSERT_GE(o.admitted_step, 0) << "the cold adapter's request never ran";
  // Clock: 10 ms per step, so the drain starts 20 steps after it arrived; then the running hot
  // requests (at most 9 tokens) finish and it goes in.
  EXPECT_GE(o.admitted_step, 5 + 20) << "short waits do not drain the batch";
  EXPECT_LE(o.admitted_step, 5 + 20 + 12) << "a long wait drains the busy adapter";
  EXPECT_LE(out[201].admitted_step, 7) << "base-model requests are not held up by the wait";
  for (const auto& r : out) EXPECT_GE(r.done_step, 0);
}

}  // namespace
}  // namespace para::sched
