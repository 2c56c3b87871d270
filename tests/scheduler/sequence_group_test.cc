// Sequence groups through the engine loop: n samples and beam search share their prompt's KV
// blocks (a group holds fewer blocks than the same number of separate requests), the scheduler's
// count of used blocks equals the pool's after every step, the pool is full again after every
// scenario (finish, cancel, preemption), and a PARA request's vectors are generated once per
// group. A group preempted and recomputed gives the same results.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "scheduler/engine_loop.h"
#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"

namespace para::sched {
namespace {

GenerationRequest Prompt(int len, int max_tokens, uint64_t seed) {
  std::mt19937_64 rng(seed);
  GenerationRequest r;
  for (int i = 0; i < len; ++i) r.prompt_ids.push_back(3 + static_cast<int32_t>(rng() % 500));
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  r.sampling.temperature = 0;
  return r;
}

GenerationRequest Sampled(int len, int max_tokens, int n) {
  GenerationRequest r = Prompt(len, max_tokens, 7);
  r.sampling.temperature = 1.0f;
  r.sampling.seed = 11;
  r.group.n = n;
  r.group.best_of = n;
  return r;
}

GenerationRequest Beam(int len, int max_tokens, int width) {
  GenerationRequest r = Prompt(len, max_tokens, 7);
  r.sampling.temperature = 0;
  r.group.n = width;
  r.group.beam_width = width;
  r.group.best_of = 1;
  return r;
}

struct Keep : RequestObserver {
  std::vector<DoneEvent> done;
  void OnToken(const TokenEvent&) override {}
  void OnDone(const DoneEvent& e) override { done.push_back(e); }
};

// Runs the submissions to the end, one loop iteration at a time, checking after each that the
// scheduler's count of used blocks is the pool's. Returns the most blocks used at once.
int32_t RunChecked(Engine* engine, std::vector<GenerationRequest> reqs, SchedulerConfig config,
                   std::vector<DoneEvent>* out, int64_t* preemptions = nullptr) {
  SystemClock clock;
  EngineLoop loop(engine, config, &clock);
  auto keep = std::make_shared<Keep>();
  for (auto& r : reqs) {
    Submission s;
    s.request = std::move(r);
    s.observer = keep;
    EXPECT_TRUE(loop.Submit(std::move(s)).ok());
  }
  int32_t peak = 0;
  for (int i = 0; i < 10000 && loop.RunOnce(); ++i) {
    const BlockPool& pool = engine->kv_cache().pool();
    EXPECT_EQ(loop.scheduler().blocks_used(), pool.num_used()) << "step " << i;
    peak = std::max(peak, pool.num_used());
  }
  EXPECT_EQ(engine->kv_cache().pool().num_free(), engine->kv_cache().pool().num_blocks());
  *out = keep->done;
  if (preemptions != nullptr) *preemptions = loop.scheduler().stats().preemptions;
  return peak;
}

TEST(SequenceGroupTest, NSamplesShareThePromptAndHoldFewerBlocksThanSeparateRequests) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 512, 16);
  std::vector<DoneEvent> group, separate;
  const int32_t group_peak = RunChecked(e.get(), {Sampled(100, 8, 4)}, {}, &group);
  std::vector<GenerationRequest> four;
  for (int i = 0; i < 4; ++i) four.push_back(Sampled(100, 8, 1));
  const int32_t separate_peak = RunChecked(e.get(), four, {}, &separate);
  ASSERT_EQ(group.size(), 1u);
  ASSERT_TRUE(group[0].status.ok());
  ASSERT_EQ(group[0].choices.size(), 4u);
  // 100 prompt tokens = 6 full blocks shared + each branch's own last block(s).
  EXPECT_LT(group_peak, separate_peak);
  EXPECT_LE(group_peak, 6 + 4 * 2);
  EXPECT_EQ(separate_peak, 4 * 7);
  // Branches draw independently: not all the same.
  std::set<std::vector<int32_t>> distinct;
  for (const auto& c : group[0].choices) distinct.insert(c.token_ids);
  EXPECT_GT(distinct.size(), 1u);
}

TEST(SequenceGroupTest, BeamSearchSharesBlocksAndTheMirrorStaysExact) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 512, 16);
  std::vector<DoneEvent> beam, separate;
  const int32_t beam_peak = RunChecked(e.get(), {Beam(100, 12, 3)}, {}, &beam);
  std::vector<GenerationRequest> three;
  for (int i = 0; i < 3; ++i) three.push_back(Prompt(100, 12, 7));
  const int32_t separate_peak = RunChecked(e.get(), three, {}, &separate);
  ASSERT_TRUE(beam[0].status.ok());
  ASSERT_EQ(beam[0].choices.size(), 3u);
  EXPECT_LT(beam_peak, separate_peak);
  // Hypotheses are ranked: cumulative log-prob / length (all reach max_tokens here).
  for (size_t i = 1; i < beam[0].choices.size(); ++i)
    EXPECT_GE(beam[0].choices[i - 1].cumulative_logprob, beam[0].choices[i].cumulative_logprob);
}

TEST(SequenceGroupTest, PreemptedGroupsRecomputeToTheSameResults) {
  auto big = testing::MakeEngine(testing::DefaultTinyModelDir(), 512, 4);
  auto small = testing::MakeEngine(testing::DefaultTinyModelDir(), 40, 4);  // 160 positions
  std::vector<GenerationRequest> reqs = {Beam(20, 10, 3), Sampled(20, 10, 3), Prompt(30, 10, 5),
                                         Beam(12, 8, 2), Prompt(25, 12, 6)};
  SchedulerConfig config;
  std::vector<DoneEvent> want, got;
  int64_t preempted = 0;
  RunChecked(big.get(), reqs, config, &want);
  RunChecked(small.get(), reqs, config, &got, &preempted);
  EXPECT_GT(preempted, 0);  // the small pool forced recomputation
  ASSERT_EQ(want.size(), got.size());
  auto by_handle = [](std::vector<DoneEvent>& v) {
    std::sort(v.begin(), v.end(), [](const auto& a, const auto& b) { return a.handle < b.handle; });
  };
  by_handle(want);
  by_handle(got);
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(got[i].status.ok()) << got[i].status;
    EXPECT_EQ(got[i].result.token_ids, want[i].result.token_ids) << "request " << i;
    ASSERT_EQ(got[i].choices.size(), want[i].choices.size());
    for (size_t c = 0; c < want[i].choices.size(); ++c)
      EXPECT_EQ(got[i].choices[c].token_ids, want[i].choices[c].token_ids) << i << "/" << c;
  }
}

TEST(SequenceGroupTest, ParaVectorsAreGeneratedOncePerGroup) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 512, 16);
  const std::string dir = testing::MakeTempDir("sg_para_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(dir, testing::DefaultTinyModelDir(), {}).ok());
  auto para = *e->LoadParaAdapter(dir);
  GenerationRequest s = Sampled(30, 6, 4), b = Beam(30, 6, 3);
  s.para = para;
  b.para = para;
  std::vector<DoneEvent> done;
  const int64_t before = e->backend_stats().para_generator_runs;
  RunChecked(e.get(), {s, b}, {}, &done);
  EXPECT_EQ(e->backend_stats().para_generator_runs - before, 2);  // one per group, not per branch
}

TEST(SequenceGroupTest, CancellingAGroupFreesEverything) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 512, 16);
  SystemClock clock;
  EngineLoop loop(e.get(), {}, &clock);
  auto keep = std::make_shared<Keep>();
  Submission s;
  s.request = Beam(40, 200, 4);
  s.observer = keep;
  const uint64_t h = *loop.Submit(std::move(s));
  for (int i = 0; i < 5; ++i) loop.RunOnce();
  EXPECT_GT(e->kv_cache().pool().num_used(), 0);
  loop.Cancel(h);
  while (loop.RunOnce()) {
  }
  ASSERT_EQ(keep->done.size(), 1u);
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
  EXPECT_EQ(loop.scheduler().blocks_used(), 0);
}

}  // namespace
}  // namespace para::sched
