// The offline batch runner: many requests share steps, a small pool makes them wait instead of
// failing, results come back in request order equal to solo runs, and every block returns.
#include "engine/batch_runner.h"

#include <gtest/gtest.h>

#include <random>

#include "tests/engine/test_model.h"

namespace para {
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

TEST(BatchRunnerTest, SmallPoolQueuesRequestsAndResultsEqualSoloRuns) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), /*num_blocks=*/12, /*block_size=*/8);
  ASSERT_NE(e, nullptr);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 20; ++i) reqs.push_back(Greedy(3 + i % 11, 5 + i % 9, i));
  std::vector<std::vector<int32_t>> solo;
  for (const auto& r : reqs) {
    auto res = RunBatch(e.get(), {r}, {});
    ASSERT_TRUE(res[0].ok()) << res[0].status();
    solo.push_back(res[0]->token_ids);
  }
  int steps_with_many = 0;
  std::map<int64_t, int> per_step;
  auto results = RunBatch(e.get(), reqs, {}, [&](int64_t, const SequenceUpdate&) {});
  ASSERT_EQ(results.size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    ASSERT_TRUE(results[i].ok()) << i << ": " << results[i].status();
    EXPECT_EQ(results[i]->token_ids, solo[i]) << "request " << i;
    EXPECT_EQ(results[i]->finish_reason, FinishReason::kLength);
    EXPECT_EQ(results[i]->num_prompt_tokens, static_cast<int32_t>(reqs[i].prompt_ids.size()));
  }
  (void)steps_with_many;
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST(BatchRunnerTest, RequestsThatCannotFitOrAreInvalidFailAlone) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 4, 8);  // 32 positions
  std::vector<GenerationRequest> reqs = {Greedy(4, 4, 1), Greedy(10, 40, 2), Greedy(0, 4, 3),
                                         Greedy(5, 3, 4)};
  auto results = RunBatch(e.get(), reqs, {});
  EXPECT_TRUE(results[0].ok());
  EXPECT_EQ(results[1].status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_NE(results[1].status().message().find("KV blocks"), std::string::npos);
  EXPECT_EQ(results[2].status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(results[3].ok());
  EXPECT_EQ(e->kv_cache().pool().num_free(), 4);
}

TEST(BatchRunnerTest, StepsBatchManySequencesTogether) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 256, 16);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 16; ++i) reqs.push_back(Greedy(4 + i, 6, 100 + i));
  // Count updates per step: with room for all, every step after the first carries all 16 until
  // they finish together.
  std::vector<int64_t> seen;
  auto results = RunBatch(e.get(), reqs, {},
                          [&](int64_t index, const SequenceUpdate&) { seen.push_back(index); });
  EXPECT_EQ(seen.size(), 16u * 6);
  for (int s = 0; s < 6; ++s)
    for (int i = 0; i < 16; ++i) EXPECT_EQ(seen[s * 16 + i], i) << "step " << s;
}

}  // namespace
}  // namespace para
