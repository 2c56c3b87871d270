// para-bench-kernels (Google Benchmark): the CPU kernels of a TinyLlama-1.1B-shaped layer against
// this machine's measured peaks (SGEMM GFLOP/s on a 1024³ product, and read bandwidth).
//
//   BM_Projection/m/para    the fused QKV projection (one GEMM) and its row epilogue, plain
//                           (para=0) or with PARA's per-row q/v scaling (para=1)
//   BM_LoraShrinkExpand/m/r batched LoRA (rank r, all seven projections' QKV site) over m decode
//                           rows with m distinct adapters
//   BM_DecodeStep/b/ctx     a whole engine decode step at batch b and context ctx on --model
//                           (default: a 4-layer model of TinyLlama's width written to a temp dir)
//   BM_Attention/b/ctx      attention's share of a decode step: step(ctx) - step(16), per the KV
//                           bytes read (differential; the rest of the step is the same)
//   BM_Linear16Layer/isa/type/m
//                           one layer's projections (QKV, O, gate+up, down) with gemm16's
//                           LinearParts on weights in their stored dtype (type 0 F32, 1 F16,
//                           2 BF16; isa 0 AVX2, 1 AVX-512), rotating through >= 1 GiB of copies
//   BM_Linear16LmHead/isa/type/m  the LM head [32000 x 2048] the same way
//   BM_Linear16Hot/isa/type/m  the kernels alone: one thread, 96 x 2048 weights that stay in L2
//   BM_LinearF32Layer/m     the same layer with today's F32 path (cpu::Linear, OpenBLAS)
//
// Counters: GFLOP/s and GB/s (as rates), and pct_gemm_peak / pct_bw_peak; the gemm16 cases add
// pct_fma_peak, against an FMA loop of their ISA on all the pool's threads, and pct_stream_bw,
// against MeasureStreamBandwidth (bench/bandwidth.h).
//
// --gemm16-compare[=ROUNDS] runs instead an interleaved comparison of gemm16 and the F32 path on
// one layer at m = 1, 8, 32, 512 (see Gemm16Compare), which is what to quote on a shared machine.
// Run with
// --benchmark_filter=... as usual; --model DIR picks the decode model.
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>

#include "absl/strings/str_cat.h"
#include "bench/bandwidth.h"
#include "bench/tinyllama_layer.h"
#include "benchmark/benchmark.h"
#include "engine/aligned_buffer.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/gemm16.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/lora_kernels.h"
#include "engine/dtype.h"
#include "engine/engine.h"
#include "engine/lora_adapter.h"
#include "engine/model_config.h"
#include "engine/thread_pool.h"
#include "tools/tiny_lora.h"
#include "tools/tiny_model.h"

namespace para::bench {
namespace {

double g_gemm_peak = 0;      // GFLOP/s
double g_bw_peak = 0;        // GB/s
double g_stream_bw = 0;      // GB/s, MeasureStreamBandwidth
double g_fma_peak[2] = {};   // GFLOP/s of an FMA loop on all threads: [0] AVX2, [1] AVX-512
double g_fma_peak1[2] = {};  // the same on one thread
std::string g_model_dir;
std::string g_tmp;

ThreadPool& Pool() {
  static ThreadPool pool(0);
  return pool;
}

void Fill(AlignedBuffer& b, float scale, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> d(-scale, scale);
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = d(rng);
}

void SetRates(benchmark::State& state, double flops, double bytes) {
  const double iters = static_cast<double>(state.iterations());
  state.counters["GFLOP/s"] = benchmark::Counter(flops * iters / 1e9, benchmark::Counter::kIsRate);
  state.counters["GB/s"] = benchmark::Counter(bytes * iters / 1e9, benchmark::Counter::kIsRate);
}

// ---- Peaks ------------------------------------------------------------------------------------

// FMA loops of 12 independent chains (enough to cover the latency): one core's FMA throughput.
__attribute__((target("avx512f"))) float FmaLoopAvx512(int64_t iters) {
  __m512 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm512_set1_ps(static_cast<float>(i));
  const __m512 a = _mm512_set1_ps(0.9999f), b = _mm512_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 12; ++i) acc[0] = _mm512_add_ps(acc[0], acc[i]);
  float out[16];
  _mm512_storeu_ps(out, acc[0]);
  return out[0];
}

__attribute__((target("avx2,fma"))) float FmaLoopAvx2(int64_t iters) {
  __m256 acc[12];
  for (int i = 0; i < 12; ++i) acc[i] = _mm256_set1_ps(static_cast<float>(i));
  const __m256 a = _mm256_set1_ps(0.9999f), b = _mm256_set1_ps(1e-7f);
  for (int64_t it = 0; it < iters; ++it)
    for (int i = 0; i < 12; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  for (int i = 1; i < 12; ++i) acc[0] = _mm256_add_ps(acc[0], acc[i]);
  float out[8];
  _mm256_storeu_ps(out, acc[0]);
  return out[0];
}

// GFLOP/s of the FMA loop of `isa` on all the threads of `pool` at once, best of 20 runs of
// ~10 ms (the machine is shared; the best run is the one nobody else disturbed).
double MeasureFmaPeak(ThreadPool& pool, cpu::CpuIsa isa) {
  if (!cpu::CpuIsaSupported(isa)) return 0;
  const bool wide = isa == cpu::CpuIsa::kAvx512;
  const int64_t iters = 1'500'000;
  const double flops_per_thread = 2.0 * 12 * (wide ? 16 : 8) * iters;
  std::vector<float> sink(pool.num_threads());
  double best = 0;
  for (int rep = 0; rep < 20; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    pool.RunOnAll([&](int t) { sink[t] = wide ? FmaLoopAvx512(iters) : FmaLoopAvx2(iters); });
    const double secs =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, flops_per_thread * pool.num_threads() / secs / 1e9);
  }
  return best;
}

void MeasurePeaks() {
  const int64_t n = 1024;
  AlignedBuffer a(n * n), b(n * n), c(n * n);
  Fill(a, 1, 1);
  Fill(b, 1, 2);
  double best = 1e9;
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = std::chrono::steady_clock::now();
    cpu::Linear(&Pool(), n, n, n, a.data(), n, b.data(), 0.f, c.data(), n);
    best = std::min(best,
                    std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  g_gemm_peak = 2.0 * n * n * n / best / 1e9;
  g_bw_peak = MeasureReadBandwidth(Pool(), size_t{1} << 30);
  g_stream_bw = MeasureStreamBandwidth(Pool(), size_t{1} << 30);
  ThreadPool one(1);
  for (int i = 0; i < 2; ++i) {
    const auto isa = i ? cpu::CpuIsa::kAvx512 : cpu::CpuIsa::kAvx2;
    g_fma_peak[i] = MeasureFmaPeak(Pool(), isa);
    g_fma_peak1[i] = MeasureFmaPeak(one, isa);
  }
  std::fprintf(stderr,
               "peaks: SGEMM %.1f GFLOP/s (1024^3, %d threads), read bandwidth %.1f GB/s (8 "
               "row streams per thread: %.1f GB/s), FMA loop %.1f GFLOP/s AVX2, %.1f GFLOP/s "
               "AVX-512 (one thread: %.1f, %.1f)\n",
               g_gemm_peak, Pool().num_threads(), g_bw_peak, g_stream_bw, g_fma_peak[0],
               g_fma_peak[1], g_fma_peak1[0], g_fma_peak1[1]);
}

// ---- Projection with PARA's per-row scaling ---------------------------------------------------

void BM_Projection(benchmark::State& state) {
  const int64_t m = state.range(0);
  const bool para = state.range(1) != 0;
  // Enough copies of the weights that they stream from memory, not from the (large) L3 cache.
  const int copies = static_cast<int>((512ll << 20) / (kQkv * kHidden * 4)) + 1;
  std::vector<AlignedBuffer> ws;
  for (int i = 0; i < copies; ++i) {
    ws.emplace_back(kQkv * kHidden);
    Fill(ws.back(), 0.02f, 3 + i);
  }
  AlignedBuffer x(m * kHidden), y(m * kQkv), cache(m * 2 * kKv), vec(kQ + kKv);
  int next = 0;
  Fill(x, 1.0f, 4);
  Fill(vec, 0.2f, 5);
  for (size_t i = 0; i < vec.size(); ++i) vec.data()[i] += 1.0f;
  float cos[kHeadDim / 2], sin[kHeadDim / 2];
  for (int i = 0; i < kHeadDim / 2; ++i) cos[i] = 1.0f, sin[i] = 0.0f;
  for (auto _ : state) {
    const AlignedBuffer& w = ws[next++ % copies];
    cpu::Linear(&Pool(), m, kQkv, kHidden, x.data(), kHidden, w.data(), 0.f, y.data(), kQkv);
    Pool().ParallelFor(m, [&](int64_t lo, int64_t hi) {
      for (int64_t r = lo; r < hi; ++r) {
        float* q = y.data() + r * kQkv;
        cpu::QkvRowEpilogue(q, q + kQ, q + kQ + kKv, kHeads, kKvHeads, kHeadDim, cos, sin,
                            para ? vec.data() : nullptr, para ? vec.data() + kQ : nullptr);
        cpu::StoreRow(DType::kF32, q + kQ, 2 * kKv, cache.data() + r * 2 * kKv);
      }
    });
    benchmark::ClobberMemory();
  }
  const double flops = 2.0 * m * kQkv * kHidden, bytes = 4.0 * kQkv * kHidden;
  SetRates(state, flops, bytes);
}
BENCHMARK(BM_Projection)->ArgsProduct({{1, 8, 32}, {0, 1}})->ArgNames({"m", "para"})->UseRealTime();

// ---- Batched LoRA shrink/expand ---------------------------------------------------------------

std::vector<std::shared_ptr<const LoraAdapter>> Loras(int64_t rank, int64_t n) {
  const std::string model_dir = g_tmp + "/layer-model";
  if (!std::filesystem::exists(model_dir + "/config.json")) {
    std::filesystem::create_directories(model_dir);
    std::ofstream(model_dir + "/config.json") << ModelConfigToJson(LayerConfig());
  }
  std::vector<std::shared_ptr<const LoraAdapter>> out;
  for (int64_t i = 0; i < n; ++i) {
    const std::string path = absl::StrCat(g_tmp, "/lora-r", rank, "-", i);
    if (!std::filesystem::exists(path + "/adapter_config.json")) {
      tools::TinyLoraOptions o;
      o.r = rank;
      o.alpha = 2.0 * rank;
      o.targets = *tools::ParseLoraTargets("all");
      o.seed = static_cast<uint64_t>(i);
      if (!tools::MakeTinyLoraAdapter(path, model_dir, o).ok()) return {};
    }
    auto a = LoraAdapter::Load(path, LayerConfig(), 64);
    if (!a.ok()) return {};
    out.push_back(*std::move(a));
  }
  return out;
}

void BM_LoraShrinkExpand(benchmark::State& state) {
  const int64_t m = state.range(0), rank = state.range(1);
  auto loras = Loras(rank, m);
  if (static_cast<int64_t>(loras.size()) != m) return state.SkipWithError("cannot make adapters");
  std::vector<const LoraAdapter*> rows(m);
  for (int64_t r = 0; r < m; ++r) rows[r] = loras[r].get();
  const std::vector<cpu::LoraRowGroup> groups = cpu::GroupLoraRows(rows);
  AlignedBuffer x(m * kHidden), y(m * kQkv);
  Fill(x, 1.0f, 6);
  cpu::LoraScratch scratch;
  for (auto _ : state) {
    cpu::ApplyLoraSite(&Pool(), groups, 0, LoraSite::kQkv, x.data(), kHidden, y.data(), kQkv,
                       &scratch);
    benchmark::ClobberMemory();
  }
  // Per row: shrink over q, k, v (3 A matrices of r x hidden), expand into q, k, v.
  const double flops = 2.0 * m * rank * (3.0 * kHidden + kQkv);
  const double bytes = 4.0 * m * rank * (3.0 * kHidden + kQkv);  // every row reads its own A and B
  SetRates(state, flops, bytes);
}
BENCHMARK(BM_LoraShrinkExpand)
    ->ArgsProduct({{1, 8, 32}, {8, 16, 64}})
    ->ArgNames({"m", "rank"})
    ->UseRealTime();

// ---- 16-bit weights: gemm16 against the F32 OpenBLAS path ---------------------------------

// The four projections of a TinyLlama layer: [rows, cols] and beta (O and down add the residual).
struct Proj {
  int64_t rows, cols;
  float beta;
};
constexpr Proj kLayer[] = {
    {kQkv, kHidden, 0.f}, {kHidden, kHidden, 1.f}, {2 * kFfn, kHidden, 0.f}, {kHidden, kFfn, 1.f}};
constexpr int64_t kVocab = 32000;

int64_t LayerWeights() {
  int64_t n = 0;
  for (const Proj& p : kLayer) n += p.rows * p.cols;
  return n;
}

// Weights of `per_copy` elements of `type`, enough copies to make >= 1 GiB so that they stream
// from memory, with random finite values. Kept between cases of the same shape and type.
struct WeightCopies {
  cpu::WType type;
  int64_t per_copy = 0;
  std::vector<AlignedBuffer> copies;
};

WeightCopies& Copies(cpu::WType type, int64_t per_copy) {
  static WeightCopies cache;
  if (cache.type == type && cache.per_copy == per_copy && !cache.copies.empty()) return cache;
  cache.copies.clear();
  cache.type = type;
  cache.per_copy = per_copy;
  const size_t bytes = per_copy * cpu::WTypeSize(type);
  const int n = static_cast<int>(((size_t{1} << 30) + bytes - 1) / bytes);
  uint32_t state = 11;  // xorshift: a GiB of values in a second
  for (int c = 0; c < n; ++c) {
    cache.copies.emplace_back((bytes + 3) / 4);
    auto* w16 = reinterpret_cast<uint16_t*>(cache.copies.back().data());
    float* w32 = cache.copies.back().data();
    for (int64_t i = 0; i < per_copy; ++i) {
      state ^= state << 13;
      state ^= state >> 17;
      state ^= state << 5;
      const float v = (static_cast<int>(state % 2001) - 1000) * 2e-5f;
      if (type == cpu::WType::kF32) {
        w32[i] = v;
      } else {
        w16[i] = type == cpu::WType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
      }
    }
  }
  return cache;
}

void SetWeightRates(benchmark::State& state, double flops, double bytes, cpu::CpuIsa isa) {
  SetRates(state, flops, bytes);
  state.counters["fma_peak"] = g_fma_peak[isa == cpu::CpuIsa::kAvx512 ? 1 : 0];
}

// One layer (lm_head = false) or the LM head, m rows, on gemm16.
void RunLinear16(benchmark::State& state, bool lm_head) {
  const auto isa = state.range(0) ? cpu::CpuIsa::kAvx512 : cpu::CpuIsa::kAvx2;
  const auto type = static_cast<cpu::WType>(state.range(1));
  const int64_t m = state.range(2);
  if (!cpu::SetGemm16Isa(isa)) return state.SkipWithError("this CPU lacks the ISA");
  const Proj head[] = {{kVocab, kHidden, 0.f}};
  const std::span<const Proj> projs = lm_head ? std::span<const Proj>(head) : kLayer;
  int64_t per_copy = 0, max_rows = 0, max_cols = 0;
  for (const Proj& p : projs) {
    per_copy += p.rows * p.cols;
    max_rows = std::max(max_rows, p.rows);
    max_cols = std::max(max_cols, p.cols);
  }
  WeightCopies& w = Copies(type, per_copy);
  AlignedBuffer x(m * max_cols), y(m * max_rows);
  Fill(x, 1.0f, 4);
  Fill(y, 1.0f, 5);
  cpu::LinearScratch scratch;
  const size_t es = cpu::WTypeSize(type);
  size_t next = 0;
  for (auto _ : state) {
    const auto* base = reinterpret_cast<const uint8_t*>(w.copies[next++ % w.copies.size()].data());
    for (const Proj& p : projs) {
      const cpu::WeightView v{base, type, p.rows, p.cols};
      cpu::LinearParts(&Pool(), m, {&v, 1}, x.data(), p.cols, p.beta, y.data(), p.rows, &scratch);
      base += p.rows * p.cols * es;
    }
    benchmark::ClobberMemory();
  }
  SetWeightRates(state, 2.0 * m * per_copy, static_cast<double>(per_copy * es), isa);
  cpu::SetGemm16Isa(cpu::CpuIsaSupported(cpu::CpuIsa::kAvx512) ? cpu::CpuIsa::kAvx512
                                                               : cpu::CpuIsa::kAvx2);
}

void BM_Linear16Layer(benchmark::State& state) { RunLinear16(state, false); }
void BM_Linear16LmHead(benchmark::State& state) { RunLinear16(state, true); }
BENCHMARK(BM_Linear16Layer)
    ->ArgsProduct({{1, 0}, {2, 1, 0}, {1, 8, 32, 512}})
    ->ArgNames({"isa", "type", "m"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();
BENCHMARK(BM_Linear16LmHead)
    ->ArgsProduct({{1, 0}, {2, 1}, {1, 8, 32}})
    ->ArgNames({"isa", "type", "m"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// The kernels alone: one thread, a block of 96 weight rows x k = 2048 that stays in L2, so that
// memory and the other tenants of the machine matter least. pct_fma_peak is against one
// thread's FMA loop.
void BM_Linear16Hot(benchmark::State& state) {
  const auto isa = state.range(0) ? cpu::CpuIsa::kAvx512 : cpu::CpuIsa::kAvx2;
  const auto type = static_cast<cpu::WType>(state.range(1));
  const int64_t m = state.range(2), rows = 96, k = kHidden;
  if (!cpu::SetGemm16Isa(isa)) return state.SkipWithError("this CPU lacks the ISA");
  static ThreadPool one(1);
  AlignedBuffer w(rows * k), x(m * k), y(m * rows);
  std::mt19937 rng(7);
  auto* w16 = reinterpret_cast<uint16_t*>(w.data());
  for (int64_t i = 0; i < rows * k; ++i) {
    const float v = (static_cast<int>(rng() % 2001) - 1000) * 2e-5f;
    if (type == cpu::WType::kF32) {
      w.data()[i] = v;
    } else {
      w16[i] = type == cpu::WType::kBF16 ? F32ToBf16(v) : F32ToF16(v);
    }
  }
  Fill(x, 1.0f, 8);
  cpu::LinearScratch scratch;
  const cpu::WeightView v{w.data(), type, rows, k};
  for (auto _ : state) {
    cpu::LinearParts(&one, m, {&v, 1}, x.data(), k, 0.f, y.data(), rows, &scratch);
    benchmark::ClobberMemory();
  }
  SetRates(state, 2.0 * m * rows * k, static_cast<double>(rows * k * cpu::WTypeSize(type)));
  state.counters["fma_peak"] = g_fma_peak1[isa == cpu::CpuIsa::kAvx512 ? 1 : 0];
  cpu::SetGemm16Isa(cpu::CpuIsaSupported(cpu::CpuIsa::kAvx512) ? cpu::CpuIsa::kAvx512
                                                               : cpu::CpuIsa::kAvx2);
}
BENCHMARK(BM_Linear16Hot)
    ->ArgsProduct({{1, 0}, {2, 1}, {1, 8, 32, 64, 512}})
    ->ArgNames({"isa", "type", "m"})
    ->UseRealTime();

void BM_LinearF32Layer(benchmark::State& state) {
  const int64_t m = state.range(0);
  const int64_t per_copy = LayerWeights();
  WeightCopies& w = Copies(cpu::WType::kF32, per_copy);
  AlignedBuffer x(m * kFfn), y(m * 2 * kFfn);
  Fill(x, 1.0f, 4);
  Fill(y, 1.0f, 5);
  size_t next = 0;
  for (auto _ : state) {
    const float* base = w.copies[next++ % w.copies.size()].data();
    for (const Proj& p : kLayer) {
      cpu::Linear(&Pool(), m, p.rows, p.cols, x.data(), p.cols, base, p.beta, y.data(), p.rows);
      base += p.rows * p.cols;
    }
    benchmark::ClobberMemory();
  }
  SetRates(state, 2.0 * m * per_copy, 4.0 * per_copy);
}
BENCHMARK(BM_LinearF32Layer)
    ->ArgsProduct({{1, 8, 32, 512}})
    ->ArgNames({"m"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- Whole decode steps, and attention by difference ------------------------------------------

Engine* DecodeEngine() {
  static std::unique_ptr<Engine> engine = [] {
    std::string dir = g_model_dir;
    if (dir.empty()) {
      dir = g_tmp + "/decode-model";
      if (!std::filesystem::exists(dir + "/config.json")) {
        tools::TinyModelOptions o;
        o.layers = 4;
        o.hidden = kHidden;
        o.heads = kHeads;
        o.kv_heads = kKvHeads;
        o.ffn = kFfn;
        o.vocab = 32000;
        o.max_pos = 4096;
        o.tokenizer = false;
        if (absl::Status s = tools::MakeTinyModel(dir, o); !s.ok())
          std::fprintf(stderr, "%s\n", s.ToString().c_str());
      }
    }
    EngineOptions opts;
    opts.model_dir = dir;
    opts.kv_cache.num_blocks = 32 * (1100 / 16 + 2) + 64;
    auto e = Engine::Create(opts);
    if (!e.ok()) std::fprintf(stderr, "%s\n", e.status().ToString().c_str());
    return e.ok() ? *std::move(e) : nullptr;
  }();
  return engine.get();
}

// Seconds of one decode step at batch b with `ctx` positions already in the cache.
struct DecodeRun {
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<Sequence*> ptrs;
  std::vector<SequenceUpdate> updates;
  Engine* e;
  DecodeRun(Engine* engine, int64_t b, int64_t ctx) : e(engine) {
    std::mt19937 rng(7);
    for (int64_t i = 0; i < b; ++i) {
      GenerationRequest r;
      for (int64_t t = 0; t < ctx; ++t)
        r.prompt_ids.push_back(3 + static_cast<int32_t>(rng() % 30000));
      r.sampling.temperature = 0;
      r.stopping.max_tokens = 1 << 20;
      r.stopping.ignore_eos = true;
      seqs.push_back(e->NewSequence(std::move(r)));
      ptrs.push_back(seqs.back().get());
    }
    (void)e->Step(ptrs, &updates);  // prefill
  }
  ~DecodeRun() {
    for (Sequence* s : ptrs) e->Release(s);
  }
  bool Step() {
    updates.clear();
    return e->Step(ptrs, &updates).ok();
  }
};

double WeightBytes(const ModelConfig& c) {
  const double per_layer =
      static_cast<double>(c.hidden_size) *
          (c.num_attention_heads * c.head_dim * 2 + 2 * c.num_key_value_heads * c.head_dim) +
      3.0 * c.hidden_size * c.intermediate_size;
  return 4.0 * (per_layer * c.num_hidden_layers + 1.0 * c.vocab_size * c.hidden_size);
}

void BM_DecodeStep(benchmark::State& state) {
  Engine* e = DecodeEngine();
  if (e == nullptr) return state.SkipWithError("no decode model");
  const int64_t b = state.range(0), ctx = state.range(1);
  DecodeRun run(e, b, ctx);
  for (auto _ : state)
    if (!run.Step()) return state.SkipWithError("step failed");
  const ModelConfig& c = e->config();
  const double params = WeightBytes(c) / 4;
  SetRates(state, 2.0 * params * b, WeightBytes(c));
  state.counters["tok/s"] =
      benchmark::Counter(static_cast<double>(b * state.iterations()), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_DecodeStep)
    ->ArgsProduct({{1, 8, 32}, {64}})
    ->ArgNames({"batch", "ctx"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

void BM_Attention(benchmark::State& state) {
  Engine* e = DecodeEngine();
  if (e == nullptr) return state.SkipWithError("no decode model");
  const int64_t b = state.range(0), ctx = state.range(1);
  DecodeRun short_run(e, b, 16), long_run(e, b, ctx);
  double diff = 0;
  int64_t n = 0;
  for (auto _ : state) {
    auto t0 = std::chrono::steady_clock::now();
    if (!short_run.Step()) return state.SkipWithError("step failed");
    auto t1 = std::chrono::steady_clock::now();
    if (!long_run.Step()) return state.SkipWithError("step failed");
    auto t2 = std::chrono::steady_clock::now();
    diff += std::chrono::duration<double>((t2 - t1) - (t1 - t0)).count();
    ++n;
  }
  const ModelConfig& c = e->config();
  // K and V of ctx - 16 more positions, every layer and KV head, for b sequences.
  const double bytes =
      4.0 * 2 * (ctx - 16) * c.num_key_value_heads * c.head_dim * c.num_hidden_layers * b;
  const double flops =
      2.0 * 2 * (ctx - 16) * c.num_attention_heads * c.head_dim * c.num_hidden_layers * b;
  const double per = n > 0 ? diff / n : 0;
  state.counters["attn_ms"] = per * 1e3;
  state.counters["GB/s"] = per > 0 ? bytes / per / 1e9 : 0;
  state.counters["GFLOP/s"] = per > 0 ? flops / per / 1e9 : 0;
}
BENCHMARK(BM_Attention)
    ->ArgsProduct({{8, 32}, {1024}})
    ->ArgNames({"batch", "ctx"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// ---- --gemm16-compare: interleaved rounds -----------------------------------------------------

// On a machine shared with other work, sequential Google Benchmark cases see different loads. This
// mode runs, for each m, rounds of: the two bandwidth references, the FMA loops, then every case
// once, and reports each case's best and median time and its ratios to the references of the
// same round (medians over the rounds).
void Gemm16Compare(int rounds) {
  using Clock = std::chrono::steady_clock;
  const int64_t per = LayerWeights();
  struct Case {
    const char* name;
    cpu::CpuIsa isa;
    cpu::WType type;
    bool openblas;
  };
  std::vector<Case> cases = {
      {"gemm16 AVX-512 BF16", cpu::CpuIsa::kAvx512, cpu::WType::kBF16, false},
      {"gemm16 AVX-512 F16", cpu::CpuIsa::kAvx512, cpu::WType::kF16, false},
      {"gemm16 AVX2 BF16", cpu::CpuIsa::kAvx2, cpu::WType::kBF16, false},
      {"gemm16 AVX2 F16", cpu::CpuIsa::kAvx2, cpu::WType::kF16, false},
      {"F32 OpenBLAS (cpu::Linear)", cpu::CpuIsa::kAvx2, cpu::WType::kF32, true}};
  std::erase_if(cases, [](const Case& c) { return !c.openblas && !cpu::CpuIsaSupported(c.isa); });
  // Weights: >= 1 GiB of copies of one layer per type.
  std::vector<std::vector<AlignedBuffer>> weights;
  for (cpu::WType t : {cpu::WType::kBF16, cpu::WType::kF16, cpu::WType::kF32})
    weights.push_back(std::move(Copies(t, per).copies));
  auto copies_of = [&](cpu::WType t) -> std::vector<AlignedBuffer>& {
    return weights[t == cpu::WType::kBF16 ? 0 : t == cpu::WType::kF16 ? 1 : 2];
  };
  cpu::LinearScratch scratch;
  std::printf(
      "gemm16 vs F32 OpenBLAS, one TinyLlama layer (QKV, O, gate+up, down), %d threads, "
      "%d interleaved rounds per m\n",
      Pool().num_threads(), rounds);
  for (int64_t m : {1, 8, 32, 512}) {
    AlignedBuffer x(m * kFfn), y(m * 2 * kFfn);
    Fill(x, 1.0f, 4);
    Fill(y, 1.0f, 5);
    std::vector<std::vector<double>> secs(cases.size());
    std::vector<double> bw, stream, fma512, fma2;
    std::vector<std::vector<double>> pct_bw(cases.size()), pct_fma(cases.size());
    size_t next = 0;
    for (int r = 0; r < rounds; ++r) {
      bw.push_back(MeasureReadBandwidth(Pool(), size_t{1} << 30));
      stream.push_back(MeasureStreamBandwidth(Pool(), size_t{1} << 30));
      fma512.push_back(MeasureFmaPeak(Pool(), cpu::CpuIsa::kAvx512));
      fma2.push_back(MeasureFmaPeak(Pool(), cpu::CpuIsa::kAvx2));
      for (size_t c = 0; c < cases.size(); ++c) {
        const Case& cs = cases[c];
        std::vector<AlignedBuffer>& w = copies_of(cs.type);
        // Enough layers that the weights stream from memory (all copies), two at m = 512.
        const size_t layers = m >= 512 ? 2 : w.size();
        if (!cs.openblas) cpu::SetGemm16Isa(cs.isa);
        const auto t0 = Clock::now();
        for (size_t li = 0; li < layers; ++li) {
          const auto* base = reinterpret_cast<const uint8_t*>(w[next++ % w.size()].data());
          for (const Proj& p : kLayer) {
            if (cs.openblas) {
              cpu::Linear(&Pool(), m, p.rows, p.cols, x.data(), p.cols,
                          reinterpret_cast<const float*>(base), p.beta, y.data(), p.rows);
            } else {
              const cpu::WeightView v{base, cs.type, p.rows, p.cols};
              cpu::LinearParts(&Pool(), m, {&v, 1}, x.data(), p.cols, p.beta, y.data(), p.rows,
                               &scratch);
            }
            base += p.rows * p.cols * cpu::WTypeSize(cs.type);
          }
        }
        const double t = std::chrono::duration<double>(Clock::now() - t0).count() / layers;
        secs[c].push_back(t);
        const double gbs = per * cpu::WTypeSize(cs.type) / t / 1e9;
        const double gflops = 2.0 * m * per / t / 1e9;
        pct_bw[c].push_back(100 * gbs / std::max(bw.back(), stream.back()));
        pct_fma[c].push_back(
            100 * gflops /
            (cs.isa == cpu::CpuIsa::kAvx512 || cs.openblas ? fma512.back() : fma2.back()));
      }
    }
    cpu::SetGemm16Isa(cpu::CpuIsaSupported(cpu::CpuIsa::kAvx512) ? cpu::CpuIsa::kAvx512
                                                                 : cpu::CpuIsa::kAvx2);
    auto median = [](std::vector<double> v) {
      std::sort(v.begin(), v.end());
      return v[v.size() / 2];
    };
    auto range = [](const std::vector<double>& v) {
      return std::make_pair(*std::min_element(v.begin(), v.end()),
                            *std::max_element(v.begin(), v.end()));
    };
    const auto [bw0, bw1] = range(bw);
    const auto [st0, st1] = range(stream);
    const auto [f0, f1] = range(fma512);
    const auto [g0, g1] = range(fma2);
    std::printf(
        "\nm = %lld: read bandwidth %.1f-%.1f GB/s (8 row streams per thread %.1f-%.1f), "
        "FMA loop AVX-512 %.0f-%.0f GFLOP/s, AVX2 %.0f-%.0f\n",
        static_cast<long long>(m), bw0, bw1, st0, st1, f0, f1, g0, g1);
    std::printf(
        "| case | ms per layer, best / median | GB/s (best) | %% of bandwidth (median) | "
        "GFLOP/s (best) | %% of FMA peak (median) | time / F32 OpenBLAS (median) |\n");
    std::printf("| --- | --- | --- | --- | --- | --- | --- |\n");
    for (size_t c = 0; c < cases.size(); ++c) {
      const double best = *std::min_element(secs[c].begin(), secs[c].end());
      std::vector<double> ratio;
      for (int r = 0; r < rounds; ++r) ratio.push_back(secs[c][r] / secs.back()[r]);
      std::printf("| %s | %.2f / %.2f | %.1f | %.0f | %.0f | %.0f | %.2f |\n", cases[c].name,
                  best * 1e3, median(secs[c]) * 1e3,
                  per * cpu::WTypeSize(cases[c].type) / best / 1e9, median(pct_bw[c]),
                  2.0 * m * per / best / 1e9, median(pct_fma[c]), median(ratio));
    }
    std::fflush(stdout);
  }
}

// Adds the peak fractions to every result that has rates, then prints as usual.
class PeakReporter : public benchmark::ConsoleReporter {
 public:
  PeakReporter() : benchmark::ConsoleReporter(benchmark::ConsoleReporter::OO_Tabular) {}
  void ReportRuns(const std::vector<Run>& runs) override {
    std::vector<Run> out = runs;
    for (Run& r : out) {
      auto g = r.counters.find("GFLOP/s");
      auto b = r.counters.find("GB/s");
      if (g == r.counters.end() || b == r.counters.end()) continue;
      // Rates are final here (per second); the fractions are of the peaks measured at start.
      r.counters["pct_gemm_peak"] = 100.0 * g->second.value / g_gemm_peak;
      r.counters["pct_bw_peak"] = 100.0 * b->second.value / g_bw_peak;
      auto f = r.counters.find("fma_peak");
      if (f != r.counters.end() && f->second.value > 0) {
        r.counters["pct_fma_peak"] = 100.0 * g->second.value / f->second.value;
        r.counters["pct_stream_bw"] = 100.0 * b->second.value / g_stream_bw;
        r.counters.erase(f);
      }
    }
    ConsoleReporter::ReportRuns(out);
  }
};

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  std::vector<char*> args;
  int compare_rounds = 0;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--gemm16-compare", 0) == 0) {
      compare_rounds = a.size() > 17 ? std::stoi(a.substr(17)) : 5;
    } else if (a.rfind("--model=", 0) == 0) {
      para::bench::g_model_dir = a.substr(8);
    } else if (a == "--model" && i + 1 < argc) {
      para::bench::g_model_dir = argv[++i];
    } else {
      args.push_back(argv[i]);
    }
  }
  int n = static_cast<int>(args.size());
  benchmark::Initialize(&n, args.data());
  if (!para::cpu::InitBlas().ok()) return 1;
  if (compare_rounds > 0) {
    para::bench::Gemm16Compare(compare_rounds);
    return 0;
  }
  para::bench::g_tmp = (std::filesystem::temp_directory_path() / "para-bench-kernels").string();
  std::filesystem::create_directories(para::bench::g_tmp);
  para::bench::MeasurePeaks();
  para::bench::PeakReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
