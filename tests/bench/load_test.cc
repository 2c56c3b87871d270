// para-bench's workload and report: distributions have the asked shape, lengths stay in range,
// percentiles interpolate as numpy's do, and goodput counts only requests within every SLO.
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>

#include "bench/load/report.h"
#include "bench/load/workload.h"
#include "gtest/gtest.h"

namespace para::bench {
namespace {

TEST(WorkloadTest, DistinctPopularityVisitsEveryTenantInTurn) {
  WorkloadOptions o;
  o.tenants = 5;
  o.popularity = Popularity::kAllDistinct;
  Workload w(o, {});
  for (int round = 0; round < 3; ++round)
    for (int t = 0; t < 5; ++t) EXPECT_EQ(w.Next().tenant, t);
}

TEST(WorkloadTest, ZipfFavoursTheFirstTenantsUniformDoesNot) {
  WorkloadOptions o;
  o.tenants = 10;
  o.popularity = Popularity::kZipf;
  o.zipf_s = 1.2;
  Workload zipf(o, {});
  o.popularity = Popularity::kUniform;
  Workload uniform(o, {});
  std::map<int, int> z, u;
  for (int i = 0; i < 20000; ++i) {
    ++z[zipf.Next().tenant];
    ++u[uniform.Next().tenant];
  }
  // Zipf(s=1.2) over 10: P(0)/P(1) = 2^1.2 = 2.30, P(0) = 1 / sum(k^-1.2, k=1..10) = 0.4052.
  EXPECT_NEAR(static_cast<double>(z[0]) / 20000, 0.4052, 0.015);
  EXPECT_NEAR(static_cast<double>(z[0]) / z[1], 2.30, 0.15);
  for (int t = 0; t < 10; ++t) EXPECT_NEAR(u[t] / 20000.0, 0.1, 0.015) << t;
}

TEST(WorkloadTest, LengthsStayInRangeAndPromptsAvoidSpecialTokens) {
  WorkloadOptions o;
  o.input_len = {4, 9};
  o.output_len = {2, 3};
  o.vocab_size = 50;
  Workload w(o, {});
  for (int i = 0; i < 500; ++i) {
    PlannedRequest r = w.Next();
    ASSERT_GE(r.prompt_ids.size(), 4u);
    ASSERT_LE(r.prompt_ids.size(), 9u);
    ASSERT_GE(r.max_tokens, 2);
    ASSERT_LE(r.max_tokens, 3);
    EXPECT_EQ(r.prompt_ids[0], 1);
    for (size_t k = 1; k < r.prompt_ids.size(); ++k) {
      ASSERT_GE(r.prompt_ids[k], 3);
      ASSERT_LT(r.prompt_ids[k], 50);
    }
  }
}

TEST(WorkloadTest, ArrivalsHaveTheRateAndTheBurstiness) {
  for (double burstiness : {0.5, 1.0, 4.0}) {
    Arrivals a(20.0, burstiness, 3);
    double sum = 0, sq = 0;
    const int n = 40000;
    for (int i = 0; i < n; ++i) {
      const double g = a.NextGapSeconds();
      sum += g;
      sq += g * g;
    }
    const double mean = sum / n, var = sq / n - mean * mean;
    EXPECT_NEAR(mean, 0.05, 0.0025) << burstiness;
    // Gamma(k, theta): CV^2 = 1/k.
    EXPECT_NEAR(var / (mean * mean), 1.0 / burstiness, 0.1 / burstiness) << burstiness;
  }
}

TEST(WorkloadTest, RangesAndDatasetsAreValidated) {
  EXPECT_TRUE(ParseRange("7").ok());
  EXPECT_EQ(ParseRange("3:9")->hi, 9);
  EXPECT_FALSE(ParseRange("9:3").ok());
  EXPECT_FALSE(ParseRange("0").ok());
  EXPECT_FALSE(ParseRange("a:b").ok());
  EXPECT_FALSE(ParsePopularity("pareto").ok());
  const std::string path = ::testing::TempDir() + "/dataset.jsonl";
  std::ofstream(path) << R"({"prompt": "hello", "max_tokens": 4})"
                      << "\n\n"
                      << R"({"prompt_ids": [1, 5, 6]})"
                      << "\n";
  auto d = LoadDataset(path);
  ASSERT_TRUE(d.ok()) << d.status();
  ASSERT_EQ(d->size(), 2u);
  EXPECT_EQ((*d)[0].max_tokens, 4);
  EXPECT_EQ((*d)[1].prompt_ids.size(), 3u);
  std::ofstream(path) << R"({"prompt_ids": [1, "x"]})"
                      << "\n";
  auto bad = LoadDataset(path);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find(":1:"), std::string::npos) << bad.status();
}

TEST(ReportTest, PercentilesInterpolateBetweenRanks) {
  Percentiles p = Summarise(std::vector<double>{4, 1, 3, 2, 5});  // numpy: p50 3, p90 4.6, p99 4.96
  EXPECT_DOUBLE_EQ(p.mean, 3);
  EXPECT_DOUBLE_EQ(p.p50, 3);
  EXPECT_NEAR(p.p90, 4.6, 1e-12);
  EXPECT_NEAR(p.p99, 4.96, 1e-12);
}

TEST(ReportTest, ThroughputGoodputAndFailures) {
  std::vector<RequestRecord> rs(3);
  rs[0] = {0, true, "", 10, 5, 0.1, 0.5, {0.1, 0.1, 0.1, 0.1}};  // TPOT 100 ms
  rs[1] = {1, true, "", 20, 3, 0.4, 0.6, {0.1, 0.1}};            // TTFT 400 ms
  rs[2] = {1, false, "gRPC code 5: adapter 'x' not found", 0, 0, 0, 0.01, {}};
  Slo slo;
  slo.ttft_ms = 200;
  Summary s = Summarise(rs, 2.0, slo);
  EXPECT_EQ(s.completed, 2);
  EXPECT_EQ(s.failed, 1);
  EXPECT_DOUBLE_EQ(s.output_throughput, 4.0);
  EXPECT_DOUBLE_EQ(s.total_throughput, 19.0);
  EXPECT_EQ(s.good, 1);
  EXPECT_DOUBLE_EQ(s.goodput, 0.5);
  EXPECT_NEAR(s.tpot_ms.mean, 100, 1e-9);
  EXPECT_EQ(s.itl_ms.n, 6);
  ASSERT_EQ(s.first_errors.size(), 1u);
  nlohmann::json j = ToJson(s, slo);
  EXPECT_EQ(j["slo"]["ttft_ms"], 200);
  EXPECT_NE(ToTable(s, slo).find("Goodput"), std::string::npos);
}

}  // namespace
}  // namespace para::bench
