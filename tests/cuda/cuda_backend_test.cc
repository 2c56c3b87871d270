// The CUDA backend against the CPU backend: each kernel on random inputs, cuBLASLt GEMMs, and
// whole-model logits for mixed batches (base, PARA and LoRA rows, prefill and decode) within BF16
// tolerances, with mixed-tenant batch invariance. Every test skips, printing why, when the machine
// has no CUDA device; built whenever the CUDA backend is.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/cpu/kernels.h"
#include "engine/cpu/lora_kernels.h"
#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/device_adapters.h"
#include "engine/cuda/device_tier_book.h"
#include "engine/cuda/kernels.h"
#include "engine/cuda/lt_gemm.h"
#include "engine/cuda/sample_plan.h"
#include "engine/device.h"
#include "engine/para_vectors.h"
#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::cuda {
namespace {

#define REQUIRE_CUDA_DEVICE()                                              \
  do {                                                                     \
    std::string why;                                                       \
    if (CudaDeviceCount(&why) == 0) GTEST_SKIP() << "no GPU run: " << why; \
  } while (0)

// Device copies of host vectors, freed with the test.
class DeviceArrays {
 public:
  ~DeviceArrays() {
    for (void* p : ptrs_) cudaFree(p);
  }
  template <typename T>
  T* Put(const std::vector<T>& v) {
    T* p = Alloc<T>(v.size());
    cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice);
    return p;
  }
  template <typename T>
  T* Alloc(size_t n) {
    void* p = nullptr;
    EXPECT_EQ(cudaMalloc(&p, std::max<size_t>(n, 1) * sizeof(T)), cudaSuccess);
    cudaMemset(p, 0, std::max<size_t>(n, 1) * sizeof(T));
    ptrs_.push_back(p);
    return static_cast<T*>(p);
  }
  template <typename T>
  static std::vector<T> Get(const T* p, size_t n) {
    std::vector<T> v(n);
    EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }

 private:
  std::vector<void*> ptrs_;
};

std::vector<float> Random(size_t n, uint64_t seed, float scale = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}
std::vector<uint16_t> ToBf16(const std::vector<float>& v) {
  std::vector<uint16_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = F32ToBf16(v[i]);
  return out;
}
std::vector<float> RoundBf16(const std::vector<float>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToF32(F32ToBf16(v[i]));
  return out;
}
std::vector<float> Widen(const std::vector<uint16_t>& v) {
  std::vector<float> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) out[i] = Bf16ToF32(v[i]);
  return out;
}
// |a - b| <= atol + rtol * |b| everywhere.
void ExpectClose(const std::vector<float>& a, const std::vector<float>& b, float atol, float rtol,
                 const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  int bad = 0;
  for (size_t i = 0; i < a.size() && bad < 5; ++i)
    if (!(std::fabs(a[i] - b[i]) <= atol + rtol * std::fabs(b[i]))) {
      ADD_FAILURE() << what << "[" << i << "]: " << a[i] << " vs " << b[i];
      ++bad;
    }
}

TEST(CudaKernelTest, RmsNormMatchesTheCpu) {
  REQUIRE_CUDA_DEVICE();
  const int64_t rows = 5, h = 300;
  auto x = Random(rows * h, 1), w = Random(h, 2);
  DeviceArrays d;
  uint16_t* out = d.Alloc<uint16_t>(rows * h);
  LaunchRmsNorm(d.Put(x), d.Put(w), 1e-5f, h, nullptr, rows, out, nullptr);
  std::vector<float> want(rows * h);
  for (int64_t r = 0; r < rows; ++r) cpu::RmsNorm(&x[r * h], w.data(), 1e-5f, h, &want[r * h]);
  ExpectClose(Widen(DeviceArrays::Get(out, rows * h)), want, 1e-6f, 8e-3f, "rmsnorm");
}

TEST(CudaKernelTest, LtGemmMatchesAHostProductForManyShapes) {
  REQUIRE_CUDA_DEVICE();
  auto g = LtGemm::Create(32 << 20);
  ASSERT_TRUE(g.ok()) << g.status();
  for (int64_t m : {1, 3, 32, 130})
    for (auto [n, k] : {std::pair<int64_t, int64_t>{64, 64}, {200, 96}, {512, 1000}}) {
      auto x = RoundBf16(Random(m * k, m + n)), w = RoundBf16(Random(n * k, k));
      auto c0 = Random(m * n, 7);
      DeviceArrays d;
      float* c = d.Put(c0);
      for (float beta : {0.f, 1.f}) {
        cudaMemcpy(c, c0.data(), c0.size() * 4, cudaMemcpyHostToDevice);
        ASSERT_TRUE(
            (*g)->Run(m, n, k, d.Put(ToBf16(x)), k, d.Put(ToBf16(w)), beta, c, n, nullptr).ok());
        std::vector<float> want(m * n);
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = beta * c0[i * n + j];
            for (int64_t t = 0; t < k; ++t) s += double(x[i * k + t]) * w[j * k + t];
            want[i * n + j] = static_cast<float>(s);
          }
        ExpectClose(DeviceArrays::Get(c, m * n), want, 1e-3f, 1e-4f, "gemm");
      }
    }
  EXPECT_GT((*g)->cached_plans(), 0u);
}

// A device pool with one sequence's K/V random in BF16, for attention against a host reference.
TEST(CudaKernelTest, SplitAttentionMatchesAHostReferenceForDecodeAndPrefill) {
  REQUIRE_CUDA_DEVICE();
  const int32_t nq = 4, nkv = 2, hd = 80, bs = 16, layers = 2, layer = 1;
  const KvGeometry geo{layers, nkv, hd, bs};
  const int32_t ctx = 150, blocks_n = (ctx + bs - 1) / bs;
  std::vector<int32_t> blocks(blocks_n);
  for (int32_t i = 0; i < blocks_n; ++i) blocks[i] = (i * 7 + 3) % blocks_n;  // shuffled
  const int64_t pool_elems = KvBlockElements(geo) * blocks_n;
  auto pool_f = RoundBf16(Random(pool_elems, 11));
  // Rows: a prefill of the last 5 positions and a decode row at the end of a shorter context.
  const std::vector<int32_t> pos = {145, 146, 147, 148, 149, 60};
  const int32_t rows = static_cast<int32_t>(pos.size());
  const int64_t qkv_n = (nq + 2 * nkv) * hd;
  auto qkv = Random(rows * qkv_n, 12);
  DeviceArrays d;
  StepRows sr;
  sr.rows = rows;
  sr.pos = d.Put(pos);
  sr.row_seq = d.Put(std::vector<int32_t>(rows, 0));
  sr.seq_blocks = d.Put(std::vector<int32_t>{0});
  sr.blocks = d.Put(blocks);
  sr.seq_vp = d.Put(std::vector<int32_t>{-1});
  PoolView pv;
  pv.base = d.Put(ToBf16(pool_f));
  pv.geo = geo;
  pv.type = KvType::kBF16;
  std::vector<int32_t> all_rows(rows);
  for (int32_t r = 0; r < rows; ++r) all_rows[r] = r;
  // Split-K over every row (with and without splitting), then the prefill tiles for the first
  // five rows (one sequence's prompt rows, tiles of 2 and 3 rows) with split-K for the last.
  for (int variant = 0; variant < 3; ++variant) {
    const int64_t max_partials = variant == 1 ? int64_t{rows * nq} : int64_t{1} << 16;
    uint16_t* out = d.Alloc<uint16_t>(rows * nq * hd);
    const float* qkv_dev = d.Put(qkv);
    if (variant < 2) {
      const SplitPlan plan = PlanSplits(rows * nq, ctx, 4096, max_partials, 16);
      if (variant == 0) EXPECT_GT(plan.splits, 1);
      float* partials = d.Alloc<float>(rows * nq * plan.splits * (hd + 2));
      LaunchAttention(qkv_dev, nq, nkv, hd, sr, d.Put(all_rows), rows, pv, layer, plan, partials,
                      out, nullptr);
    } else {
      const SplitPlan plan = PlanSplits(nq, 61, 4096, 1 << 16, 16);
      float* partials = d.Alloc<float>(nq * plan.splits * (hd + 2));
      LaunchAttention(qkv_dev, nq, nkv, hd, sr, d.Put(std::vector<int32_t>{5}), 1, pv, layer, plan,
                      partials, out, nullptr);
      const std::vector<AttnTile> tiles = {{0, 2}, {2, 3}};
      ASSERT_LE(3 * (nq / nkv), kPrefillWarps * kPrefillPairs);
      LaunchPrefillAttention(qkv_dev, nq, nkv, hd, sr, d.Put(tiles), 2, pv, layer, out, nullptr);
    }
    std::vector<float> want(rows * nq * hd, 0.f);
    for (int32_t r = 0; r < rows; ++r)
      for (int32_t h = 0; h < nq; ++h) {
        const int32_t g = h / (nq / nkv);
        std::vector<double> s(pos[r] + 1);
        double mx = -1e30;
        for (int32_t j = 0; j <= pos[r]; ++j) {
          const int64_t ko = KvRowOffset(geo, blocks.data(), j, layer, 0, g);
          double dot = 0;
          for (int32_t e = 0; e < hd; ++e) dot += qkv[r * qkv_n + h * hd + e] * pool_f[ko + e];
          s[j] = dot / std::sqrt(double(hd));
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (double& v : s) sum += (v = std::exp(v - mx));
        for (int32_t j = 0; j <= pos[r]; ++j) {
          const int64_t vo = KvRowOffset(geo, blocks.data(), j, layer, 1, g);
          for (int32_t e = 0; e < hd; ++e)
            want[(r * nq + h) * hd + e] += static_cast<float>(s[j] / sum * pool_f[vo + e]);
        }
      }
    ExpectClose(Widen(DeviceArrays::Get(out, rows * nq * hd)), want, 2e-3f, 8e-3f, "attention");
  }
}

TEST(CudaKernelTest, QkvEpilogueScalesRopesAndWritesTheCache) {
  REQUIRE_CUDA_DEVICE();
  const int32_t nq = 4, nkv = 2, hd = 16, bs = 4, layers = 2, layer = 1, half = hd / 2;
  const KvGeometry geo{layers, nkv, hd, bs};
  const std::vector<int32_t> pos = {0, 5, 6}, blocks = {2, 0};
  const int32_t rows = 3;
  const int64_t qkv_n = (nq + 2 * nkv) * hd;
  auto qkv = Random(rows * qkv_n, 21);
  // PARA vectors for the rows' sequence live in page 1 (pages of the pool's blocks).
  const int64_t page_floats = KvBlockElements(geo);  // F32 cache: a block is a page of floats
  std::vector<float> pool_host(page_floats * 3, 0.f);
  auto lq = Random(nq * hd, 22), lv = Random(nkv * hd, 23);
  std::copy(lq.begin(), lq.end(), pool_host.begin() + page_floats + 0);
  std::copy(lv.begin(), lv.end(), pool_host.begin() + page_floats + 100);
  std::vector<int32_t> slot_page(layers * 3, 0);
  std::vector<int64_t> slot_offset(layers * 3, 0);
  slot_offset[layer * 3 + 1] = 100;
  std::vector<float> cs(rows * half), sn(rows * half);
  for (int32_t r = 0; r < rows; ++r)
    for (int32_t i = 0; i < half; ++i) {
      cs[r * half + i] = std::cos(pos[r] * std::pow(10000.0, -2.0 * i / hd));
      sn[r * half + i] = std::sin(pos[r] * std::pow(10000.0, -2.0 * i / hd));
    }
  DeviceArrays d;
  StepRows sr;
  sr.rows = rows;
  sr.pos = d.Put(pos);
  sr.row_seq = d.Put(std::vector<int32_t>(rows, 0));
  sr.seq_blocks = d.Put(std::vector<int32_t>{0});
  sr.blocks = d.Put(blocks);
  sr.seq_vp = d.Put(std::vector<int32_t>{0});
  sr.vector_pages = d.Put(std::vector<int32_t>{1});
  PoolView pv;
  float* pool = d.Put(pool_host);
  pv.base = pool;
  pv.geo = geo;
  pv.type = KvType::kF32;
  pv.page_floats = page_floats;
  pv.slot_page = d.Put(slot_page);
  pv.slot_offset = d.Put(slot_offset);
  float* qkv_dev = d.Put(qkv);
  LaunchQkvEpilogue(qkv_dev, nq, nkv, hd, d.Put(cs), d.Put(sn), sr, pv, layer, nullptr);
  auto got_qkv = DeviceArrays::Get(qkv_dev, rows * qkv_n);
  auto got_pool = DeviceArrays::Get(pool, pool_host.size());
  for (int32_t r = 0; r < rows; ++r) {
    std::vector<float> row(qkv.begin() + r * qkv_n, qkv.begin() + (r + 1) * qkv_n);
    float* q = row.data();
    float* k = q + nq * hd;
    float* v = k + nkv * hd;
    cpu::QkvRowEpilogue(q, k, v, nq, nkv, hd, &cs[r * half], &sn[r * half], lq.data(), lv.data());
    std::vector<float> got_q(got_qkv.begin() + r * qkv_n, got_qkv.begin() + r * qkv_n + nq * hd);
    ExpectClose(got_q, std::vector<float>(q, q + nq * hd), 1e-5f, 1e-5f, "q");
    for (int32_t g = 0; g < nkv; ++g)
      for (int kv = 0; kv < 2; ++kv) {
        const int64_t o = KvRowOffset(geo, blocks.data(), pos[r], layer, kv, g);
        std::vector<float> got(got_pool.begin() + o, got_pool.begin() + o + hd);
        const float* want = (kv == 0 ? k : v) + g * hd;
        ExpectClose(got, std::vector<float>(want, want + hd), 1e-5f, 1e-5f, kv ? "v" : "k");
      }
  }
}

TEST(CudaKernelTest, SwiGluMatchesTheCpuWithAndWithoutScaling) {
  REQUIRE_CUDA_DEVICE();
  const int64_t ffn = 300, rows = 2;
  auto gu = Random(rows * 2 * ffn, 31), lu = Random(ffn, 32);
  DeviceArrays d;
  StepRows sr;
  sr.rows = rows;
  sr.row_seq = d.Put(std::vector<int32_t>{0, 1});
  sr.seq_vp = d.Put(std::vector<int32_t>{-1, 0});
  sr.vector_pages = d.Put(std::vector<int32_t>{0});
  PoolView pv;
  pv.base = d.Put(lu);
  pv.page_floats = ffn;
  pv.slot_page = d.Put(std::vector<int32_t>{0, 0, 0});
  pv.slot_offset = d.Put(std::vector<int64_t>{0, 0, 0});
  uint16_t* act = d.Alloc<uint16_t>(rows * ffn);
  LaunchSwiGlu(d.Put(gu), ffn, sr, pv, 0, act, nullptr);
  std::vector<float> want(rows * ffn);
  cpu::SwiGluRow(&gu[0], &gu[ffn], nullptr, ffn, &want[0]);
  cpu::SwiGluRow(&gu[2 * ffn], &gu[3 * ffn], lu.data(), ffn, &want[ffn]);
  ExpectClose(Widen(DeviceArrays::Get(act, rows * ffn)), want, 1e-6f, 8e-3f, "swiglu");
}

TEST(CudaKernelTest, GreedyFindsTheFirstMaximumAndItsLogprob) {
  REQUIRE_CUDA_DEVICE();
  const int32_t rows = 3;
  const int64_t vocab = 5000;
  auto logits = Random(rows * vocab, 41, 3.f);
  logits[1 * vocab + 17] = 50.f;
  logits[1 * vocab + 4000] = 50.f;  // a tie: the lower id wins
  DeviceArrays d;
  int32_t* tok = d.Alloc<int32_t>(rows);
  float* lp = d.Alloc<float>(rows);
  LaunchGreedy(d.Put(logits), rows, vocab, tok, lp, nullptr);
  auto got_t = DeviceArrays::Get(tok, rows);
  auto got_l = DeviceArrays::Get(lp, rows);
  for (int32_t r = 0; r < rows; ++r) {
    const float* x = &logits[r * vocab];
    const int32_t best = static_cast<int32_t>(std::max_element(x, x + vocab) - x);
    double sum = 0;
    for (int64_t i = 0; i < vocab; ++i) sum += std::exp(double(x[i]) - x[best]);
    EXPECT_EQ(got_t[r], best);
    EXPECT_NEAR(got_l[r], -std::log(sum), 1e-4);
  }
  EXPECT_EQ(got_t[1], 17);
}

// The device sampler kernel on rows of random logits (with ties), every sampling control, against
// the host sampler given the same uniform numbers: the same tokens, and the same log-probabilities,
// ranks and top alternatives.
TEST(CudaKernelTest, DeviceSamplerMatchesTheHostSampler) {
  REQUIRE_CUDA_DEVICE();
  for (int64_t vocab : {int64_t{300}, int64_t{5000}, int64_t{49152}}) {
    std::vector<SamplingParams> cases(8);
    cases[0].temperature = 0;
    cases[1].temperature = 0.7f;
    cases[2].top_k = 50;
    cases[3].top_p = 0.9f;
    cases[4].top_p = 0.999f;
    cases[4].temperature = 4.0f;  // the largest 1024 do not hold the mass: a full sort
    cases[5].min_p = 0.03f;
    cases[6].top_k = 2000;
    cases[6].top_p = 0.95f;
    cases[7].repetition_penalty = 1.4f;
    cases[7].presence_penalty = 0.5f;
    cases[7].frequency_penalty = 0.5f;
    cases[7].logit_bias = {{3, 5.0f}, {3, 1.0f}, {11, -100.0f}};
    const std::vector<int32_t> penalized = {1, 3, 8, 42, 77};
    const std::vector<std::pair<int32_t, int32_t>> counts = {{3, 2}, {42, 1}};
    const std::vector<int32_t> suppressed = {2};
    const SamplingHistory history{penalized, counts, suppressed};
    const int32_t rows = 6;
    std::vector<float> logits = Random(rows * vocab, 91 + vocab, 3.f);
    for (int64_t i = 0; i < rows * vocab; i += 3) logits[i] = std::round(logits[i] * 4) / 4;
    SamplePlan plan;
    std::vector<int32_t> want;
    std::vector<LogprobEntry> want_lp;
    SamplerScratch scratch;
    for (const SamplingParams& p : cases)
      for (int32_t r = 0; r < rows; ++r) {
        const std::span<const float> x(&logits[r * vocab], vocab);
        std::mt19937_64 a(r * 13 + 1), b(r * 13 + 1);
        want.push_back(SampleToken(x, p, history, &a, &scratch));
        want_lp.push_back(ComputeLogprobs(x, want.back(), 4, &scratch));
        plan.Add(r, p, history, DrawIsRandom(p) ? UniformDouble(&b) : 0.0, 4);
      }
    const int32_t draws = static_cast<int32_t>(plan.descs.size());
    const int64_t cap = SortCapacity(vocab);
    DeviceArrays d;
    SampleLaunch l{d.Put(logits),
                   vocab,
                   d.Put(plan.descs),
                   d.Put(plan.edit_ids),
                   d.Put(plan.edits),
                   d.Alloc<float>(draws * vocab),
                   d.Alloc<uint32_t>(draws * cap),
                   d.Alloc<int32_t>(draws * cap),
                   d.Alloc<SampleRowOut>(draws),
                   d.Alloc<int32_t>(draws * 4),
                   d.Alloc<float>(draws * 4),
                   4};
    LaunchSample(l, 0, draws, nullptr);
    ASSERT_EQ(cudaGetLastError(), cudaSuccess);
    auto out = DeviceArrays::Get(l.out, draws);
    auto top_ids = DeviceArrays::Get(l.top_ids, draws * 4);
    auto top_lp = DeviceArrays::Get(l.top_lp, draws * 4);
    for (int32_t i = 0; i < draws; ++i) {
      SCOPED_TRACE(std::to_string(vocab) + " draw " + std::to_string(i));
      EXPECT_EQ(out[i].finite, 1);
      EXPECT_EQ(out[i].token, want[i]);
      EXPECT_NEAR(out[i].logprob, want_lp[i].logprob, 1e-5f);
      EXPECT_EQ(out[i].rank, want_lp[i].rank);
      for (int j = 0; j < 4; ++j) {
        EXPECT_EQ(top_ids[i * 4 + j], want_lp[i].top[j].id);
        EXPECT_NEAR(top_lp[i * 4 + j], want_lp[i].top[j].logprob, 1e-5f);
      }
    }
  }
}

// Engines on the tiny model: CPU (F32) and CUDA (BF16 weights, F32 KV cache).
struct Engines {
  std::unique_ptr<Engine> cpu, gpu;
};
Engines MakeEngines(const std::string& dir) {
  return {testing::MakeEngine(dir, 1024, 16, DType::kF32, std::nullopt, "cpu"),
          testing::MakeEngine(dir, 1024, 16, DType::kF32, std::nullopt, "cuda")};
}

TEST(CudaKernelTest, ParaGeneratorAndLoraKernelsMatchTheCpu) {
  REQUIRE_CUDA_DEVICE();
  const std::string& dir = testing::DefaultTinyModelDir();
  auto e = testing::MakeEngine(dir, 64, 16, DType::kF32, std::nullopt, "cpu");
  const ModelConfig& c = e->config();
  const int64_t h = c.hidden_size;
  // PARA: the generator for two sequences (last and mean pooling) from random layer inputs.
  for (ParaPooler pooler : {ParaPooler::kLast, ParaPooler::kMean}) {
    tools::TinyParaOptions po;
    po.pooler = pooler;
    po.seed = 5;
    const std::string pdir = testing::MakeTempDir("pa_");
    ASSERT_TRUE(tools::MakeTinyParaAdapter(pdir, dir, po).ok());
    auto para = e->LoadParaAdapter(pdir);
    ASSERT_TRUE(para.ok()) << para.status();
    const int32_t prompt = 9;
    auto rows = Random(prompt * h, 51);
    const int64_t d_out = c.q_dim() + c.kv_dim() + c.intermediate_size;
    std::vector<float> want(d_out), scratch(h + (*para)->config().r);
    float* out[3] = {&want[0], &want[c.q_dim()], &want[c.q_dim() + c.kv_dim()]};
    GenerateParaLayerVectors(**para, c, 1, rows.data(), prompt, h, scratch.data(), out);
    DeviceAdapters adapters(1 << 30);
    auto layers = adapters.Para(**para);
    ASSERT_TRUE(layers.ok());
    DeviceArrays d;
    const int64_t page_floats = d_out;  // one page holds all three segments of layer 1
    std::vector<int32_t> slot_page(c.num_hidden_layers * 3, 0);
    std::vector<int64_t> slot_offset(c.num_hidden_layers * 3, 0);
    slot_offset[3 + 1] = c.q_dim();
    slot_offset[3 + 2] = c.q_dim() + c.kv_dim();
    PoolView pv;
    float* pages = d.Alloc<float>(2 * page_floats);
    pv.base = pages;
    pv.page_floats = page_floats;
    pv.slot_page = d.Put(slot_page);
    pv.slot_offset = d.Put(slot_offset);
    StepRows sr;
    sr.seq_vp = d.Put(std::vector<int32_t>{0});
    sr.vector_pages = d.Put(std::vector<int32_t>{1});
    const int32_t r = static_cast<int32_t>((*para)->config().r);
    ParaGenItem item{(**layers)[1].down,
                     (**layers)[1].up,
                     (**layers)[1].bias,
                     r,
                     pooler == ParaPooler::kMean ? 1 : 0,
                     static_cast<int32_t>((*para)->config().activation),
                     0,
                     prompt,
                     0};
    LaunchParaGenerate(d.Put(std::vector<ParaGenItem>{item}), 1, r, d.Put(rows), h, c.q_dim(),
                       c.kv_dim(), c.intermediate_size, sr, pv, 1, d.Alloc<float>(h),
                       d.Alloc<float>(r), nullptr);
    auto got = DeviceArrays::Get(pages + page_floats, page_floats);
    ExpectClose(got, want, 1e-5f, 1e-4f, "para vectors");
  }
  // LoRA: the q/v site and the down site for 11 rows of two adapters, tiled as a step would.
  std::vector<std::shared_ptr<const LoraAdapter>> loras;
  for (int i = 0; i < 2; ++i) {
    tools::TinyLoraOptions lo;
    lo.seed = 60 + i;
    lo.r = 4 + 4 * i;
    lo.targets = {LoraTarget::kQ, LoraTarget::kV, LoraTarget::kDown};
    const std::string ldir = testing::MakeTempDir("lo_");
    ASSERT_TRUE(tools::MakeTinyLoraAdapter(ldir, dir, lo).ok());
    auto a = e->LoadLoraAdapter(ldir);
    ASSERT_TRUE(a.ok()) << a.status();
    loras.push_back(*a);
  }
  const int32_t rows = 11;
  std::vector<const LoraAdapter*> row_adapter(rows);
  for (int32_t r = 0; r < rows; ++r)
    row_adapter[r] = r < 6 ? loras[0].get() : (r % 2 ? loras[1].get() : nullptr);
  auto groups = cpu::GroupLoraRows(row_adapter);
  DeviceAdapters adapters(1 << 30);
  std::vector<const LoraSiteDesc*> tables;
  std::vector<int32_t> row_index;
  std::vector<LoraTile> tiles;
  for (size_t g = 0; g < groups.size(); ++g) {
    auto t = adapters.Lora(*groups[g].adapter);
    ASSERT_TRUE(t.ok()) << t.status();
    tables.push_back(*t);
    const int32_t first = static_cast<int32_t>(row_index.size());
    row_index.insert(row_index.end(), groups[g].rows.begin(), groups[g].rows.end());
    tiles.resize(tiles.size() + CeilDiv(groups[g].rows.size(), 4));
    const int32_t n =
        TileGroup(static_cast<int32_t>(g), first, static_cast<int32_t>(groups[g].rows.size()), 4,
                  &tiles[tiles.size() - CeilDiv(groups[g].rows.size(), 4)]);
    EXPECT_GT(n, 0);
  }
  ThreadPool pool(2);
  for (LoraSite site : {LoraSite::kQkv, LoraSite::kDown}) {
    const int64_t in = site == LoraSite::kQkv ? h : c.intermediate_size;
    const int64_t ncols = site == LoraSite::kQkv ? c.q_dim() + 2 * c.kv_dim() : h;
    auto x = RoundBf16(Random(rows * in, 70));
    auto y0 = Random(rows * ncols, 71);
    std::vector<float> want = y0;
    cpu::LoraScratch scratch;
    cpu::ApplyLoraSite(&pool, groups, 1, site, x.data(), in, want.data(), ncols, &scratch);
    DeviceArrays d;
    float* y = d.Put(y0);
    float* t = d.Alloc<float>(rows * 3 * 64);
    const auto* tbl = d.Put(tables);
    const int32_t index = kNumLoraSites + static_cast<int32_t>(site);  // layer 1
    LaunchLoraShrink(d.Put(ToBf16(x)), in, d.Put(tiles), static_cast<int32_t>(tiles.size()),
                     d.Put(row_index), tbl, index, 3 * 8, t, 3 * 64, nullptr);
    LaunchLoraExpand(t, 3 * 64, d.Put(tiles), static_cast<int32_t>(tiles.size()), d.Put(row_index),
                     tbl, index, static_cast<int32_t>(ncols), y, ncols, nullptr);
    ExpectClose(DeviceArrays::Get(y, rows * ncols), want, 1e-3f, 1e-2f, "lora");
  }
}

// Logits of the same teacher-forced streams on both backends.
void RunStreams(Engine& e, std::vector<testing::Stream>& s) {
  std::vector<testing::Stream*> p;
  for (auto& x : s) p.push_back(&x);
  testing::RunTogether(e, p);
}
float MaxRowDiff(const testing::Stream& a, const testing::Stream& b) {
  float m = 0;
  for (size_t i = 0; i < a.rows.size() && i < b.rows.size(); ++i)
    m = std::max(m, testing::MaxAbsDiff(a.rows[i], b.rows[i]));
  return m;
}

TEST(CudaModelTest, MixedTenantLogitsMatchTheCpuBackendAndDoNotDependOnTheBatch) {
  REQUIRE_CUDA_DEVICE();
  const std::string& dir = testing::DefaultTinyModelDir();
  Engines e = MakeEngines(dir);
  ASSERT_TRUE(e.cpu && e.gpu);
  EXPECT_NE(e.gpu->device_summary().find("cuda"), std::string::npos) << e.gpu->device_summary();
  std::vector<std::shared_ptr<const ParaAdapter>> paras;
  std::vector<std::shared_ptr<const LoraAdapter>> loras;
  for (int i = 0; i < 4; ++i) {
    tools::TinyParaOptions po;
    po.seed = 80 + i;
    po.pooler = i % 2 ? ParaPooler::kMean : ParaPooler::kLast;
    std::string pdir = testing::MakeTempDir("pa_");
    ASSERT_TRUE(tools::MakeTinyParaAdapter(pdir, dir, po).ok());
    paras.push_back(*e.cpu->LoadParaAdapter(pdir));
    tools::TinyLoraOptions lo;
    lo.seed = 90 + i;
    lo.targets = {LoraTarget::kQ,    LoraTarget::kK,  LoraTarget::kV,   LoraTarget::kO,
                  LoraTarget::kGate, LoraTarget::kUp, LoraTarget::kDown};
    std::string ldir = testing::MakeTempDir("lo_");
    ASSERT_TRUE(tools::MakeTinyLoraAdapter(ldir, dir, lo).ok());
    loras.push_back(*e.cpu->LoadLoraAdapter(ldir));
  }
  // 24 streams: base, PARA and LoRA tenants, prompts of 1..40 tokens, 6 decode steps each.
  auto make = [&](int i) {
    testing::Stream s{testing::RandomIds(7 + (i * 13) % 40, 100 + i, 503), 1 + (i * 13) % 40,
                      nullptr, nullptr};
    if (i % 3 == 1) s.para = paras[i % 4].get();
    if (i % 3 == 2) s.lora = loras[i % 4].get();
    return s;
  };
  std::vector<testing::Stream> cpu_all, gpu_all;
  for (int i = 0; i < 24; ++i) {
    cpu_all.push_back(make(i));
    gpu_all.push_back(make(i));
  }
  RunStreams(*e.cpu, cpu_all);
  RunStreams(*e.gpu, gpu_all);
  for (int i = 0; i < 24; ++i) {
    ASSERT_EQ(cpu_all[i].rows.size(), gpu_all[i].rows.size());
    // BF16 weights and GEMM inputs against F32: logits of a 2-layer model agree to ~1e-2.
    EXPECT_LT(MaxRowDiff(gpu_all[i], cpu_all[i]), 5e-2f) << "stream " << i;
  }
  // Each stream alone on the GPU gives what it gave inside the mixed batch.
  for (int i : {0, 1, 2, 5, 13, 23}) {
    std::vector<testing::Stream> solo = {make(i)};
    RunStreams(*e.gpu, solo);
    EXPECT_LT(MaxRowDiff(solo[0], gpu_all[i]), 2e-3f) << "stream " << i;
  }
  EXPECT_EQ(e.gpu->backend_stats().para_generator_runs,
            e.cpu->backend_stats().para_generator_runs + 2);
}

TEST(CudaModelTest, GreedyGenerationAgreesWithTheCpuOnTheFirstTokens) {
  REQUIRE_CUDA_DEVICE();
  Engines e = MakeEngines(testing::DefaultTinyModelDir());
  ASSERT_TRUE(e.cpu && e.gpu);
  std::vector<GenerationRequest> reqs(8);
  for (int i = 0; i < 8; ++i) {
    reqs[i].prompt_ids = testing::RandomIds(5 + i * 3, 300 + i, 503);
    reqs[i].sampling.temperature = 0;
    reqs[i].stopping.max_tokens = 4;
    reqs[i].stopping.ignore_eos = true;
  }
  auto cpu = testing::RunRequests(e.cpu.get(), reqs);
  auto gpu = testing::RunRequests(e.gpu.get(), reqs);
  int same = 0;
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(cpu[i].ok() && gpu[i].ok());
    same += cpu[i]->token_ids.at(0) == gpu[i]->token_ids.at(0);
  }
  // Near-ties may flip under BF16; most first tokens agree.
  EXPECT_GE(same, 6);
}

// Whole requests on the CUDA backend, sampled on the device and (option off) on the host from the
// copied logits: the same tokens and log-probabilities, and no logits copy on the device path.
TEST(CudaModelTest, DeviceSamplingGivesWhatHostSamplingGives) {
  REQUIRE_CUDA_DEVICE();
  auto make = [](bool on_device) {
    EngineOptions o;
    o.model_dir = testing::DefaultTinyModelDir();
    o.device = "cuda";
    o.kv_cache_dtype = DType::kF32;
    o.kv_cache.num_blocks = 1024;
    o.device_sampling = on_device;
    return Engine::Create(o);
  };
  auto device = make(true), host = make(false);
  ASSERT_TRUE(device.ok() && host.ok());
  ASSERT_TRUE((*device)->samples_on_device());
  ASSERT_FALSE((*host)->samples_on_device());
  std::vector<GenerationRequest> reqs(7);
  for (int i = 0; i < 7; ++i) {
    reqs[i].prompt_ids = testing::RandomIds(4 + i * 5, 700 + i, 503);
    reqs[i].stopping.max_tokens = 12;
    reqs[i].stopping.ignore_eos = true;
    reqs[i].sampling.seed = 40 + i;
    reqs[i].sampling.logprobs = 2;
  }
  reqs[0].sampling.temperature = 0;
  reqs[1].sampling.top_k = 10;
  reqs[2].sampling.top_p = 0.8f;
  reqs[3].sampling.min_p = 0.1f;
  reqs[4].sampling.repetition_penalty = 1.5f;
  reqs[1].sampling.prompt_logprobs = 1;
  reqs[5].group.n = 2;
  reqs[5].group.best_of = 3;
  reqs[6].sampling.temperature = 0;
  reqs[6].group.beam_width = 3;
  reqs[6].group.n = 2;
  auto a = testing::RunRequests(device->get(), reqs);
  auto b = testing::RunRequests(host->get(), reqs);
  for (int i = 0; i < 7; ++i) {
    ASSERT_TRUE(a[i].ok() && b[i].ok());
    EXPECT_EQ(a[i]->token_ids, b[i]->token_ids) << i;
    ASSERT_EQ(a[i]->prompt_logprobs.size(), b[i]->prompt_logprobs.size());
    for (size_t t = 0; t < a[i]->prompt_logprobs.size(); ++t)
      EXPECT_NEAR(a[i]->prompt_logprobs[t].logprob, b[i]->prompt_logprobs[t].logprob, 1e-4f);
    ASSERT_EQ(a[i]->logprobs.size(), b[i]->logprobs.size());
    for (size_t t = 0; t < a[i]->logprobs.size(); ++t)
      EXPECT_NEAR(a[i]->logprobs[t].logprob, b[i]->logprobs[t].logprob, 1e-4f) << i << " " << t;
  }
}

// The adapter store's device tier on CUDA: promoted adapters are uploaded on the side stream at
// the next step and used from there (the same logits as an upload on first use); demoted ones are
// freed at the next step, whether or not a step used them; a use after demotion uploads again.
TEST(CudaModelTest, TheDeviceTierUploadsPromotedAdaptersAndFreesDemotedOnes) {
  REQUIRE_CUDA_DEVICE();
  const std::string& dir = testing::DefaultTinyModelDir();
  auto first_use = testing::MakeEngine(dir, 1024, 16, DType::kF32, std::nullopt, "cuda");
  auto tiered = testing::MakeEngine(dir, 1024, 16, DType::kF32, std::nullopt, "cuda");
  ASSERT_TRUE(first_use && tiered);
  auto* book = dynamic_cast<DeviceTierBook*>(tiered->adapter_device_tier());
  ASSERT_NE(book, nullptr) << "the CUDA backend has a device tier";
  tools::TinyParaOptions po;
  po.seed = 71;
  const std::string pdir = testing::MakeTempDir("tier_pa_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(pdir, dir, po).ok());
  tools::TinyLoraOptions lo;
  lo.seed = 72;
  lo.targets = {LoraTarget::kQ, LoraTarget::kV, LoraTarget::kDown};
  const std::string ldir = testing::MakeTempDir("tier_lo_");
  ASSERT_TRUE(tools::MakeTinyLoraAdapter(ldir, dir, lo).ok());
  AdapterRef para{*tiered->LoadParaAdapter(pdir), nullptr};
  AdapterRef lora{nullptr, *tiered->LoadLoraAdapter(ldir)};
  AdapterRef idle{nullptr, *tiered->LoadLoraAdapter(ldir)};  // promoted, never used
  auto streams = [&] {
    std::vector<testing::Stream> s;
    for (int i = 0; i < 3; ++i)
      s.push_back({testing::RandomIds(9 + 5 * i, 700 + i, 503), 4 + i, nullptr, nullptr});
    s[1].para = para.para.get();
    s[2].lora = lora.lora.get();
    return s;
  };
  std::vector<testing::Stream> want = streams(), got = streams();
  RunStreams(*first_use, want);
  tiered->adapter_device_tier()->Promote(para);
  tiered->adapter_device_tier()->Promote(lora);
  tiered->adapter_device_tier()->Promote(idle);
  RunStreams(*tiered, got);
  for (int i = 0; i < 3; ++i) EXPECT_LT(MaxRowDiff(got[i], want[i]), 1e-5f) << "stream " << i;
  EXPECT_EQ(book->promoted(), 3u);
  EXPECT_FALSE(book->uploading(para.uid())) << "the steps that used it waited for its upload";
  EXPECT_FALSE(book->uploading(lora.uid()));
  EXPECT_TRUE(book->uploading(idle.uid())) << "no step used it";
  // Demoted: freed at the next step (the idle one after waiting for its upload); a later use of
  // the LoRA adapter uploads it on first use and gives the same logits.
  for (const AdapterRef* a : {&para, &lora, &idle}) tiered->adapter_device_tier()->Demote(a->uid());
  std::vector<testing::Stream> again = streams();
  RunStreams(*tiered, again);
  EXPECT_EQ(book->promoted(), 0u);
  EXPECT_EQ(book->upload_failures(), 0);
  for (int i = 0; i < 3; ++i) EXPECT_LT(MaxRowDiff(again[i], want[i]), 1e-5f) << "stream " << i;
}

TEST(CudaModelTest, DeviceCudaIsRefusedClearlyWithoutADevice) {
  std::string why;
  if (CudaDeviceCount(&why) > 0) GTEST_SKIP() << "a device is present";
  EngineOptions o;
  o.model_dir = testing::DefaultTinyModelDir();
  o.device = "cuda";
  auto e = Engine::Create(o);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(e.status().message().find("--device cuda: no CUDA device"), std::string::npos)
      << e.status();
}

}  // namespace
}  // namespace para::cuda
