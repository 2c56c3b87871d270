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

class LoraEngineTest : public testing::BackendTest {};

TEST_P(LoraEngineTest, ZeroBAdapterIsExactlyTheBaseModel) {
  auto e = Make(testing::DefaultTinyModelDir());
  auto zero = Lora(*e, 1, "all", 8, /*zero_b=*/true);
  testing::Stream base{testing::RandomIds(15, 2, 503), 6};
  testing::Stream with{testing::RandomIds(15, 2, 503), 6, nullptr, zero.get()};
  testing::RunTogether(*e, {&base});
  testing::RunTogether(*e, {&with});
  for (size_t i = 0; i < base.rows.size(); ++i)
    EXPECT_EQ(base.rows[i], with.rows[i]) << "step " << i;
}

TEST_P(LoraEngineTest, LoraChangesTheLogits) {
  auto e = Make(testing::DefaultTinyModelDir());
  auto a = Lora(*e, 2, "q_proj,v_proj", 8);
  testing::Stream base{testing::RandomIds(10, 3, 503), 10};
  testing::Stream with{testing::RandomIds(10, 3, 503), 10, nullptr, a.get()};
  testing::RunTogether(*e, {&base});
  testing::RunTogether(*e, {&with});
  EXPECT_GT(testing::MaxAbsDiff(base.rows[0], with.rows[0]), 1e-2f);
}

TEST_P(LoraEngineTest, LoraParaAndPlainRowsShareStepsWithoutChangingLogits) {
  auto e = Make(testing::DefaultTinyModelDir(), 1024);
  std::vector<std::shared_ptr<const LoraAdapter>> loras = {
      Lora(*e, 10, "all", 16), Lora(*e, 11, "q_proj,v_proj", 8), Lora(*e, 12, "all", 4)};
  std::vector<std::shared_ptr<const ParaAdapter>> paras = {Para(*e, 20), Para(*e, 21)};
  std::vector<testing::Stream> solo(24), mixed(24);
  for (int i = 0; i < 24; ++i) {
    // Interleaved: LoRA adapters recur every few sequences, so their decode rows are scattered.
    const LoraAdapter* lora = i % 4 == 0 || i % 4 == 1 ? loras[i % 3].get() : nullptr;
    const ParaAdapter* para = i % 4 == 2 ? paras[i % 2].get() : nullptr;
    const auto ids = testing::RandomIds(10 + (i * 7) % 17, 300 + i, 503);
    const int k = 2 + (i * 5) % 9;
    solo[i] = {ids, k, para, lora};
    mixed[i] = {ids, k, para, lora};
  }
  for (auto& s : solo) testing::RunTogether(*e, {&s});
  std::vector<testing::Stream*> all;
  for (auto& s : mixed) all.push_back(&s);
  testing::RunTogether(*e, all);
  for (int i = 0; i < 24; ++i)
    for (size_t r = 0; r < solo[i].rows.size(); ++r)
      ASSERT_LE(testing::MaxAbsDiff(solo[i].rows[r], mixed[i].rows[r]), same())
          << "request " << i << " step " << r;
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST_P(LoraEngineTest, GreedyOutputsInAMixedBatchEqualSoloOutputs) {
  auto e = Make(testing::DefaultTinyModelDir(), 1024);
  auto l1 = Lora(*e, 30, "all", 16), l2 = Lora(*e, 31, "q_proj,k_proj,v_proj,o_proj", 8);
  auto p1 = Para(*e, 32);
  std::vector<GenerationRequest> reqs;
  for (int i = 0; i < 18; ++i) {
    GenerationRequest r;
    r.prompt_ids = testing::RandomIds(3 + i % 7, 700 + i, 503);
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

TEST_P(LoraEngineTest, GroupingFindsSegmentsAndScatteredRows) {
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

TEST_P(LoraEngineTest, AdapterTypeIsDetectedAndOneAdapterPerRequest) {
  auto e = Make(testing::DefaultTinyModelDir());
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

INSTANTIATE_TEST_SUITE_P(Backends, LoraEngineTest, testing::BackendValues(), testing::DeviceName);

}  // namespace
}  // namespace para
