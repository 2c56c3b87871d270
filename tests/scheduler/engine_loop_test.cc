// The engine loop with the real engine: under a pool small enough to force preemption, 64
// requests of 8 tenants (PARA, LoRA and base) all produce exactly their solo greedy outputs; the
// threaded loop takes submissions and cancellations from many threads, honours deadlines, stops
// cleanly, and idles without spinning.
#include "scheduler/engine_loop.h"

#include "absl/strings/str_cat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <mutex>
#include <random>
#include <thread>

#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::sched {
namespace {

GenerationRequest Greedy(int prompt_len, int max_tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GenerationRequest r;
  for (int i = 0; i < prompt_len; ++i)
    r.prompt_ids.push_back(3 + static_cast<int32_t>(rng() % 500));
  r.sampling.temperature = 0;
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  return r;
}

TEST(EngineLoopTest, PreemptedRequestsOfManyTenantsEqualTheirSoloRuns) {
  auto big = testing::MakeEngine(testing::DefaultTinyModelDir(), 2048, 4);
  auto small = testing::MakeEngine(testing::DefaultTinyModelDir(), 40, 4);  // 160 positions in all
  const std::string para_dir = testing::MakeTempDir("lp_"), lora_dir = testing::MakeTempDir("ll_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(para_dir, testing::DefaultTinyModelDir(), {}).ok());
  tools::TinyLoraOptions lo;
  lo.targets = *tools::ParseLoraTargets("all");
  ASSERT_TRUE(tools::MakeTinyLoraAdapter(lora_dir, testing::DefaultTinyModelDir(), lo).ok());
  std::mt19937_64 rng(3);
  std::vector<Submission> subs;
  for (int i = 0; i < 64; ++i) {
    Submission s;
    s.request = Greedy(2 + static_cast<int>(rng() % 20), 4 + static_cast<int>(rng() % 24), 100 + i);
    s.tenant = "tenant" + std::to_string(i % 8);
    subs.push_back(std::move(s));
  }
  // Adapters are per engine (they were validated against it); attach each engine's own copies.
  auto with_adapters = [&](Engine& e, std::vector<Submission> s) {
    auto para = *e.LoadParaAdapter(para_dir);
    auto lora = *e.LoadLoraAdapter(lora_dir);
    for (size_t i = 0; i < s.size(); ++i) {
      if (i % 4 == 1) s[i].request.para = para;
      if (i % 4 == 2) s[i].request.lora = lora;
    }
    return s;
  };
  SchedulerConfig config;
  config.max_num_seqs = 16;
  config.max_batched_tokens = 64;
  std::vector<std::vector<int32_t>> solo;
  for (auto& s : with_adapters(*big, subs)) {
    auto r = RunOffline(big.get(), {s}, config);
    ASSERT_TRUE(r[0].ok()) << r[0].status();
    solo.push_back(r[0]->token_ids);
  }
  SystemClock clock;
  EngineLoop loop(small.get(), config, &clock);
  std::vector<absl::StatusOr<RequestResult>> results(subs.size(), absl::UnknownError("unset"));
  struct Keep : RequestObserver {
    absl::StatusOr<RequestResult>* out;
    void OnToken(const TokenEvent&) override {}
    void OnDone(const DoneEvent& e) override {
      *out = e.status.ok() ? absl::StatusOr<RequestResult>(e.result) : e.status;
    }
  };
  auto adapted = with_adapters(*small, subs);
  for (size_t i = 0; i < adapted.size(); ++i) {
    auto keep = std::make_shared<Keep>();
    keep->out = &results[i];
    adapted[i].observer = keep;
    ASSERT_TRUE(loop.Submit(std::move(adapted[i])).ok());
  }
  loop.RunUntilIdle();
  EXPECT_GT(loop.scheduler().stats().preemptions, 0) << "the pool is meant to force preemption";
  int preempted_requests = 0;
  for (size_t i = 0; i < results.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    EXPECT_EQ(results[i]->token_ids, solo[i])
        << "request " << i << " (preempted " << results[i]->preemptions << "x)";
    preempted_requests += results[i]->preemptions > 0;
  }
  EXPECT_GT(preempted_requests, 0);
  EXPECT_EQ(small->kv_cache().pool().num_free(), small->kv_cache().pool().num_blocks());
}

// A request whose step fails (its adapter blows the activations up to NaN/infinity) ends alone
// with a precise INTERNAL error; the requests sharing its batches, and those that later reuse its
// blocks, produce exactly their solo tokens, and every block comes back.
TEST(EngineLoopTest, ARequestWhoseStepFailsEndsAloneAndHarmsNoOther) {
  auto engine = testing::MakeEngine(testing::DefaultTinyModelDir(), 256, 4);
  const std::string good_dir = testing::MakeTempDir("fg_"), bad_dir = testing::MakeTempDir("fb_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(good_dir, testing::DefaultTinyModelDir(), {}).ok());
  tools::TinyParaOptions blowup;
  blowup.seed = 7;
  blowup.strength = 1e36f;  // vectors near F32's limit: the first layer overflows
  ASSERT_TRUE(tools::MakeTinyParaAdapter(bad_dir, testing::DefaultTinyModelDir(), blowup).ok());
  auto good = *engine->LoadParaAdapter(good_dir);
  auto bad = engine->LoadParaAdapter(bad_dir);
  ASSERT_TRUE(bad.ok()) << "finite weights load: " << bad.status();
  SchedulerConfig config;
  config.max_num_seqs = 16;
  config.max_batched_tokens = 256;
  std::vector<Submission> subs;
  for (int i = 0; i < 12; ++i) {
    Submission s;
    s.request = Greedy(3 + i, 6 + i % 5, 500 + i);
    if (i % 3 == 1) s.request.para = good;
    if (i % 3 == 2) s.request.para = *bad;
    subs.push_back(std::move(s));
  }
  std::vector<absl::StatusOr<RequestResult>> solo;
  for (const auto& s : subs) solo.push_back(RunOffline(engine.get(), {s}, config)[0]);
  // Twice: the second round reuses the blocks the failed requests left.
  for (int round = 0; round < 2; ++round) {
    auto mixed = RunOffline(engine.get(), subs, config);
    for (size_t i = 0; i < subs.size(); ++i) {
      if (i % 3 == 2) {
        ASSERT_FALSE(mixed[i].ok()) << "request " << i << " with the blow-up adapter";
        EXPECT_EQ(mixed[i].status().code(), absl::StatusCode::kInternal);
        EXPECT_THAT(std::string(mixed[i].status().message()),
                    ::testing::HasSubstr("non-finite logits"));
        EXPECT_EQ(solo[i].status(), mixed[i].status()) << "the same failure when alone";
        continue;
      }
      ASSERT_TRUE(mixed[i].ok()) << i << ": " << mixed[i].status();
      ASSERT_TRUE(solo[i].ok()) << i << ": " << solo[i].status();
      EXPECT_EQ(mixed[i]->token_ids, solo[i]->token_ids) << "request " << i << ", round " << round;
    }
  }
  EXPECT_EQ(engine->kv_cache().pool().num_free(), engine->kv_cache().pool().num_blocks());
}

// Counts events; thread-safe because the loop calls it from its own thread only, and the test
// reads after Stop.
struct Counter : RequestObserver {
  std::atomic<int> tokens{0};
  std::atomic<bool> done{false};
  absl::Status status;
  FinishReason reason = FinishReason::kNone;
  void OnToken(const TokenEvent&) override { ++tokens; }
  void OnDone(const DoneEvent& e) override {
    status = e.status;
    reason = e.result.finish_reason;
    done = true;
  }
};

TEST(EngineLoopTest, ThreadedSubmissionsAndCancellationsAllEnd) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 256, 16);
  SystemClock clock;
  EngineLoop loop(e.get(), SchedulerConfig(), &clock);
  loop.Start();
  std::vector<std::shared_ptr<Counter>> observers(80);
  std::vector<std::thread> threads;
  std::mutex mu;
  std::vector<uint64_t> to_cancel;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = t; i < 80; i += 4) {
        observers[i] = std::make_shared<Counter>();
        Submission s{Greedy(3 + i % 9, i % 5 == 0 ? 400 : 6, i), absl::StrCat("t", t), 0,
                     std::nullopt, observers[i]};
        auto h = loop.Submit(std::move(s));
        ASSERT_TRUE(h.ok());
        if (i % 5 == 0) {
          std::lock_guard<std::mutex> lock(mu);
          to_cancel.push_back(*h);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (uint64_t h : to_cancel) loop.Cancel(h);
  for (int wait = 0; wait < 3000 && loop.in_flight() > 0; ++wait)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  EXPECT_EQ(loop.in_flight(), 0);
  loop.Stop();
  for (int i = 0; i < 80; ++i) {
    ASSERT_TRUE(observers[i]->done) << i;
    EXPECT_TRUE(observers[i]->status.ok()) << observers[i]->status;
    if (i % 5 == 0) {
      EXPECT_EQ(observers[i]->reason, FinishReason::kCancelled) << i;
    } else {
      EXPECT_EQ(observers[i]->reason, FinishReason::kLength) << i;
      EXPECT_EQ(observers[i]->tokens, 6);
    }
  }
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST(EngineLoopTest, DeadlinesEndRequestsWithDeadlineExceeded) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir());
  ManualClock clock(1'000'000);
  EngineLoop loop(e.get(), SchedulerConfig(), &clock);
  auto late = std::make_shared<Counter>(), fine = std::make_shared<Counter>();
  ASSERT_TRUE(loop.Submit({Greedy(4, 50, 1), "a", 0, 1'000'000 + 30'000, late}).ok());
  ASSERT_TRUE(loop.Submit({Greedy(4, 5, 2), "a", 0, std::nullopt, fine}).ok());
  for (int i = 0; i < 100 && loop.RunOnce(); ++i) clock.Advance(10'000);
  ASSERT_TRUE(late->done && fine->done);
  EXPECT_EQ(late->status.code(), absl::StatusCode::kDeadlineExceeded);
  EXPECT_TRUE(fine->status.ok());
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST(EngineLoopTest, StopCancelsWhatIsLeftAndIdleLoopDoesNotSpin) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir());
  SystemClock clock;
  EngineLoop loop(e.get(), SchedulerConfig(), &clock);
  loop.Start();
  auto quick = std::make_shared<Counter>();
  ASSERT_TRUE(loop.Submit({Greedy(3, 3, 1), "a", 0, std::nullopt, quick}).ok());
  for (int i = 0; i < 2000 && !quick->done; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  ASSERT_TRUE(quick->done);
  // Idle: the loop thread waits on its condition variable. The process's CPU time over two
  // windows of 300 ms, the quieter one counted: the end of the finished request's step (on a
  // loaded CI machine) can fall in the first, while a loop that spins fills both.
  auto idle_cpu_ms = [] {
    rusage before, after;
    getrusage(RUSAGE_SELF, &before);
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    getrusage(RUSAGE_SELF, &after);
    return (after.ru_utime.tv_sec - before.ru_utime.tv_sec) * 1e3 +
           (after.ru_utime.tv_usec - before.ru_utime.tv_usec) / 1e3 +
           (after.ru_stime.tv_sec - before.ru_stime.tv_sec) * 1e3 +
           (after.ru_stime.tv_usec - before.ru_stime.tv_usec) / 1e3;
  };
  const double first_ms = idle_cpu_ms(), second_ms = idle_cpu_ms();
  EXPECT_LT(std::min(first_ms, second_ms), 30.0)
      << "CPU used while idle for 300 ms: " << first_ms << " then " << second_ms << " ms";
  auto endless = std::make_shared<Counter>();
  ASSERT_TRUE(loop.Submit({Greedy(3, 1000, 2), "a", 0, std::nullopt, endless}).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  loop.Stop();
  EXPECT_TRUE(endless->done);
  EXPECT_EQ(endless->reason, FinishReason::kCancelled);
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
  EXPECT_EQ(loop.Submit({Greedy(3, 3, 3), "a", 0, std::nullopt, std::make_shared<Counter>()})
                .status()
                .code(),
            absl::StatusCode::kUnavailable);
}

// A client that has received a token must see its request counted as running, with its KV
// blocks taken: the snapshot is published before the step's tokens are delivered.
TEST(EngineLoopTest, SnapshotShowsARequestRunningBeforeItsFirstTokenArrives) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 256, 16);
  SystemClock clock;
  EngineLoop loop(e.get(), SchedulerConfig(), &clock);
  struct Probe : RequestObserver {
    EngineLoop* loop = nullptr;
    std::vector<LoopSnapshot> seen;
    void OnToken(const TokenEvent&) override { seen.push_back(loop->Snapshot()); }
    void OnDone(const DoneEvent&) override {}
  };
  auto probe = std::make_shared<Probe>();
  probe->loop = &loop;
  ASSERT_TRUE(loop.Submit({Greedy(5, 3, 4), "a", 0, std::nullopt, probe}).ok());
  loop.RunUntilIdle();
  ASSERT_EQ(probe->seen.size(), 3u);
  for (const LoopSnapshot& s : probe->seen) {
    EXPECT_EQ(s.running, 1);
    EXPECT_EQ(s.waiting, 0);
    EXPECT_LT(s.kv_blocks_free, s.kv_blocks_total);
  }
  EXPECT_EQ(loop.Snapshot().running, 0);
}

// A refused client sees the requests admitted beside it already counted as waiting.
TEST(EngineLoopTest, SnapshotCountsAdmittedRequestsBeforeARefusalIsDelivered) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 256, 16);
  SystemClock clock;
  SchedulerConfig config;
  config.max_waiting_per_tenant = 2;
  EngineLoop loop(e.get(), config, &clock);
  struct Probe : RequestObserver {
    EngineLoop* loop = nullptr;
    absl::Status status;
    std::optional<LoopSnapshot> at_refusal;
    void OnToken(const TokenEvent&) override {}
    void OnDone(const DoneEvent& d) override {
      if (!d.status.ok()) at_refusal = loop->Snapshot(), status = d.status;
    }
  };
  std::vector<std::shared_ptr<Probe>> probes;
  for (int i = 0; i < 3; ++i) {
    probes.push_back(std::make_shared<Probe>());
    probes.back()->loop = &loop;
    ASSERT_TRUE(loop.Submit({Greedy(4, 2, 10 + i), "a", 0, std::nullopt, probes.back()}).ok());
  }
  loop.RunUntilIdle();
  ASSERT_TRUE(probes[2]->at_refusal.has_value());
  EXPECT_EQ(probes[2]->status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(probes[2]->at_refusal->waiting, 2);
  EXPECT_FALSE(probes[0]->at_refusal.has_value());
  EXPECT_FALSE(probes[1]->at_refusal.has_value());
}

}  // namespace
}  // namespace para::sched
