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
//
// Counters: GFLOP/s and GB/s (as rates), and pct_gemm_peak / pct_bw_peak. Run with
// --benchmark_filter=... as usual; --model DIR picks the decode model.
#include <chrono>
#include <cstdio>
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
#include "engine/cpu/kernels.h"
#include "engine/cpu/lora_kernels.h"
#include "engine/engine.h"
#include "engine/lora_adapter.h"
#include "engine/model_config.h"
#include "engine/thread_pool.h"
#include "tools/tiny_lora.h"
#include "tools/tiny_model.h"

namespace para::bench {
namespace {

double g_gemm_peak = 0;  // GFLOP/s
double g_bw_peak = 0;    // GB/s
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
  std::fprintf(stderr, "peaks: SGEMM %.1f GFLOP/s (1024^3, %d threads), read bandwidth %.1f GB/s\n",
               g_gemm_peak, Pool().num_threads(), g_bw_peak);
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
    }
    ConsoleReporter::ReportRuns(out);
  }
};

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  std::vector<char*> args;
  for (int i = 0; i < argc; ++i) {
    const std::string a = argv[i];
    if (a.rfind("--model=", 0) == 0) {
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
  para::bench::g_tmp = (std::filesystem::temp_directory_path() / "para-bench-kernels").string();
  std::filesystem::create_directories(para::bench::g_tmp);
  para::bench::MeasurePeaks();
  para::bench::PeakReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  benchmark::Shutdown();
  return 0;
}
