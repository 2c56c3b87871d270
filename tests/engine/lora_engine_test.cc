// Batched LoRA in the engine: a zero-B adapter is the base model exactly; LoRA, PARA and plain
// rows share steps without changing anyone's logits (contiguous prefill segments and scattered
// decode rows alike); greedy outputs in a mixed batch equal solo runs.
#include <gtest/gtest.h>

#include <random>

#include "engine/cpu/lora_kernels.h"
#include "engine/engine.h"

#include <fstream>
#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para {
namespace {

std::vector<int32_t> Ids(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + static_cast<int32_t>(rng() % 500));
  return ids;
}

std::shared_ptr<const LoraAdapter> Lora(Engine& e, uint64_t seed, const char* targets, int64_t r,
                                        bool zero_b = false) {
  tools::TinyLoraOptions o;
  o.seed = seed;
  o.r = r;
  o.targets = *tools::ParseLoraTargets(targets);
  o.zero_b = zero_b;
  const std::string dir = testing::MakeTempDir("lo_");
  EXPECT_TRUE(tools::MakeTinyLoraAdapter(dir, e.model().dir(), o).ok());
  auto a = e.LoadLoraAdapter(dir);
  EXPECT_TRUE(a.ok()) << a.status();
  return *a;
}

std::shared_ptr<const ParaAdapter> Para(Engine& e, uint64_t seed) {
  tools::TinyParaOptions o;
  o.seed = seed;
  const std::string dir = testing::MakeTempDir("pa_");
  EXPECT_TRUE(tools::MakeTinyParaAdapter(dir, e.model().dir(), o).ok());
  return *e.LoadParaAdapter(dir);
}

struct Stream {
  std::vector<int32_t> ids;
  int k;
  const ParaAdapter* para = nullptr;
  const LoraAdapter* lora = nullptr;
  KvSequence kv;
  size_t pos = 0;
  std::vector<std::vector<float>> rows;
};

void RunTogether(Engine& e, std::vector<Stream*> streams) {
  const int64_t vocab = e.config().vocab_size;
  std::vector<float> logits;
  for (;;) {
    std::vector<ForwardItem> items;
    std::vector<Stream*> in_step;
    for (Stream* s : streams) {
      if (s->pos >= s->ids.size()) continue;
      const size_t n = s->pos == 0 ? s->k : 1;
      items.push_back({&s->kv, std::span<const int32_t>(s->ids).subspan(s->pos, n), false, s->para,
                       0, s->lora});
      in_step.push_back(s);
    }
    if (items.empty()) break;
    ASSERT_TRUE(e.Forward(items, &logits).ok());
    for (size_t i = 0; i < in_step.size(); ++i) {
      in_step[i]->rows.emplace_back(logits.begin() + i * vocab, logits.begin() + (i + 1) * vocab);
      in_step[i]->pos += items[i].tokens.size();
    }
  }
  for (Stream* s : streams) e.kv_cache().Release(&s->kv);
}

float MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

TEST(LoraEngineTest, ZeroBAdapterIsExactlyTheBaseModel) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir());
  auto zero = Lora(*e, 1, "all", 8, /*zero_b=*/true);
  Stream base{Ids(15, 2), 6};
  Stream with{Ids(15, 2), 6, nullptr, zero.get()};
  RunTogether(*e, {&base});
  RunTogether(*e, {&with});
  for (size_t i = 0; i < base.rows.size(); ++i)
    EXPECT_EQ(base.rows[i], with.rows[i]) << "step " << i;
}

TEST(LoraEngineTest, LoraChangesTheLogits) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir());
  auto a = Lora(*e, 2, "q_proj,v_proj", 8);
  Stream base{Ids(10, 3), 10};
  Stream with{Ids(10, 3), 10, nullptr, a.get()};
  RunTogether(*e, {&base});
  RunTogether(*e, {&with});
  EXPECT_GT(MaxDiff(base.rows[0], with.rows[0]), 1e-2f);
}

TEST(LoraEngineTest, LoraParaAndPlainRowsShareStepsWithoutChangingLogits) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024);
  std::vector<std::shared_ptr<const LoraAdapter>> loras = {
      Lora(*e, 10, "all", 16), Lora(*e, 11, "q_proj,v_proj", 8), Lora(*e, 12, "all", 4)};
  std::vector<std::shared_ptr<const ParaAdapter>> paras = {Para(*e, 20), Para(*e, 21)};
  std::vector<Stream> solo(24), mixed(24);
  for (int i = 0; i < 24; ++i) {
    // Interleaved: LoRA adapters recur every few sequences, so their decode rows are scattered.
    const LoraAdapter* lora = i % 4 == 0 || i % 4 == 1 ? loras[i % 3].get() : nullptr;
    const ParaAdapter* para = i % 4 == 2 ? paras[i % 2].get() : nullptr;
    const auto ids = Ids(10 + (i * 7) % 17, 300 + i);
    const int k = 2 + (i * 5) % 9;
    solo[i] = {ids, k, para, lora};
    mixed[i] = {ids, k, para, lora};
  }
  for (auto& s : solo) RunTogether(*e, {&s});
  std::vector<Stream*> all;
  for (auto& s : mixed) all.push_back(&s);
  RunTogether(*e, all);
  for (int i = 0; i < 24; ++i)
    for (size_t r = 0; r < solo[i].rows.size(); ++r)
      ASSERT_LE(MaxDiff(solo[i].rows[r], mixed[i].rows[r]), 1e-5f)
          << "request " << i << " step " << r;
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST(LoraEngineTest, GreedyOutputsInAMixedBatchEqualSoloOutputs) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024);
  auto l1 = Lora(*e, 30, "all", 16), l2 = Lora(*e, 31, "q_proj,k_proj,v_proj,o_proj", 8);
  auto p1 = Para(*e, 32);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 18; ++i) {
    GenerationRequest r;
    r.prompt_ids = Ids(3 + i % 7, 700 + i);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = 10;
    r.stopping.ignore_eos = true;
    if (i % 3 == 0) r.lora = i % 2 ? l1 : l2;
    if (i % 3 == 1) r.para = p1;
    reqs.push_back(r);
  }
  auto together = testing::RunRequests(e.get(), reqs);
  for (int i = 0; i < 18; ++i) {
    auto alone = testing::RunRequests(e.get(), {reqs[i]});
    ASSERT_TRUE(together[i].ok() && alone[0].ok());
    EXPECT_EQ(together[i]->token_ids, alone[0]->token_ids) << "request " << i;
  }
}

TEST(LoraEngineTest, GroupingFindsSegmentsAndScatteredRows) {
  LoraAdapter* a = reinterpret_cast<LoraAdapter*>(0x10);
  LoraAdapter* b = reinterpret_cast<LoraAdapter*>(0x20);
  const LoraAdapter* rows[] = {a, a, a, nullptr, b, a, b, b};
  auto groups = cpu::GroupLoraRows(rows);
  ASSERT_EQ(groups.size(), 2u);
  EXPECT_EQ(groups[0].rows, (std::vector<int32_t>{0, 1, 2, 5}));
  EXPECT_FALSE(groups[0].contiguous);
  EXPECT_EQ(groups[1].rows, (std::vector<int32_t>{4, 6, 7}));
  EXPECT_FALSE(groups[1].contiguous);
  const LoraAdapter* seg[] = {nullptr, a, a, a};
  groups = cpu::GroupLoraRows(seg);
  ASSERT_EQ(groups.size(), 1u);
  EXPECT_TRUE(groups[0].contiguous);
}

TEST(LoraEngineTest, AdapterTypeIsDetectedAndOneAdapterPerRequest) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir());
  const std::string lora_dir = testing::MakeTempDir("lt_"), para_dir = testing::MakeTempDir("pt_");
  ASSERT_TRUE(tools::MakeTinyLoraAdapter(lora_dir, e->model().dir(), {}).ok());
  ASSERT_TRUE(tools::MakeTinyParaAdapter(para_dir, e->model().dir(), {}).ok());
  auto lora = e->LoadAdapter(lora_dir);
  auto para = e->LoadAdapter(para_dir);
  ASSERT_TRUE(lora.ok() && para.ok());
  EXPECT_TRUE(lora->lora && !lora->para);
  EXPECT_TRUE(para->para && !para->lora);
  std::ofstream(lora_dir + "/adapter_config.json", std::ios::trunc) << R"({"peft_type":"IA3"})";
  auto bad = e->LoadAdapter(lora_dir);
  EXPECT_NE(bad.status().message().find("peft_type is \"IA3\"; supported: \"PARA\", \"LORA\""),
            std::string::npos);
  GenerationRequest r;
  r.prompt_ids = {1, 2};
  r.para = para->para;
  r.lora = lora->lora;
  EXPECT_NE(e->ValidateRequest(r).message().find("one adapter"), std::string::npos);
}

}  // namespace
}  // namespace para
