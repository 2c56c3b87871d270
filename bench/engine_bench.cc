// para-bench-engine: decode and prefill throughput of the engine on one model, with this
// machine's measured memory bandwidth and the batch-1 decode bound it implies.
//
//   para-bench-engine --model DIR [--batches 1,8,32] [--prompt-len 64] [--decode-steps 16]
//                     [--prefill-len 512] [--threads N] [--para-adapters N [--adapter-dir D]]
//
// Decode throughput is the batch size over the median step time of --decode-steps steps. With
// --para-adapters N, every decode batch also runs with PARA adapters (min(batch, N) distinct
// ones, r = 12, written once to --adapter-dir, default MODEL-para-adapters), its steps alternating
// with the base batch's, and PARA/base is printed.
//
// Batch-1 decode must stream every weight once per token, so its ceiling is
// bandwidth / (bytes of weights read per token). Larger batches reuse each weight for every row.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "engine/aligned_buffer.h"
#include "engine/cpu/blas.h"
#include "engine/engine.h"
#include "engine/status_macros.h"
#include "tools/args.h"
#include "tools/engine_flags.h"
#include "tools/tiny_adapter.h"

namespace para::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// Read bandwidth in GB/s: every thread sums its slice of a 2 GiB buffer; best of 5.
double MeasureBandwidth(ThreadPool& pool) {
  const size_t n = (2ull << 30) / sizeof(float);
  AlignedBuffer buf(n);
  pool.ParallelFor(static_cast<int64_t>(n), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) buf.data()[i] = 1.0f;
  });
  double best = 0;
  std::vector<float> sums(pool.num_threads());
  for (int rep = 0; rep < 5; ++rep) {
    auto t0 = Clock::now();
    pool.RunOnAll([&](int t) {
      const int64_t b = static_cast<int64_t>(n) * t / pool.num_threads();
      const int64_t e = static_cast<int64_t>(n) * (t + 1) / pool.num_threads();
      float acc[16] = {};
      for (int64_t i = b; i < e; i += 16)
#pragma omp simd
        for (int j = 0; j < 16; ++j) acc[j] += buf.data()[i + j];
      float s = 0;
      for (float a : acc) s += a;
      sums[t] = s;
    });
    best = std::max(best, n * sizeof(float) / Seconds(t0, Clock::now()) / 1e9);
  }
  return best;
}

std::vector<int32_t> RandomPrompt(int n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
  return ids;
}

using Adapters = std::vector<std::shared_ptr<const ParaAdapter>>;

// A batch of `b` decoding sequences, prefilled with `prompt` tokens each (untimed).
// Sequence i uses adapters[i % adapters.size()] (none when empty).
class DecodeBatch {
 public:
  static absl::StatusOr<std::unique_ptr<DecodeBatch>> Start(Engine& e, int b, int prompt, int steps,
                                                            const Adapters& adapters) {
    auto d = std::make_unique<DecodeBatch>();
    d->engine_ = &e;
    for (int i = 0; i < b; ++i) {
      GenerationRequest r;
      r.prompt_ids = RandomPrompt(prompt, e.config().vocab_size, 1000 + i);
      r.sampling.temperature = 0;
      r.stopping.max_tokens = steps + 2;
      r.stopping.ignore_eos = true;
      if (!adapters.empty()) r.para = adapters[i % adapters.size()];
      RETURN_IF_ERROR(e.ValidateRequest(r));
      d->seqs_.push_back(e.NewSequence(std::move(r)));
      d->ptrs_.push_back(d->seqs_.back().get());
    }
    RETURN_IF_ERROR(d->Step());  // prefill
    RETURN_IF_ERROR(d->Step());  // warm-up decode step
    return d;
  }
  ~DecodeBatch() {
    for (Sequence* s : ptrs_) engine_->Release(s);
  }
  // One decode step (forward + greedy sampling of every sequence); returns its seconds.
  absl::StatusOr<double> TimedStep() {
    auto t0 = Clock::now();
    RETURN_IF_ERROR(Step());
    return Seconds(t0, Clock::now());
  }

 private:
  absl::Status Step() {
    updates_.clear();
    return engine_->Step(ptrs_, &updates_);
  }
  Engine* engine_ = nullptr;
  std::vector<std::unique_ptr<Sequence>> seqs_;
  std::vector<Sequence*> ptrs_;
  std::vector<SequenceUpdate> updates_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Prefill tokens/s: `count` prompts of `len` tokens in one step.
absl::StatusOr<double> PrefillThroughput(Engine& e, int len, int count) {
  std::vector<KvSequence> kvs(count);
  std::vector<std::vector<int32_t>> prompts;
  for (int i = 0; i < count; ++i)
    prompts.push_back(RandomPrompt(len, e.config().vocab_size, 50 + i));
  std::vector<ForwardItem> items;
  for (int i = 0; i < count; ++i) items.push_back({&kvs[i], prompts[i], false});
  std::vector<float> logits;
  auto t0 = Clock::now();
  RETURN_IF_ERROR(e.Forward(items, &logits));
  const double secs = Seconds(t0, Clock::now());
  for (auto& kv : kvs) e.kv_cache().Release(&kv);
  return count * len / secs;
}

// N random PARA adapters (r = 12) for the model, written once under `dir` and then reused.
absl::StatusOr<Adapters> BenchAdapters(Engine& e, int n, const std::string& dir) {
  Adapters out;
  for (int i = 0; i < n; ++i) {
    const std::string path = absl::StrCat(dir, "/para_", i);
    if (!std::filesystem::exists(path + "/adapter_config.json")) {
      tools::TinyParaOptions o;
      o.r = 12;
      o.seed = static_cast<uint64_t>(i);
      o.pooler = i % 2 ? ParaPooler::kMean : ParaPooler::kLast;
      RETURN_IF_ERROR(tools::MakeTinyParaAdapter(path, e.model().dir(), o));
    }
    ASSIGN_OR_RETURN(auto a, e.LoadParaAdapter(path));
    out.push_back(std::move(a));
  }
  return out;
}

// Decode throughput at batch b, and with --para-adapters the same batch with PARA adapters
// (min(b, N) distinct ones). Base and PARA steps alternate, one each, so slow drifts of a shared
// machine hit both alike; throughput comes from the median step time of each.
absl::Status CompareDecode(Engine& e, int b, int prompt, int steps, const Adapters& adapters,
                           double bound) {
  const Adapters distinct(adapters.begin(),
                          adapters.begin() + std::min<size_t>(b, adapters.size()));
  ASSIGN_OR_RETURN(auto base_batch, DecodeBatch::Start(e, b, prompt, steps, {}));
  std::unique_ptr<DecodeBatch> para_batch;
  if (!distinct.empty()) {
    ASSIGN_OR_RETURN(para_batch, DecodeBatch::Start(e, b, prompt, steps, distinct));
  }
  std::vector<double> base_t, para_t;
  for (int s = 0; s < steps; ++s) {
    ASSIGN_OR_RETURN(double t, base_batch->TimedStep());
    base_t.push_back(t);
    if (para_batch) {
      ASSIGN_OR_RETURN(double tp, para_batch->TimedStep());
      para_t.push_back(tp);
    }
  }
  const double base = b / Median(base_t);
  const std::string note =
      b == 1 ? absl::StrCat(static_cast<int>(100 * base / bound), "% of the bandwidth bound")
             : absl::StrCat(static_cast<int>(base / b * 1000) / 1000.0, " tok/s per sequence");
  std::printf("decode batch %-13d %12.2f %s\n", b, base, note.c_str());
  if (para_batch) {
    const double para = b / Median(para_t);
    std::printf("  + PARA, %3zu distinct %12.2f PARA/base = %.4f (%+.2f%%)\n", distinct.size(),
                para, para / base, 100.0 * (para / base - 1.0));
  }
  return absl::OkStatus();
}

absl::Status Run(int argc, char** argv) {
  ASSIGN_OR_RETURN(tools::Args a,
                   tools::Args::Parse(argc, argv, 1,
                                      tools::Union(tools::kEngineFlags,
                                                   {"batches", "prompt-len", "decode-steps",
                                                    "prefill-len", "para-adapters", "adapter-dir"}),
                                      {}));
  ASSIGN_OR_RETURN(EngineOptions eo, tools::EngineOptionsFromArgs(a));
  ASSIGN_OR_RETURN(std::vector<int32_t> batches,
                   tools::ParseIdList(a.GetOr("batches", "1,8,32"), "--batches"));
  ASSIGN_OR_RETURN(int64_t prompt, a.Int("prompt-len", 64));
  ASSIGN_OR_RETURN(int64_t steps, a.Int("decode-steps", 16));
  ASSIGN_OR_RETURN(int64_t prefill, a.Int("prefill-len", 512));
  ASSIGN_OR_RETURN(int64_t n_adapters, a.Int("para-adapters", 0));
  if (!a.Has("kv-cache-bytes") && !a.Has("kv-cache-blocks")) eo.kv_cache.bytes = 3ll << 30;
  auto t0 = Clock::now();
  ASSIGN_OR_RETURN(auto engine, Engine::Create(eo));
  const ModelConfig& c = engine->config();
  std::printf(
      "model: %s  (%ld layers, hidden %ld, heads %ld/%ld kv, ffn %ld, vocab %ld, %.0f M params, "
      "F32 compute)\n",
      eo.model_dir.c_str(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
      c.num_key_value_heads, c.intermediate_size, c.vocab_size, c.NumParameters() / 1e6);
  std::printf("loaded in %.1f s; threads %d; OpenBLAS kernels %s; KV cache %d blocks of %d\n",
              Seconds(t0, Clock::now()), engine->thread_pool().num_threads(), cpu::BlasKernelName(),
              engine->kv_cache().pool().num_blocks(), engine->kv_cache().block_size());
  const double bw = MeasureBandwidth(engine->thread_pool());
  // Batch-1 decode reads every weight except the embedding table (one row of it) once per token.
  const double bytes_per_token =
      4.0 * (c.NumParameters() - (c.tie_word_embeddings ? 0 : c.vocab_size * c.hidden_size));
  const double bound = bw * 1e9 / bytes_per_token;
  std::printf(
      "memory read bandwidth: %.1f GB/s -> batch-1 decode bound %.2f tok/s (%.2f GB of weights per "
      "token)\n\n",
      bw, bound, bytes_per_token / 1e9);
  std::printf("%-26s %12s %s\n", "phase", "tokens/s", "notes");
  ASSIGN_OR_RETURN(
      Adapters adapters,
      BenchAdapters(*engine, static_cast<int>(n_adapters),
                    a.GetOr("adapter-dir", absl::StrCat(eo.model_dir, "-para-adapters"))));
  for (int b : batches) {
    RETURN_IF_ERROR(CompareDecode(*engine, b, static_cast<int>(prompt), static_cast<int>(steps),
                                  adapters, bound));
  }
  ASSIGN_OR_RETURN(double p1, PrefillThroughput(*engine, static_cast<int>(prefill), 1));
  std::printf("prefill 1 x %-14ld %12.1f\n", prefill, p1);
  ASSIGN_OR_RETURN(double p4, PrefillThroughput(*engine, static_cast<int>(prefill / 4), 4));
  std::printf("prefill 4 x %-14ld %12.1f\n", prefill / 4, p4);
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  absl::Status s = para::bench::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-bench-engine: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
