// Prefix caching through the engine loop: with it on, every request's tokens equal the same
// requests run with it off (greedy; base model, PARA and LoRA mixed in one batch; n samples and
// beam search; a pool small enough to force preemption), prompts that share a prefix really reuse
// it (hit tokens counted), the scheduler's count of used blocks equals the pool's used blocks
// minus the idle cached ones after every step, a replaced adapter's blocks are never reused, and
// PARA requests reuse only identical whole prompts.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "scheduler/engine_loop.h"
#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::sched {
namespace {

std::unique_ptr<Engine> MakeEngine(int32_t blocks, bool prefix_caching) {
  EngineOptions o;
  o.model_dir = testing::DefaultTinyModelDir();
  o.kv_cache.num_blocks = blocks;
  o.kv_cache.block_size = 4;
  o.kv_cache_dtype = DType::kF32;
  o.kv_cache.prefix_caching = prefix_caching;
  o.device = "cpu";  // the comparisons below are the CPU backend's (bitwise)
  auto e = Engine::Create(o);
  EXPECT_TRUE(e.ok()) << e.status();
  return *std::move(e);
}

std::vector<int32_t> Tokens(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) out.push_back(3 + static_cast<int32_t>(rng() % 500));
  return out;
}

GenerationRequest Greedy(std::vector<int32_t> prompt, int max_tokens) {
  GenerationRequest r;
  r.prompt_ids = std::move(prompt);
  r.sampling.temperature = 0;
  r.stopping.max_tokens = max_tokens;
  r.stopping.ignore_eos = true;
  return r;
}

struct Keep : RequestObserver {
  std::vector<DoneEvent> done;
  void OnToken(const TokenEvent&) override {}
  void OnDone(const DoneEvent& e) override { done.push_back(e); }
};

// Runs the requests (submitted in waves, so later ones find what earlier ones cached), checking
// the scheduler's count after every step. Results in submission order.
std::vector<DoneEvent> RunWaves(Engine* e, const std::vector<std::vector<GenerationRequest>>& waves,
                                int64_t* preemptions = nullptr) {
  SystemClock clock;
  SchedulerConfig config;
  config.max_batched_tokens = 48;
  EngineLoop loop(e, config, &clock);
  auto keep = std::make_shared<Keep>();
  for (const auto& wave : waves) {
    for (const auto& r : wave) {
      Submission s;
      s.request = r;
      s.observer = keep;
      EXPECT_TRUE(loop.Submit(std::move(s)).ok());
    }
    for (int i = 0; i < 10000 && loop.RunOnce(); ++i) {
      const KvCache& cache = e->kv_cache();
      const int32_t idle = cache.prefix_cache() ? cache.prefix_cache()->idle() : 0;
      EXPECT_EQ(loop.scheduler().blocks_used(), cache.pool().num_used() - idle) << "step " << i;
    }
  }
  EXPECT_EQ(e->kv_cache().available(), e->kv_cache().pool().num_blocks());
  if (preemptions != nullptr) *preemptions = loop.scheduler().stats().preemptions;
  std::sort(keep->done.begin(), keep->done.end(),
            [](const DoneEvent& a, const DoneEvent& b) { return a.handle < b.handle; });
  return keep->done;
}

std::vector<std::vector<int32_t>> TokensOf(const std::vector<DoneEvent>& done) {
  std::vector<std::vector<int32_t>> out;
  for (const auto& d : done) {
    EXPECT_TRUE(d.status.ok()) << d.status;
    if (d.choices.empty()) {
      out.push_back(d.result.token_ids);
    } else {
      for (const auto& c : d.choices) out.push_back(c.token_ids);
    }
  }
  return out;
}

TEST(PrefixCacheTest, OutputsEqualTheUncachedRunForEveryAdapterKindAndGroup) {
  const std::string para_dir = testing::MakeTempDir("pc_para_");
  const std::string lora_dir = testing::MakeTempDir("pc_lora_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(para_dir, testing::DefaultTinyModelDir(), {}).ok());
  tools::TinyLoraOptions lo;
  lo.targets = *tools::ParseLoraTargets("all");
  ASSERT_TRUE(tools::MakeTinyLoraAdapter(lora_dir, testing::DefaultTinyModelDir(), lo).ok());
  const std::vector<int32_t> system = Tokens(37, 1);  // a shared "system prompt"
  auto waves = [&](Engine& e) {
    auto para = *e.LoadParaAdapter(para_dir);
    auto lora = *e.LoadLoraAdapter(lora_dir);
    std::vector<std::vector<GenerationRequest>> w(3);
    for (int wave = 0; wave < 3; ++wave)
      for (int i = 0; i < 6; ++i) {
        std::vector<int32_t> prompt = system;
        const auto tail = Tokens(3 + i, 100 + i);  // the same tails in every wave
        prompt.insert(prompt.end(), tail.begin(), tail.end());
        GenerationRequest r = Greedy(prompt, 6);
        if (i % 3 == 1) r.para = para;
        if (i % 3 == 2) r.lora = lora;
        if (i == 3) {  // a beam search group
          r.group.beam_width = 3;
          r.group.n = 2;
        }
        w[wave].push_back(r);
      }
    return w;
  };
  auto off = MakeEngine(256, false);
  auto on = MakeEngine(256, true);
  const auto want = TokensOf(RunWaves(off.get(), waves(*off)));
  const auto got = TokensOf(RunWaves(on.get(), waves(*on)));
  EXPECT_EQ(got, want);
  const PrefixCacheStats& st = on->kv_cache().prefix_cache()->stats();
  // Waves 2 and 3 reuse the system prompt for base and LoRA requests and whole prompts for PARA.
  EXPECT_GT(st.hit_tokens, 2 * 4 * 36);
}

TEST(PrefixCacheTest, ForcedPreemptionGivesTheSameOutputs) {
  const std::vector<int32_t> system = Tokens(30, 2);
  std::vector<std::vector<GenerationRequest>> waves(2);
  for (int wave = 0; wave < 2; ++wave)
    for (int i = 0; i < 8; ++i) {
      std::vector<int32_t> prompt = system;
      const auto tail = Tokens(2 + i, 200 + i + wave);
      prompt.insert(prompt.end(), tail.begin(), tail.end());
      waves[wave].push_back(Greedy(prompt, 20 + i));
    }
  auto big = MakeEngine(512, false);
  auto small = MakeEngine(24, true);  // 96 positions: requests must be preempted
  int64_t preempted = 0;
  const auto want = TokensOf(RunWaves(big.get(), waves));
  const auto got = TokensOf(RunWaves(small.get(), waves, &preempted));
  EXPECT_GT(preempted, 0);
  EXPECT_EQ(got, want);
  EXPECT_GT(small->kv_cache().prefix_cache()->stats().hit_tokens, 0);
}

TEST(PrefixCacheTest, AReplacedAdapterIsNeverHitAndParaNeedsTheWholePrompt) {
  const std::string dir = testing::MakeTempDir("pc_replace_");
  tools::TinyLoraOptions lo;
  ASSERT_TRUE(tools::MakeTinyLoraAdapter(dir, testing::DefaultTinyModelDir(), lo).ok());
  const std::string pdir = testing::MakeTempDir("pc_para2_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(pdir, testing::DefaultTinyModelDir(), {}).ok());
  auto e = MakeEngine(256, true);
  const PrefixCache& cache = *e->kv_cache().prefix_cache();
  const std::vector<int32_t> prompt = Tokens(40, 3);
  GenerationRequest r = Greedy(prompt, 2);
  r.lora = *e->LoadLoraAdapter(dir);
  RunWaves(e.get(), {{r}});
  int64_t hits = cache.stats().hit_tokens;
  RunWaves(e.get(), {{r}});  // the same adapter object: hit
  EXPECT_GT(cache.stats().hit_tokens, hits);
  hits = cache.stats().hit_tokens;
  r.lora = *e->LoadLoraAdapter(dir);  // loaded again (a new version, as a replace makes): no hit
  RunWaves(e.get(), {{r}});
  EXPECT_EQ(cache.stats().hit_tokens, hits);

  GenerationRequest p = Greedy(prompt, 2);
  p.lora = nullptr;
  p.para = *e->LoadParaAdapter(pdir);
  RunWaves(e.get(), {{p}});
  hits = cache.stats().hit_tokens;
  GenerationRequest longer = p;
  longer.prompt_ids.push_back(7);  // same prefix, different whole prompt: no PARA reuse
  RunWaves(e.get(), {{longer}});
  EXPECT_EQ(cache.stats().hit_tokens, hits);
  RunWaves(e.get(), {{p}});  // identical whole prompt: reused
  EXPECT_GT(cache.stats().hit_tokens, hits);
}

}  // namespace
}  // namespace para::sched
