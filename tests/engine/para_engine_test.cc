// PARA in the engine: identity adapters are exactly the base model; a request's logits do not
// change when 31 others with 16 different adapters (and none) share its batches; the generator
// runs once per request; vector pages are pool blocks that come back.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "engine/engine.h"
#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"

namespace para {
namespace {

std::shared_ptr<const ParaAdapter> MakeAdapter(Engine& e, uint64_t seed, ParaPooler pooler,
                                               bool identity = false) {
  tools::TinyParaOptions o;
  o.seed = seed;
  o.pooler = pooler;
  o.identity = identity;
  o.r = 4 + static_cast<int64_t>(seed % 3) * 4;
  const std::string dir = testing::MakeTempDir("pa_");
  EXPECT_TRUE(tools::MakeTinyParaAdapter(dir, e.model().dir(), o).ok());
  auto a = e.LoadParaAdapter(dir);
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}

class ParaEngineTest : public testing::BackendTest {};

TEST_P(ParaEngineTest, IdentityAdapterGivesExactlyTheBaseLogits) {
  auto e = Make(testing::DefaultTinyModelDir());
  for (ParaPooler pooler : {ParaPooler::kLast, ParaPooler::kMean}) {
    auto identity = MakeAdapter(*e, 1, pooler, /*identity=*/true);
    testing::Stream base{testing::RandomIds(20, 3, 503), 7, nullptr, {}};
    testing::Stream with{testing::RandomIds(20, 3, 503), 7, identity.get(), {}};
    testing::RunTogether(*e, {&base});
    testing::RunTogether(*e, {&with});
    ASSERT_EQ(base.rows.size(), with.rows.size());
    for (size_t i = 0; i < base.rows.size(); ++i)
      if (on_cpu()) {
        EXPECT_EQ(base.rows[i], with.rows[i]) << "step " << i;  // exactly
      } else {
        EXPECT_LE(testing::MaxAbsDiff(base.rows[i], with.rows[i]), same()) << "step " << i;
      }
  }
}

TEST_P(ParaEngineTest, AdapterChangesTheLogits) {
  auto e = Make(testing::DefaultTinyModelDir());
  auto a = MakeAdapter(*e, 2, ParaPooler::kLast);
  testing::Stream base{testing::RandomIds(12, 4, 503), 12, nullptr, {}};
  testing::Stream with{testing::RandomIds(12, 4, 503), 12, a.get(), {}};
  testing::RunTogether(*e, {&base});
  testing::RunTogether(*e, {&with});
  EXPECT_GT(testing::MaxAbsDiff(base.rows[0], with.rows[0]), 1e-2f);
}

TEST_P(ParaEngineTest, MixedBatchOf32With16AdaptersEqualsSoloRuns) {
  auto e = Make(testing::DefaultTinyModelDir(), 1024);
  std::vector<std::shared_ptr<const ParaAdapter>> adapters;
  for (int i = 0; i < 16; ++i)
    adapters.push_back(MakeAdapter(*e, 100 + i, i % 2 ? ParaPooler::kMean : ParaPooler::kLast));
  std::vector<testing::Stream> solo(32), mixed(32);
  for (int i = 0; i < 32; ++i) {
    // Requests 0..23 use adapters (16 distinct, some shared); 24..31 use none.
    const ParaAdapter* a = i < 24 ? adapters[i % 16].get() : nullptr;
    const auto ids = testing::RandomIds(6 + (i * 5) % 23 + 8, 1000 + i, 503);
    const int k = 3 + (i * 7) % 11;
    solo[i] = {ids, k, a, {}};
    mixed[i] = {ids, k, a, {}};
  }
  for (auto& s : solo) testing::RunTogether(*e, {&s});
  std::vector<testing::Stream*> all;
  for (auto& s : mixed) all.push_back(&s);
  testing::RunTogether(*e, all);
  for (int i = 0; i < 32; ++i) {
    ASSERT_EQ(solo[i].rows.size(), mixed[i].rows.size());
    for (size_t r = 0; r < solo[i].rows.size(); ++r)
      ASSERT_LE(testing::MaxAbsDiff(solo[i].rows[r], mixed[i].rows[r]), same())
          << "request " << i << " step " << r;
  }
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST_P(ParaEngineTest, GreedyOutputsInAMixedBatchEqualSoloOutputs) {
  auto e = Make(testing::DefaultTinyModelDir(), 1024);
  std::vector<std::shared_ptr<const ParaAdapter>> adapters;
  for (int i = 0; i < 16; ++i)
    adapters.push_back(MakeAdapter(*e, 300 + i, i % 2 ? ParaPooler::kMean : ParaPooler::kLast));
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 32; ++i) {
    GenerationRequest r;
    r.prompt_ids = testing::RandomIds(4 + i % 9, 500 + i, 503);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = 12;
    r.stopping.ignore_eos = true;
    if (i % 3 != 2) r.para = adapters[i % 16];
    reqs.push_back(r);
  }
  auto together = testing::RunRequests(e.get(), reqs);
  for (int i = 0; i < 32; ++i) {
    auto alone = testing::RunRequests(e.get(), {reqs[i]});
    ASSERT_TRUE(together[i].ok() && alone[0].ok());
    EXPECT_EQ(together[i]->token_ids, alone[0]->token_ids) << "request " << i;
  }
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST_P(ParaEngineTest, GeneratorRunsOncePerRequestNotAtDecode) {
  auto e = Make(testing::DefaultTinyModelDir());
  auto a = MakeAdapter(*e, 7, ParaPooler::kMean);
  std::vector<GenerationRequest> reqs(3);
  for (int i = 0; i < 3; ++i) {
    reqs[i].prompt_ids = testing::RandomIds(5 + i, 40 + i, 503);
    reqs[i].stopping.max_tokens = 10;
    reqs[i].stopping.ignore_eos = true;
    reqs[i].para = a;
  }
  reqs[2].para = nullptr;  // a base-model request never runs it
  const BackendStats before = e->backend_stats();
  auto results = testing::RunRequests(e.get(), reqs);
  const BackendStats after = e->backend_stats();
  EXPECT_EQ(after.forward_calls - before.forward_calls, 10);  // one prefill step + 9 decode steps
  EXPECT_EQ(after.para_generator_runs - before.para_generator_runs, 2);
}

TEST_P(ParaEngineTest, VectorPagesAreCountedAndReturned) {
  auto e = Make(testing::DefaultTinyModelDir(), 64, 16);
  auto a = MakeAdapter(*e, 9, ParaPooler::kLast);
  KvCache& cache = e->kv_cache();
  ASSERT_TRUE(cache.para_layout().ok());
  const int32_t pages = cache.para_pages();
  ASSERT_GE(pages, 1);
  GenerationRequest r;
  r.prompt_ids = testing::RandomIds(20, 1, 503);
  r.stopping.max_tokens = 5;
  const int32_t base_blocks = e->MaxBlocksFor(r);
  r.para = a;
  EXPECT_EQ(e->MaxBlocksFor(r), base_blocks + pages);

  KvSequence kv;
  std::vector<float> logits;
  ForwardItem item{&kv, r.prompt_ids, false, a.get()};
  ASSERT_TRUE(e->Forward({&item, 1}, &logits).ok());
  EXPECT_EQ(static_cast<int32_t>(kv.vector_pages.size()), pages);
  EXPECT_EQ(cache.pool().num_used(), 2 + pages);  // 20 positions = 2 blocks of 16, plus vectors

  // A fork shares the vector pages and full blocks; the partial last block is copied.
  auto child = e->ForkKv(kv);
  ASSERT_TRUE(child.ok());
  EXPECT_EQ(child->vector_pages, kv.vector_pages);
  EXPECT_EQ(cache.pool().refcount(kv.vector_pages[0]), 2);
  EXPECT_EQ(child->blocks[0], kv.blocks[0]);
  EXPECT_NE(child->blocks[1], kv.blocks[1]);
  EXPECT_EQ(cache.pool().num_used(), 3 + pages);
  cache.Release(&kv);
  EXPECT_EQ(cache.pool().num_used(), 2 + pages);  // the child still holds its share
  cache.Release(&*child);
  EXPECT_EQ(cache.pool().num_free(), cache.pool().num_blocks());
}

TEST_P(ParaEngineTest, ForkedSequenceContinuesWithTheParentsVectors) {
  auto e = Make(testing::DefaultTinyModelDir(), 64, 4);
  auto a = MakeAdapter(*e, 11, ParaPooler::kLast);
  const auto ids = testing::RandomIds(11, 5, 503);
  // Reference: one sequence through all 11 tokens.
  testing::Stream whole{ids, 9, a.get(), {}};
  testing::RunTogether(*e, {&whole});
  // Parent prefills 9 tokens; a fork decodes the last two.
  KvSequence parent;
  std::vector<float> logits;
  ForwardItem pre{&parent, std::span<const int32_t>(ids).subspan(0, 9), false, a.get()};
  ASSERT_TRUE(e->Forward({&pre, 1}, &logits).ok());
  auto child = e->ForkKv(parent);
  ASSERT_TRUE(child.ok());
  for (int i = 9; i < 11; ++i) {
    ForwardItem d{&*child, std::span<const int32_t>(ids).subspan(i, 1), false, a.get()};
    ASSERT_TRUE(e->Forward({&d, 1}, &logits).ok());
    EXPECT_LE(testing::MaxAbsDiff(logits, whole.rows[i - 8]), same());
  }
  EXPECT_EQ(e->backend_stats().para_generator_runs, 2);  // the reference run and the parent only
  e->kv_cache().Release(&parent);
  e->kv_cache().Release(&*child);
}

TEST_P(ParaEngineTest, BlocksTooSmallForVectorsRefuseAdapterRequests) {
  tools::TinyModelOptions o;
  o.ffn = 256;  // a page of one position holds 2 layers * 2 * 2 kv heads * 16 = 128 floats
  auto e = Make(testing::TinyModelDir(o), 64, 1);
  EXPECT_FALSE(e->kv_cache().para_layout().ok());
  auto a = MakeAdapter(*e, 1, ParaPooler::kLast);
  GenerationRequest r;
  r.prompt_ids = {1, 2, 3};
  r.para = a;
  absl::Status s = e->ValidateRequest(r);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("--block-size"), std::string::npos);
  r.para = nullptr;
  EXPECT_TRUE(e->ValidateRequest(r).ok());
}

INSTANTIATE_TEST_SUITE_P(Backends, ParaEngineTest, testing::BackendValues(), testing::DeviceName);

}  // namespace
}  // namespace para
