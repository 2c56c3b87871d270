// The engine on tiny random models: paged incremental decode equals recomputation, a request's
// logits do not depend on what shares its batch or on the block size, sampling with a seed is
// batch-independent, stop conditions end sequences as documented, and blocks come back.
#include "engine/engine.h"
#include "engine/device.h"

#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <random>

#include "tests/engine/test_model.h"

namespace para {
namespace {

// Logits [T, vocab] for `ids`: a prefill of the first k tokens, then one decode step per token.
std::vector<float> TeacherForced(Engine& e, const std::vector<int32_t>& ids, int k) {
  const int64_t vocab = e.config().vocab_size;
  std::vector<float> all(ids.size() * vocab), step;
  KvSequence kv;
  std::span<const int32_t> span(ids);
  ForwardItem pre{&kv, span.subspan(0, k), true};
  EXPECT_TRUE(e.Forward({&pre, 1}, &step).ok());
  std::copy(step.begin(), step.end(), all.begin());
  for (size_t i = k; i < ids.size(); ++i) {
    ForwardItem d{&kv, span.subspan(i, 1), false};
    EXPECT_TRUE(e.Forward({&d, 1}, &step).ok());
    std::copy(step.begin(), step.end(), all.begin() + i * vocab);
  }
  e.kv_cache().Release(&kv);
  return all;
}

// Suites over (something, backend): skip backends that cannot run here.
template <typename P>
class PerBackend : public ::testing::TestWithParam<std::tuple<P, std::string>> {
 protected:
  void SetUp() override {
    std::string why;
    if (!testing::DeviceRuns(device(), &why)) GTEST_SKIP() << why;
  }
  const P& param() const { return std::get<0>(this->GetParam()); }
  const std::string& device() const { return std::get<1>(this->GetParam()); }
  float same() const { return testing::SameLogitsTolerance(device()); }
};

class EngineModelsTest : public PerBackend<tools::TinyModelOptions> {};

TEST_P(EngineModelsTest, IncrementalDecodeEqualsRecompute) {
  auto e = testing::MakeEngine(testing::TinyModelDir(param()), 512, 16, DType::kF32, std::nullopt,
                               device());
  ASSERT_NE(e, nullptr);
  const auto ids = testing::RandomIds(41, 7);
  const auto full = TeacherForced(*e, ids, 41);
  const int64_t vocab = e->config().vocab_size;
  for (int k : {1, 10, 16, 17}) {
    const auto inc = TeacherForced(*e, ids, k);
    for (size_t t = 0; t < ids.size(); ++t)
      ASSERT_LE(testing::MaxAbsDiff(&full[t * vocab], &inc[t * vocab], vocab), same())
          << "k=" << k << " position " << t;
  }
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST_P(EngineModelsTest, BlockSizeDoesNotChangeLogits) {
  const auto ids = testing::RandomIds(30, 11);
  auto make = [&](int32_t block_size) {
    return testing::MakeEngine(testing::TinyModelDir(param()), 512, block_size, DType::kF32,
                               std::nullopt, device());
  };
  auto ref = TeacherForced(*make(16), ids, 12);
  for (int bs : {1, 7, 64}) {
    auto got = TeacherForced(*make(bs), ids, 12);
    EXPECT_LE(testing::MaxAbsDiff(ref.data(), got.data(), static_cast<int64_t>(ref.size())), same())
        << "block size " << bs;
  }
}

tools::TinyModelOptions Gqa() { return {}; }
tools::TinyModelOptions Mha() {
  tools::TinyModelOptions o;
  o.kv_heads = 4;
  o.seed = 3;
  return o;
}
tools::TinyModelOptions Bf16WideHead() {
  tools::TinyModelOptions o;
  o.dtype = DType::kBF16;
  o.head_dim = 32;
  o.heads = 8;
  o.kv_heads = 1;
  o.seed = 5;
  return o;
}

std::string ModelName(
    const ::testing::TestParamInfo<std::tuple<tools::TinyModelOptions, std::string>>& info) {
  static const char* kNames[] = {"Gqa", "Mha", "Bf16WideHead"};
  const size_t model = info.index / testing::TestDevices().size();  // backends vary fastest
  return std::string(kNames[model]) + (std::get<1>(info.param) == "cpu" ? "Cpu" : "Cuda");
}

INSTANTIATE_TEST_SUITE_P(Models, EngineModelsTest,
                         ::testing::Combine(::testing::Values(Gqa(), Mha(), Bf16WideHead()),
                                            testing::BackendValues()),
                         ModelName);

// Weights and KV cache types a request's batch invariance must hold for.
struct Numerics {
  std::optional<DType> weights;
  DType kv;
  const char* name;
};

class BatchInvarianceTest : public PerBackend<Numerics> {};

TEST_P(BatchInvarianceTest, LogitsDoNotDependOnTheRestOfTheBatch) {
  if (device() == "cuda" && param().weights == DType::kF16)
    GTEST_SKIP() << "the CUDA backend holds BF16 weights only (--dtype f16 is for the CPU)";
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024, 16, param().kv,
                               param().weights, device());
  ASSERT_NE(e, nullptr);
  const int64_t vocab = e->config().vocab_size;
  const auto target = testing::RandomIds(26, 100);
  const auto solo = TeacherForced(*e, target, 10);

  // The same target inside a batch of 16: 15 others of different lengths, some joining later
  // (their prefill rows then share steps with the target's decode rows).
  std::vector<std::vector<int32_t>> others;
  std::vector<int> join_step;
  for (int i = 0; i < 15; ++i) {
    others.push_back(testing::RandomIds(1 + (i * 7) % 40, 200 + i));
    join_step.push_back(i % 4);
  }
  KvSequence target_kv;
  std::vector<KvSequence> other_kv(others.size());
  std::vector<size_t> other_pos(others.size(), 0);
  std::vector<float> logits;
  size_t target_pos = 0;
  for (int step = 0; target_pos < target.size(); ++step) {
    std::vector<ForwardItem> items;
    const size_t n = step == 0 ? 10 : 1;
    items.push_back(
        {&target_kv, std::span<const int32_t>(target).subspan(target_pos, n), step == 0});
    for (size_t i = 0; i < others.size(); ++i) {
      if (step < join_step[i] || other_pos[i] >= others[i].size()) continue;
      const size_t m =
          other_pos[i] == 0 ? others[i].size() - 1 : 1;  // prefill all but one, then decode
      items.push_back(
          {&other_kv[i],
           std::span<const int32_t>(others[i]).subspan(other_pos[i], std::max<size_t>(m, 1)),
           i % 2 == 0});
      other_pos[i] += std::max<size_t>(m, 1);
    }
    ASSERT_TRUE(e->Forward(items, &logits).ok());
    // The target is the first item: its rows come first.
    for (size_t r = 0; r < (step == 0 ? n : 1); ++r) {
      const size_t pos = step == 0 ? r : target_pos;
      ASSERT_LE(testing::MaxAbsDiff(&solo[pos * vocab], &logits[r * vocab], vocab), same())
          << "position " << pos;
    }
    target_pos += n;
  }
  e->kv_cache().Release(&target_kv);
  for (auto& kv : other_kv) e->kv_cache().Release(&kv);
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

INSTANTIATE_TEST_SUITE_P(
    Dtypes, BatchInvarianceTest,
    ::testing::Combine(::testing::Values(Numerics{std::nullopt, DType::kF32, "F32"},
                                         Numerics{DType::kBF16, DType::kF32, "Bf16Weights"},
                                         Numerics{DType::kF16, DType::kF32, "F16Weights"},
                                         Numerics{DType::kBF16, DType::kF16, "Bf16WeightsF16Kv"},
                                         Numerics{DType::kF16, DType::kBF16, "F16WeightsBf16Kv"}),
                       testing::BackendValues()),
    [](const auto& info) {
      return std::string(std::get<0>(info.param).name) +
             (std::get<1>(info.param) == "cpu" ? "Cpu" : "Cuda");
    });

// Runs requests through Engine::Step until all finish; returns the sequences.
std::vector<std::unique_ptr<Sequence>> RunAll(Engine& e,
                                              const std::vector<GenerationRequest>& reqs) {
  std::vector<std::unique_ptr<Sequence>> seqs;
  for (const auto& r : reqs) {
    EXPECT_TRUE(e.ValidateRequest(r).ok()) << e.ValidateRequest(r);
    seqs.push_back(e.NewSequence(r));
  }
  std::vector<SequenceUpdate> updates;
  for (;;) {
    std::vector<Sequence*> live;
    for (auto& s : seqs)
      if (!s->finished()) live.push_back(s.get());
    if (live.empty()) break;
    updates.clear();
    EXPECT_TRUE(e.Step(live, &updates).ok());
    for (Sequence* s : live)
      if (s->finished()) e.Release(s);
  }
  return seqs;
}

GenerationRequest Request(std::vector<int32_t> ids, int max_tokens, float temperature,
                          std::optional<uint64_t> seed) {
  GenerationRequest r;
  r.prompt_ids = std::move(ids);
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  r.sampling.temperature = temperature;
  r.sampling.seed = seed;
  return r;
}

class EngineBackendTest : public testing::BackendTest {};

TEST_P(EngineBackendTest, SeededSamplingIsTheSameAloneAndInABatch) {
  auto e = Make(testing::DefaultTinyModelDir(), 1024);
  ASSERT_NE(e, nullptr);
  GenerationRequest target = Request(testing::RandomIds(9, 1), 24, 0.9f, 77);
  target.sampling.top_p = 0.95f;
  target.sampling.top_k = 50;
  auto solo = RunAll(*e, {target});
  std::vector<GenerationRequest> batch = {target};
  for (int i = 0; i < 12; ++i)
    batch.push_back(Request(testing::RandomIds(3 + i * 3, 50 + i), 10 + i, 1.0f, std::nullopt));
  auto mixed = RunAll(*e, batch);
  // On CUDA the batch moves logits by up to same(), so a late draw could flip: the first 8 tokens
  // are compared there, every token on the (batch-invariant) CPU.
  const size_t n = on_cpu() ? solo[0]->generated().size() : 8;
  EXPECT_EQ(std::vector<int32_t>(solo[0]->generated().begin(), solo[0]->generated().begin() + n),
            std::vector<int32_t>(mixed[0]->generated().begin(), mixed[0]->generated().begin() + n));
  if (on_cpu()) EXPECT_EQ(solo[0]->text(), mixed[0]->text());
  // A different seed gives a different continuation (24 tokens at temperature 0.9).
  GenerationRequest other = target;
  other.sampling.seed = 78;
  auto diff = RunAll(*e, {other});
  EXPECT_NE(std::vector<int32_t>(solo[0]->generated().begin(), solo[0]->generated().end()),
            std::vector<int32_t>(diff[0]->generated().begin(), diff[0]->generated().end()));
  EXPECT_EQ(e->kv_cache().pool().num_free(), e->kv_cache().pool().num_blocks());
}

TEST_P(EngineBackendTest, StopConditions) {
  auto e = Make(testing::DefaultTinyModelDir());
  ASSERT_NE(e, nullptr);
  const auto prompt = testing::RandomIds(6, 9);
  auto greedy = RunAll(*e, {Request(prompt, 12, 0.f, std::nullopt)});
  const std::vector<int32_t> toks(greedy[0]->generated().begin(), greedy[0]->generated().end());
  ASSERT_EQ(toks.size(), 12u);
  EXPECT_EQ(greedy[0]->finish_reason(), FinishReason::kLength);

  // Stop token id: ends at its first occurrence, the token included in the ids.
  GenerationRequest r = Request(prompt, 12, 0.f, std::nullopt);
  r.stopping.stop_token_ids = {toks[4]};
  auto stopped = RunAll(*e, {r});
  const size_t first = std::find(toks.begin(), toks.end(), toks[4]) - toks.begin();
  EXPECT_EQ(stopped[0]->num_generated(), static_cast<int32_t>(first + 1));
  EXPECT_EQ(stopped[0]->finish_reason(), FinishReason::kStop);

  // Stop string: the text ends right before it and it is never emitted.
  const std::string full = greedy[0]->text();
  ASSERT_GT(full.size(), 6u);
  const std::string stop = full.substr(full.size() / 2, 3);
  r = Request(prompt, 12, 0.f, std::nullopt);
  r.stopping.stop = {stop};
  auto by_string = RunAll(*e, {r});
  EXPECT_EQ(by_string[0]->finish_reason(), FinishReason::kStop);
  EXPECT_EQ(by_string[0]->text(), full.substr(0, full.find(stop)));
}

TEST_P(EngineBackendTest, EosEndsGenerationUnlessIgnored) {
  // A copy of the tiny model whose EOS list includes the first greedy token.
  namespace fs = std::filesystem;
  const std::string src = testing::DefaultTinyModelDir();
  const auto prompt = testing::RandomIds(5, 21);
  int32_t first_token;
  {
    auto e = Make(src);
    first_token = RunAll(*e, {Request(prompt, 1, 0.f, std::nullopt)})[0]->generated()[0];
  }
  const std::string dir = testing::MakeTempDir("eos_");
  for (const auto& f : fs::directory_iterator(src))
    fs::copy_file(f.path(), fs::path(dir) / f.path().filename());
  std::ofstream(dir + "/generation_config.json", std::ios::trunc)
      << "{\"eos_token_id\": [2, " << first_token << "]}";
  auto e = Make(dir);
  GenerationRequest r = Request(prompt, 8, 0.f, std::nullopt);
  r.stopping.ignore_eos = false;
  auto s = RunAll(*e, {r});
  EXPECT_EQ(s[0]->finish_reason(), FinishReason::kEos);
  EXPECT_EQ(s[0]->num_generated(), 1);
  EXPECT_EQ(s[0]->text(), "");  // EOS adds no text
  r.stopping.ignore_eos = true;
  s = RunAll(*e, {r});
  EXPECT_EQ(s[0]->finish_reason(), FinishReason::kLength);
  EXPECT_EQ(s[0]->num_generated(), 8);
}

TEST(EngineTest, DeviceChoiceIsCheckedAndReported) {
  EngineOptions o;
  o.model_dir = testing::DefaultTinyModelDir();
  o.kv_cache.num_blocks = 16;
  o.device = "tpu";
  auto bad = Engine::Create(o);
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("--device must be auto, cpu or cuda, got 'tpu'"),
            std::string::npos)
      << bad.status();
  o.device = "cpu";
  auto cpu = Engine::Create(o);
  ASSERT_TRUE(cpu.ok()) << cpu.status();
  EXPECT_EQ((*cpu)->device_summary().rfind("cpu (", 0), 0u) << (*cpu)->device_summary();
  std::string why;
  if (CudaDeviceCount(&why) > 0) GTEST_SKIP() << "a CUDA device is present; auto would pick it";
  EXPECT_FALSE(why.empty());
  o.device = "auto";
  auto automatic = Engine::Create(o);
  ASSERT_TRUE(automatic.ok()) << automatic.status();
  EXPECT_EQ((*automatic)->device_summary().rfind("cpu (", 0), 0u);
  o.device = "cuda";
  auto cuda = Engine::Create(o);
  ASSERT_FALSE(cuda.ok());
  EXPECT_EQ(cuda.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(cuda.status().message(), "--device cuda: " + why);
}

TEST_P(EngineBackendTest, ContextLimitEndsWithLength) {
  EngineOptions o;
  o.model_dir = testing::DefaultTinyModelDir();
  o.kv_cache.num_blocks = 64;
  o.max_model_len = 20;
  o.device = device();
  auto e = *Engine::Create(o);
  auto s = RunAll(*e, {Request(testing::RandomIds(15, 2), 100, 0.f, std::nullopt)});
  EXPECT_EQ(s[0]->finish_reason(), FinishReason::kLength);
  EXPECT_EQ(s[0]->tokens().size(), 20u);
}

TEST_P(EngineBackendTest, LogprobsMatchTheForwardPass) {
  auto e = Make(testing::DefaultTinyModelDir());
  const auto prompt = testing::RandomIds(8, 4);
  GenerationRequest r = Request(prompt, 3, 0.f, std::nullopt);
  r.sampling.logprobs = 5;
  r.sampling.prompt_logprobs = 2;
  auto s = RunAll(*e, {r});
  ASSERT_EQ(s[0]->prompt_logprobs().size(), prompt.size() - 1);
  ASSERT_EQ(s[0]->logprobs().size(), 3u);
  std::vector<int32_t> all = s[0]->tokens();
  const auto logits = TeacherForced(*e, all, static_cast<int>(all.size()));
  const int64_t vocab = e->config().vocab_size;
  // The steps computed these rows in other batch shapes than the single prefill below.
  const double tol = std::max(1e-4, 2.0 * same());
  auto log_softmax = [&](int64_t row, int32_t id) {
    const float* l = &logits[row * vocab];
    double mx = *std::max_element(l, l + vocab), z = 0;
    for (int64_t i = 0; i < vocab; ++i) z += std::exp(l[i] - mx);
    return l[id] - mx - std::log(z);
  };
  for (size_t j = 0; j + 1 < prompt.size(); ++j) {
    const auto& lp = s[0]->prompt_logprobs()[j];
    EXPECT_EQ(lp.token, prompt[j + 1]);
    EXPECT_NEAR(lp.logprob, log_softmax(j, prompt[j + 1]), tol);
    ASSERT_EQ(lp.top.size(), 2u);
    EXPECT_GE(lp.top[0].logprob, lp.top[1].logprob);
  }
  for (size_t g = 0; g < 3; ++g) {
    const auto& lp = s[0]->logprobs()[g];
    const int64_t row = static_cast<int64_t>(prompt.size() + g) - 1;
    EXPECT_EQ(lp.token, all[row + 1]);
    EXPECT_NEAR(lp.logprob, log_softmax(row, lp.token), tol);
    ASSERT_EQ(lp.top.size(), 5u);
    EXPECT_EQ(lp.top[0].id, lp.token);  // greedy: the chosen token is the most likely one
  }
}

TEST(EngineTest, ValidationRejectsBadRequests) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 8);
  GenerationRequest r = Request({}, 4, 0.f, std::nullopt);
  EXPECT_EQ(e->ValidateRequest(r).message(), "prompt is empty");
  r.prompt_ids = {1, 600};
  EXPECT_NE(e->ValidateRequest(r).message().find("prompt token 1 has id 600"), std::string::npos);
  r.prompt_ids = std::vector<int32_t>(2048, 5);
  EXPECT_NE(e->ValidateRequest(r).message().find("context limit is 2048"), std::string::npos);
  r.prompt_ids = std::vector<int32_t>(200, 5);  // 8 blocks of 16 cannot hold it
  EXPECT_NE(e->ValidateRequest(r).message().find("more KV blocks than the pool has"),
            std::string::npos);
  r.prompt_ids = {5};
  r.stopping.max_tokens = 0;
  EXPECT_NE(e->ValidateRequest(r).message().find("max_tokens"), std::string::npos);
  r.stopping.max_tokens = 1;
  r.sampling.top_p = 2;
  EXPECT_NE(e->ValidateRequest(r).message().find("top_p"), std::string::npos);
}

TEST_P(EngineBackendTest, ExhaustedPoolFailsTheStepAndChangesNothing) {
  auto e = Make(testing::DefaultTinyModelDir(), 2, 4);  // 8 positions in all
  KvSequence a, b;
  std::vector<int32_t> ids = testing::RandomIds(6, 3);
  std::vector<float> logits;
  ForwardItem ia{&a, ids, false};
  ASSERT_TRUE(e->Forward({&ia, 1}, &logits).ok());
  ForwardItem items[] = {{&a, std::span<const int32_t>(ids).subspan(0, 1), false},
                         {&b, std::span<const int32_t>(ids).subspan(0, 5), false}};
  absl::Status s = e->Forward(items, &logits);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(a.num_cached, 6);
  EXPECT_EQ(a.blocks.size(), 2u);
  EXPECT_TRUE(b.blocks.empty());
  e->kv_cache().Release(&a);
  EXPECT_EQ(e->kv_cache().pool().num_free(), 2);
}

INSTANTIATE_TEST_SUITE_P(Backends, EngineBackendTest, testing::BackendValues(),
                         testing::DeviceName);

}  // namespace
}  // namespace para
