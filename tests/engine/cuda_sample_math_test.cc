// The device sampler's code (engine/cuda/sample_math.h), run on the CPU with its threads one
// after another, against the host sampler (engine/sampling.cc), which is written separately:
// for the same logits, parameters, history and random stream both must choose the same token and
// report the same log-probabilities, ranks and top alternatives.
#include "engine/cuda/sample_math.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <vector>

#include "engine/cuda/sample_plan.h"
#include "engine/sampling.h"

namespace para::cuda {
namespace {

struct Case {
  std::string name;
  SamplingParams params;
};

std::vector<Case> Cases() {
  std::vector<Case> c;
  auto add = [&](std::string name, auto edit) {
    SamplingParams p;
    edit(p);
    c.push_back({std::move(name), p});
  };
  add("greedy", [](SamplingParams& p) { p.temperature = 0; });
  add("top_k_1", [](SamplingParams& p) { p.top_k = 1; });
  add("full_vocabulary", [](SamplingParams& p) { p.temperature = 0.8f; });
  add("top_k", [](SamplingParams& p) { p.top_k = 40; });
  add("top_k_above_1024", [](SamplingParams& p) { p.top_k = 1500; });
  add("top_p", [](SamplingParams& p) { p.top_p = 0.9f; });
  add("top_p_flat", [](SamplingParams& p) {  // the largest 1024 do not hold 0.999 of the mass
    p.top_p = 0.999f;
    p.temperature = 5.0f;
  });
  add("min_p", [](SamplingParams& p) { p.min_p = 0.05f; });
  add("top_k_top_p_min_p", [](SamplingParams& p) {
    p.top_k = 100;
    p.top_p = 0.8f;
    p.min_p = 0.02f;
    p.temperature = 1.3f;
  });
  add("penalties", [](SamplingParams& p) {
    p.repetition_penalty = 1.3f;
    p.presence_penalty = 0.7f;
    p.frequency_penalty = 0.4f;
    p.top_p = 0.95f;
  });
  add("logit_bias_repeated_ids", [](SamplingParams& p) {
    p.logit_bias = {{5, 8.0f}, {17, -100.0f}, {5, 3.5f}, {2999, 20.0f}, {-4, 9.0f}};
  });
  add("greedy_with_penalties", [](SamplingParams& p) {
    p.temperature = 0;
    p.repetition_penalty = 2.0f;
    p.frequency_penalty = 1.5f;
  });
  return c;
}

// Logits with ties (values on a coarse grid) and signed zeros, so that the id order of equal
// values and -0 == +0 matter.
std::vector<float> Logits(int64_t vocab, uint32_t seed, bool coarse) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 3.0f);
  std::vector<float> x(vocab);
  for (float& v : x) v = coarse ? std::round(d(rng) * 2.0f) / 2.0f : d(rng);
  if (coarse && vocab > 20) x[7] = -0.0f, x[11] = 0.0f;
  return x;
}

struct History {
  std::vector<int32_t> penalized, suppressed;
  std::vector<std::pair<int32_t, int32_t>> counts;
  SamplingHistory view() const { return {penalized, counts, suppressed}; }
};

History MakeHistory(int64_t vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  History h;
  for (int i = 0; i < 60; ++i) h.penalized.push_back(static_cast<int32_t>(rng() % vocab));
  std::sort(h.penalized.begin(), h.penalized.end());
  h.penalized.erase(std::unique(h.penalized.begin(), h.penalized.end()), h.penalized.end());
  for (size_t i = 0; i < h.penalized.size(); i += 3)
    h.counts.push_back({h.penalized[i], 1 + static_cast<int32_t>(rng() % 4)});
  h.suppressed = {h.penalized.front(), 3};
  return h;
}

TEST(CudaSampleMathTest, OrderedKeysFollowFloatOrder) {
  const std::vector<float> v = {-INFINITY, -1e30f, -2.5f, -1e-38f, -0.0f,
                                0.0f,      1e-38f, 1.0f,  3e38f,   INFINITY};
  for (size_t i = 0; i < v.size(); ++i)
    for (size_t j = 0; j < v.size(); ++j) {
      EXPECT_EQ(v[i] < v[j], OrderedKey(v[i]) < OrderedKey(v[j])) << v[i] << " " << v[j];
      EXPECT_EQ(v[i] == v[j], OrderedKey(v[i]) == OrderedKey(v[j])) << v[i] << " " << v[j];
    }
}

TEST(CudaSampleMathTest, ChunksCoverEveryItemOnce) {
  for (int64_t n : {0, 1, 255, 256, 257, 1000, 49152}) {
    int64_t next = 0;
    for (int t = 0; t < kSampleThreads; ++t) {
      EXPECT_EQ(ChunkBegin(t, n), next);
      EXPECT_LE(ChunkBegin(t, n), ChunkEnd(t, n));
      next = ChunkEnd(t, n);
    }
    EXPECT_EQ(next, n);
  }
}

TEST(CudaSampleMathTest, TopSelectionOrdersByValueThenId) {
  for (int64_t vocab : {5, 300, 3000}) {
    const std::vector<float> x = Logits(vocab, 3, true);
    for (int64_t k : {int64_t{1}, int64_t{4}, vocab / 3, vocab - 1, vocab, vocab + 5}) {
      std::vector<uint32_t> keys(SortCapacity(vocab));
      std::vector<int32_t> ids(SortCapacity(vocab));
      SampleShared sh;
      SelectTopSorted(x.data(), vocab, k, SampleScratch{nullptr, keys.data(), ids.data()}, &sh);
      std::vector<int32_t> want(vocab);
      for (int32_t i = 0; i < vocab; ++i) want[i] = i;
      std::stable_sort(want.begin(), want.end(), [&](int32_t a, int32_t b) { return x[a] > x[b]; });
      const int64_t m = std::min(k, vocab);
      ASSERT_EQ(sh.count, m) << vocab << " " << k;
      for (int64_t i = 0; i < m; ++i) ASSERT_EQ(ids[i], want[i]) << vocab << " " << k << " " << i;
    }
  }
}

// Every case, on several rows, vocabularies below and above 1024, with and without ties: the
// same token as SampleToken given the same RNG stream, and ComputeLogprobs' entry.
TEST(CudaSampleMathTest, DrawsAndLogprobsMatchTheHostSampler) {
  int random_draws = 0;
  for (int64_t vocab : {37, 700, 3000}) {
    for (const Case& c : Cases()) {
      for (uint32_t row = 0; row < 6; ++row) {
        const bool coarse = row % 2 == 1;
        const std::vector<float> x =
            Logits(vocab, 100 + row * 7 + static_cast<uint32_t>(vocab), coarse);
        const History h = MakeHistory(vocab, row);
        const int32_t top_n = row % 3 == 0 ? -1 : row % 3 == 1 ? 0 : 5;
        std::mt19937_64 host_rng(row + 1), device_rng(row + 1);
        SamplerScratch scratch;
        const int32_t want = SampleToken(x, c.params, h.view(), &host_rng, &scratch);
        const double u = DrawIsRandom(c.params) ? UniformDouble(&device_rng) : 0.0;
        random_draws += DrawIsRandom(c.params) ? 1 : 0;
        SamplePlan plan;
        plan.Add(0, c.params, h.view(), u, top_n);
        const std::vector<HostSampleResult> got = SampleOnHost(plan, x.data(), vocab);
        ASSERT_EQ(got.size(), 1u);
        const std::string where =
            c.name + " vocab " + std::to_string(vocab) + " row " + std::to_string(row);
        EXPECT_EQ(got[0].out.finite, 1) << where;
        ASSERT_EQ(got[0].out.token, want) << where;
        EXPECT_EQ(host_rng(), device_rng()) << where << ": the RNG streams diverged";
        if (top_n < 0) continue;
        const LogprobEntry e = ComputeLogprobs(x, want, top_n, &scratch);
        EXPECT_NEAR(got[0].out.logprob, e.logprob, 1e-5f) << where;
        EXPECT_EQ(got[0].out.rank, e.rank) << where;
        ASSERT_EQ(got[0].top_ids.size(), e.top.size()) << where;
        for (size_t i = 0; i < e.top.size(); ++i) {
          EXPECT_EQ(got[0].top_ids[i], e.top[i].id) << where << " top " << i;
          EXPECT_NEAR(got[0].top_lp[i], e.top[i].logprob, 1e-5f) << where << " top " << i;
        }
      }
    }
  }
  EXPECT_GT(random_draws, 100);
}

// Many draws from one row with uniform numbers spread over [0, 1): the device code picks the
// host's token for each (so it samples the same distribution), for every filter.
TEST(CudaSampleMathTest, EveryUniformNumberPicksTheHostsToken) {
  const int64_t vocab = 1200;
  const std::vector<float> x = Logits(vocab, 9, false);
  const History h = MakeHistory(vocab, 4);
  for (const Case& c : Cases()) {
    if (!DrawIsRandom(c.params)) continue;
    SamplePlan plan;
    std::vector<int32_t> want;
    for (uint64_t seed = 0; seed < 40; ++seed) {
      std::mt19937_64 a(seed), b(seed);
      SamplerScratch scratch;
      want.push_back(SampleToken(x, c.params, h.view(), &a, &scratch));
      plan.Add(0, c.params, h.view(), UniformDouble(&b), -1);
    }
    const std::vector<HostSampleResult> got = SampleOnHost(plan, x.data(), vocab);
    for (size_t i = 0; i < want.size(); ++i) EXPECT_EQ(got[i].out.token, want[i]) << c.name << i;
  }
}

// A forced token (prompt log-probabilities, beam candidates): nothing is drawn, and its entry is
// ComputeLogprobs'.
TEST(CudaSampleMathTest, ForcedTokensReportTheirLogprobs) {
  const int64_t vocab = 900;
  const std::vector<float> x = Logits(vocab, 12, true);
  for (int32_t token : {0, 7, 11, 450, 899}) {
    for (int32_t top_n : {0, 3, 20}) {
      SamplePlan plan;
      SamplingParams p;
      p.logit_bias = {{token, -100.0f}};  // not read: a forced draw applies no edits
      plan.Add(0, p, SamplingHistory{}, 0.3, top_n, token);
      const std::vector<HostSampleResult> got = SampleOnHost(plan, x.data(), vocab);
      SamplerScratch scratch;
      const LogprobEntry e = ComputeLogprobs(x, token, top_n, &scratch);
      EXPECT_EQ(got[0].out.token, token);
      EXPECT_NEAR(got[0].out.logprob, e.logprob, 1e-5f);
      EXPECT_EQ(got[0].out.rank, e.rank);
      ASSERT_EQ(got[0].top_ids.size(), e.top.size());
      for (size_t i = 0; i < e.top.size(); ++i) EXPECT_EQ(got[0].top_ids[i], e.top[i].id);
    }
  }
}

TEST(CudaSampleMathTest, NonFiniteRowsDrawNothing) {
  for (float bad : {NAN, INFINITY, -INFINITY}) {
    std::vector<float> x = Logits(500, 1, false);
    x[321] = bad;
    SamplePlan plan;
    plan.Add(0, SamplingParams{}, SamplingHistory{}, 0.5, 3);
    const std::vector<HostSampleResult> got = SampleOnHost(plan, x.data(), 500);
    EXPECT_EQ(got[0].out.finite, 0) << bad;
    EXPECT_EQ(got[0].out.token, -1) << bad;
  }
}

TEST(CudaSampleMathTest, PlanFlattensHistoryOnlyForActivePenalties) {
  const History h = MakeHistory(100, 2);
  SamplingParams plain;
  SamplingParams penalized;
  penalized.repetition_penalty = 1.2f;
  penalized.frequency_penalty = 0.5f;
  penalized.logit_bias = {{1, 2.0f}};
  SamplePlan plan;
  plan.Add(0, plain, h.view(), 0.1, -1);
  plan.Add(1, penalized, h.view(), 0.2, 4);
  ASSERT_EQ(plan.descs.size(), 2u);
  EXPECT_EQ(plan.descs[0].penalized_count, 0);
  EXPECT_EQ(plan.descs[0].counts_count, 0);
  EXPECT_EQ(plan.descs[0].suppressed_count, static_cast<int32_t>(h.suppressed.size()));
  EXPECT_EQ(plan.descs[1].penalized_count, static_cast<int32_t>(h.penalized.size()));
  EXPECT_EQ(plan.descs[1].counts_count, static_cast<int32_t>(h.counts.size()));
  EXPECT_EQ(plan.descs[1].bias_count, 1);
  EXPECT_EQ(plan.edit_ids[plan.descs[1].penalized_begin], h.penalized[0]);
  EXPECT_EQ(plan.edits[plan.descs[1].counts_begin].value, static_cast<float>(h.counts[0].second));
  EXPECT_EQ(plan.max_top, 4);
}

}  // namespace
}  // namespace para::cuda
