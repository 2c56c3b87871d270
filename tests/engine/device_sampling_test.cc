// The engine's device-sampling path (engine/engine_draws.cc), checked on the CPU: a backend that
// says it samples on its device and makes the draws with the device sampler's own code
// (engine/cuda/sample_plan.h's SampleOnHost) must give every request exactly what the host
// sampler gives it (same tokens, log-probabilities, ranks, n / best_of choices), with the
// sequences' RNGs consumed the same way, in mixed batches, prompt log-probabilities and beam
// search included.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "engine/cuda/sample_plan.h"
#include "engine/engine.h"
#include "tests/engine/test_model.h"

namespace para {
namespace {

// Forwards to the CPU backend, then makes the draws on its logits with the device code.
class EmulatedDeviceSampler final : public Backend {
 public:
  explicit EmulatedDeviceSampler(std::unique_ptr<Backend> inner, int64_t vocab)
      : inner_(std::move(inner)), vocab_(vocab) {}
  absl::Status Forward(std::span<const ForwardSeq> batch, float* logits) override {
    ++host_steps;
    return inner_->Forward(batch, logits);
  }
  bool SamplesOnDevice() const override { return true; }
  absl::Status ForwardSample(std::span<const ForwardSeq> batch, std::span<const DeviceDraw> draws,
                             std::span<DeviceDrawResult> results) override {
    ++device_steps;
    std::vector<float> logits(NumLogitRows(batch) * vocab_);
    if (absl::Status st = inner_->Forward(batch, logits.data()); !st.ok()) return st;
    cuda::SamplePlan plan;
    for (const DeviceDraw& d : draws)
      plan.Add(static_cast<int32_t>(d.logit_row), *d.params, d.history, d.uniform, d.top_n,
               d.forced_token);
    const std::vector<cuda::HostSampleResult> got = cuda::SampleOnHost(plan, logits.data(), vocab_);
    for (size_t i = 0; i < draws.size(); ++i) {
      results[i].finite = got[i].out.finite != 0;
      results[i].token = got[i].out.token;
      results[i].entry = LogprobEntry{got[i].out.token, got[i].out.logprob, got[i].out.rank, {}};
      for (size_t j = 0; j < got[i].top_ids.size(); ++j)
        results[i].entry.top.push_back({got[i].top_ids[j], got[i].top_lp[j]});
    }
    draws_made += static_cast<int64_t>(draws.size());
    return absl::OkStatus();
  }
  void CopyBlock(int32_t src, int32_t dst) override { inner_->CopyBlock(src, dst); }
  const char* name() const override { return "emulated-device"; }
  const BackendStats& stats() const override { return inner_->stats(); }

  int64_t host_steps = 0, device_steps = 0, draws_made = 0;

 private:
  std::unique_ptr<Backend> inner_;
  int64_t vocab_;
};

GenerationRequest Request(int prompt_len, uint64_t seed, int32_t max_tokens) {
  GenerationRequest r;
  r.prompt_ids = testing::RandomIds(prompt_len, seed);
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  r.sampling.seed = seed;
  return r;
}

// A mix of every sampling control, n / best_of groups and logprobs.
std::vector<GenerationRequest> Mix() {
  std::vector<GenerationRequest> rs;
  GenerationRequest r = Request(7, 1, 12);
  r.sampling.temperature = 0;
  r.sampling.logprobs = 3;
  rs.push_back(r);
  r = Request(12, 2, 14);
  r.sampling.temperature = 0.9f;
  r.sampling.top_k = 20;
  r.sampling.top_p = 0.9f;
  r.sampling.logprobs = 0;
  rs.push_back(r);
  r = Request(5, 3, 10);
  r.sampling.min_p = 0.05f;
  r.sampling.repetition_penalty = 1.3f;
  r.sampling.presence_penalty = 0.5f;
  r.sampling.frequency_penalty = 0.3f;
  r.sampling.logit_bias = {{9, 4.0f}, {40, -100.0f}};
  rs.push_back(r);
  r = Request(9, 4, 8);
  r.stopping.min_tokens = 5;
  r.stopping.ignore_eos = false;
  r.sampling.temperature = 1.2f;
  rs.push_back(r);
  r = Request(6, 5, 9);
  r.sampling.temperature = 0.8f;
  r.group.n = 2;
  r.group.best_of = 3;
  r.sampling.logprobs = 2;
  rs.push_back(r);
  return rs;
}

void ExpectSameEntries(const std::vector<LogprobEntry>& a, const std::vector<LogprobEntry>& b) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(a[i].token, b[i].token) << i;
    EXPECT_NEAR(a[i].logprob, b[i].logprob, 1e-5f) << i;
    EXPECT_EQ(a[i].rank, b[i].rank) << i;
    ASSERT_EQ(a[i].top.size(), b[i].top.size()) << i;
    for (size_t j = 0; j < a[i].top.size(); ++j) {
      EXPECT_EQ(a[i].top[j].id, b[i].top[j].id) << i << " " << j;
      EXPECT_NEAR(a[i].top[j].logprob, b[i].top[j].logprob, 1e-5f) << i << " " << j;
    }
  }
}

void ExpectSameResult(const sched::RequestResult& a, const sched::RequestResult& b) {
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.finish_reason, b.finish_reason);
  EXPECT_NEAR(a.cumulative_logprob, b.cumulative_logprob, 1e-4);
  ExpectSameEntries(a.logprobs, b.logprobs);
  ASSERT_EQ(a.choices.size(), b.choices.size());
  for (size_t i = 0; i < a.choices.size(); ++i) {
    EXPECT_EQ(a.choices[i].token_ids, b.choices[i].token_ids) << "choice " << i;
    ExpectSameEntries(a.choices[i].logprobs, b.choices[i].logprobs);
  }
}

std::unique_ptr<Engine> EmulatedEngine(EmulatedDeviceSampler** backend) {
  auto e = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024);
  const int64_t vocab = e->config().vocab_size;
  e->WrapBackendForTesting([&](std::unique_ptr<Backend> inner) {
    auto b = std::make_unique<EmulatedDeviceSampler>(std::move(inner), vocab);
    *backend = b.get();
    return b;
  });
  return e;
}

TEST(DeviceSamplingTest, RequestsGetWhatTheHostSamplerGives) {
  auto host = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024);
  EmulatedDeviceSampler* backend = nullptr;
  auto device = EmulatedEngine(&backend);
  ASSERT_TRUE(device->samples_on_device());
  ASSERT_FALSE(host->samples_on_device());
  const std::vector<GenerationRequest> mix = Mix();
  auto want = testing::RunRequests(host.get(), mix);
  auto got = testing::RunRequests(device.get(), mix);
  ASSERT_EQ(want.size(), got.size());
  for (size_t i = 0; i < want.size(); ++i) {
    ASSERT_TRUE(want[i].ok()) << want[i].status();
    ASSERT_TRUE(got[i].ok()) << got[i].status();
    SCOPED_TRACE(i);
    ExpectSameResult(*want[i], *got[i]);
  }
  EXPECT_GT(backend->device_steps, 8);
  EXPECT_EQ(backend->host_steps, 0);
  EXPECT_GT(backend->draws_made, 40);
  EXPECT_EQ(device->kv_cache().pool().num_free(), device->kv_cache().pool().num_blocks());
}

// A request alone and the same request among others: the same tokens (its draws do not depend
// on the other rows of the launch).
TEST(DeviceSamplingTest, SeededRequestIsTheSameAloneAndInABatch) {
  EmulatedDeviceSampler* backend = nullptr;
  auto device = EmulatedEngine(&backend);
  const std::vector<GenerationRequest> mix = Mix();
  auto alone = testing::RunRequests(device.get(), {mix[1]});
  auto mixed = testing::RunRequests(device.get(), mix);
  ASSERT_TRUE(alone[0].ok() && mixed[1].ok());
  EXPECT_EQ(alone[0]->token_ids, mixed[1]->token_ids);
}

TEST(DeviceSamplingTest, PromptLogprobsAndBeamSearchAreComputedOnTheDevice) {
  auto host = testing::MakeEngine(testing::DefaultTinyModelDir(), 1024);
  EmulatedDeviceSampler* backend = nullptr;
  auto device = EmulatedEngine(&backend);
  GenerationRequest lp = Request(8, 11, 4);
  lp.sampling.prompt_logprobs = 2;
  GenerationRequest beam = Request(6, 12, 5);
  beam.sampling.temperature = 0;
  beam.group.beam_width = 3;
  beam.group.n = 2;
  GenerationRequest both = Request(11, 13, 6);  // prompt logprobs with sampled output logprobs
  both.sampling.prompt_logprobs = 0;
  both.sampling.logprobs = 1;
  both.sampling.temperature = 0.7f;
  auto want = testing::RunRequests(host.get(), {lp, beam, both});
  auto got = testing::RunRequests(device.get(), {lp, beam, both});
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE(i);
    ASSERT_TRUE(want[i].ok() && got[i].ok());
    ExpectSameResult(*want[i], *got[i]);
    ExpectSameEntries(want[i]->prompt_logprobs, got[i]->prompt_logprobs);
  }
  EXPECT_EQ(got[0]->prompt_logprobs.size(), lp.prompt_ids.size() - 1);
  EXPECT_EQ(got[1]->choices.size(), 2u);
  EXPECT_EQ(backend->host_steps, 0);
}

TEST(DeviceSamplingTest, TheOptionKeepsSamplingOnTheHost) {
  EngineOptions o;
  o.model_dir = testing::DefaultTinyModelDir();
  o.device = "cpu";
  o.device_sampling = false;
  auto e = Engine::Create(o);
  ASSERT_TRUE(e.ok()) << e.status();
  const int64_t vocab = (*e)->config().vocab_size;
  EmulatedDeviceSampler* backend = nullptr;
  (*e)->WrapBackendForTesting([&](std::unique_ptr<Backend> inner) {
    auto b = std::make_unique<EmulatedDeviceSampler>(std::move(inner), vocab);
    backend = b.get();
    return b;
  });
  EXPECT_FALSE((*e)->samples_on_device());
  auto got = testing::RunRequests(e->get(), {Mix()[0]});
  ASSERT_TRUE(got[0].ok());
  EXPECT_EQ(backend->device_steps, 0);
  EXPECT_GT(backend->host_steps, 0);
}

}  // namespace
}  // namespace para
