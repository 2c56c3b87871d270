// Sampling: each filter does what its definition says, checked against probabilities computed
// here from the logits; seeds make draws reproducible.
#include "engine/sampling.h"

#include <gtest/gtest.h>

#include <cmath>
#include <map>

namespace para {
namespace {

std::vector<double> Softmax(const std::vector<float>& logits, double temperature) {
  double mx = -1e300;
  for (float l : logits) mx = std::max(mx, l / temperature);
  std::vector<double> p;
  double z = 0;
  for (float l : logits) {
    p.push_back(std::exp(l / temperature - mx));
    z += p.back();
  }
  for (double& x : p) x /= z;
  return p;
}

// Empirical frequencies of SampleToken over `n` draws from one RNG.
std::map<int32_t, double> Frequencies(const std::vector<float>& logits, const SamplingParams& p,
                                      int n) {
  std::mt19937_64 rng(1234);
  SamplerScratch scratch;
  std::map<int32_t, double> freq;
  for (int i = 0; i < n; ++i) freq[SampleToken(logits, p, {}, &rng, &scratch)] += 1.0 / n;
  return freq;
}

// Within 5 standard deviations of a binomial proportion.
void ExpectFrequency(double got, double want, int n, const std::string& what) {
  const double sigma = std::sqrt(std::max(want * (1 - want), 1e-6) / n);
  EXPECT_NEAR(got, want, 5 * sigma + 1e-9) << what;
}

TEST(SamplingTest, GreedyPicksArgmaxAndLowestIdOnTies) {
  std::mt19937_64 rng(0);
  SamplerScratch s;
  SamplingParams p;
  p.temperature = 0;
  EXPECT_EQ(SampleToken(std::vector<float>{0.1f, 3.f, -1.f, 3.f}, p, {}, &rng, &s), 1);
  p.temperature = 1.f;
  p.top_k = 1;  // top_k = 1 is greedy too
  EXPECT_EQ(SampleToken(std::vector<float>{0.1f, 3.f, -1.f, 2.9f}, p, {}, &rng, &s), 1);
}

TEST(SamplingTest, TemperatureScalesTheDistribution) {
  const std::vector<float> logits = {1.0f, 0.0f, -0.5f, 2.0f};
  SamplingParams p;
  p.temperature = 2.0f;
  const int n = 20000;
  auto freq = Frequencies(logits, p, n);
  auto want = Softmax(logits, 2.0);
  for (int i = 0; i < 4; ++i) ExpectFrequency(freq[i], want[i], n, "token " + std::to_string(i));
}

TEST(SamplingTest, TopKKeepsOnlyTheKLargestRenormalised) {
  const std::vector<float> logits = {0.5f, 2.0f, 1.0f, -1.0f, 1.5f};
  SamplingParams p;
  p.top_k = 3;
  const int n = 20000;
  auto freq = Frequencies(logits, p, n);
  EXPECT_EQ(freq.count(0), 0u);
  EXPECT_EQ(freq.count(3), 0u);
  auto kept = Softmax({2.0f, 1.0f, 1.5f}, 1.0);  // ids 1, 2, 4
  ExpectFrequency(freq[1], kept[0], n, "id 1");
  ExpectFrequency(freq[2], kept[1], n, "id 2");
  ExpectFrequency(freq[4], kept[2], n, "id 4");
}

TEST(SamplingTest, TopPKeepsTheSmallestPrefixReachingP) {
  // Probabilities 0.5, 0.3, 0.1, 0.1.
  const std::vector<float> logits = {std::log(0.5f), std::log(0.3f), std::log(0.1f),
                                     std::log(0.1f)};
  SamplingParams p;
  p.top_p = 0.75f;
  const int n = 20000;
  auto freq = Frequencies(logits, p, n);
  EXPECT_EQ(freq.count(2) + freq.count(3), 0u);
  ExpectFrequency(freq[0], 0.5 / 0.8, n, "id 0");
  p.top_p = 0.5f;
  freq = Frequencies(logits, p, 2000);
  EXPECT_EQ(freq.size(), 1u);
  EXPECT_EQ(freq.begin()->first, 0);
}

TEST(SamplingTest, TopPBeyondTheFastPathFallsBackToFullSort) {
  // 5000 equal logits: top_p = 0.9 keeps 4500 ids (ties ordered by id), beyond the 1024 fast path.
  const std::vector<float> logits(5000, 0.0f);
  SamplingParams p;
  p.top_p = 0.9f;
  auto freq = Frequencies(logits, p, 20000);
  int32_t max_id = 0;
  for (const auto& [id, f] : freq) max_id = std::max(max_id, id);
  EXPECT_LT(max_id, 4500);
  EXPECT_GT(max_id, 4000);
}

TEST(SamplingTest, RepetitionPenaltyDividesPositiveAndMultipliesNegative) {
  std::mt19937_64 rng(0);
  SamplerScratch s;
  SamplingParams p;
  p.temperature = 0;
  p.repetition_penalty = 1.2f;
  const std::vector<int32_t> seen = {0};
  SamplingHistory h;
  h.penalized = seen;
  EXPECT_EQ(SampleToken(std::vector<float>{2.0f, 1.9f}, p, h, &rng, &s), 1);  // 2/1.2 < 1.9
  EXPECT_EQ(SampleToken(std::vector<float>{2.0f, 1.5f}, p, h, &rng, &s), 0);  // 2/1.2 > 1.5
  p.repetition_penalty = 2.0f;
  EXPECT_EQ(SampleToken(std::vector<float>{-1.0f, -1.5f}, p, h, &rng, &s), 1);  // -2 < -1.5
}

TEST(SamplingTest, PresenceAndFrequencyPenaltiesSubtractPerGeneratedToken) {
  std::mt19937_64 rng(0);
  SamplerScratch s;
  SamplingParams p;
  p.temperature = 0;
  const std::vector<std::pair<int32_t, int32_t>> counts = {{0, 3}, {2, 1}};
  SamplingHistory h;
  h.output_counts = counts;
  const std::vector<float> logits = {5.0f, 4.1f, 4.6f};
  EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 0);  // no penalty: 5.0 wins
  p.presence_penalty = 0.5f;                          // 4.5, 4.1, 4.1
  EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 0);
  p.presence_penalty = 0.0f;
  p.frequency_penalty = 0.3f;  // 5 - 0.9 = 4.1, 4.1, 4.6 - 0.3 = 4.3
  EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 2);
  p.frequency_penalty = -0.5f;  // negative values encourage repetition: 5 + 1.5 = 6.5, 4.1, 5.1
  EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 0);
}

TEST(SamplingTest, LogitBiasAndSuppressionShiftTheChoice) {
  std::mt19937_64 rng(0);
  SamplerScratch s;
  SamplingParams p;
  p.temperature = 0;
  const std::vector<float> logits = {1.0f, 3.0f, 2.0f};
  p.logit_bias = {{0, 2.5f}};  // 3.5 beats 3.0
  EXPECT_EQ(SampleToken(logits, p, {}, &rng, &s), 0);
  p.logit_bias = {{1, -100.0f}};
  EXPECT_EQ(SampleToken(logits, p, {}, &rng, &s), 2);
  p.logit_bias.clear();
  const std::vector<int32_t> suppressed = {1, 2};
  SamplingHistory h;
  h.suppressed = suppressed;  // min_tokens: EOS and stop ids may not be drawn yet
  EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 0);
  p.temperature = 1.0f;  // also when sampling: never drawn
  for (int i = 0; i < 200; ++i) EXPECT_EQ(SampleToken(logits, p, h, &rng, &s), 0);
}

TEST(SamplingTest, MinPDropsTokensBelowAFractionOfTheTopProbability) {
  // Probabilities 0.6, 0.3, 0.1 (as logits log p): min_p 0.2 keeps those >= 0.12.
  const std::vector<float> logits = {std::log(0.6f), std::log(0.3f), std::log(0.1f)};
  SamplingParams p;
  p.min_p = 0.2f;
  auto freq = Frequencies(logits, p, 30000);
  EXPECT_EQ(freq.count(2), 0u);
  EXPECT_NEAR(freq[0], 2.0 / 3, 0.02);  // 0.6 / 0.9
  EXPECT_NEAR(freq[1], 1.0 / 3, 0.02);
  p.min_p = 0.0f;
  freq = Frequencies(logits, p, 30000);
  EXPECT_NEAR(freq[2], 0.1, 0.01);
}

TEST(SamplingTest, NewOptionsAreValidated) {
  SamplingParams p;
  p.presence_penalty = 2.5f;
  EXPECT_FALSE(ValidateSamplingParams(p, 20).ok());
  p = {};
  p.frequency_penalty = NAN;
  EXPECT_FALSE(ValidateSamplingParams(p, 20).ok());
  p = {};
  p.min_p = 1.5f;
  EXPECT_FALSE(ValidateSamplingParams(p, 20).ok());
  p = {};
  p.logit_bias = {{3, 101.0f}};
  EXPECT_FALSE(ValidateSamplingParams(p, 20).ok());
  p.logit_bias = {{3, -100.0f}};
  EXPECT_TRUE(ValidateSamplingParams(p, 20).ok());
}

TEST(SamplingTest, SameSeedSameDraws) {
  const std::vector<float> logits = {0.f, 0.1f, 0.2f, 0.3f, 0.4f, 0.5f};
  SamplingParams p;
  std::mt19937_64 a(42), b(42), c(43);
  SamplerScratch s;
  std::vector<int32_t> da, db, dc;
  for (int i = 0; i < 64; ++i) {
    da.push_back(SampleToken(logits, p, {}, &a, &s));
    db.push_back(SampleToken(logits, p, {}, &b, &s));
    dc.push_back(SampleToken(logits, p, {}, &c, &s));
  }
  EXPECT_EQ(da, db);
  EXPECT_NE(da, dc);
}

TEST(SamplingTest, LogprobsAreLogSoftmaxOfRawLogitsWithSortedTopN) {
  const std::vector<float> logits = {1.0f, 3.0f, -2.0f, 2.5f, 0.0f};
  SamplerScratch s;
  LogprobEntry e = ComputeLogprobs(logits, 2, 3, &s);
  auto p = Softmax(logits, 1.0);
  EXPECT_EQ(e.token, 2);
  EXPECT_NEAR(e.logprob, std::log(p[2]), 1e-6);
  ASSERT_EQ(e.top.size(), 3u);
  EXPECT_EQ(e.top[0].id, 1);
  EXPECT_EQ(e.top[1].id, 3);
  EXPECT_EQ(e.top[2].id, 0);
  for (const auto& t : e.top) EXPECT_NEAR(t.logprob, std::log(p[t.id]), 1e-6);
  EXPECT_TRUE(ComputeLogprobs(logits, 0, 0, &s).top.empty());
}

TEST(SamplingTest, ValidationNamesTheParameter) {
  SamplingParams p;
  p.temperature = -1;
  EXPECT_NE(ValidateSamplingParams(p, 20).message().find("temperature"), std::string::npos);
  p = {};
  p.top_p = 0;
  EXPECT_NE(ValidateSamplingParams(p, 20).message().find("top_p"), std::string::npos);
  p = {};
  p.top_k = -5;
  EXPECT_NE(ValidateSamplingParams(p, 20).message().find("top_k"), std::string::npos);
  p = {};
  p.repetition_penalty = 0;
  EXPECT_NE(ValidateSamplingParams(p, 20).message().find("repetition_penalty"), std::string::npos);
  p = {};
  p.logprobs = 21;
  EXPECT_NE(ValidateSamplingParams(p, 20).message().find("logprobs"), std::string::npos);
  p = {};
  p.temperature = NAN;
  EXPECT_FALSE(ValidateSamplingParams(p, 20).ok());
  EXPECT_TRUE(ValidateSamplingParams(SamplingParams{}, 20).ok());
}

}  // namespace
}  // namespace para
