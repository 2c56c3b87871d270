// para-bench-engine: decode and prefill throughput of the engine on one model, with this
// machine's measured memory bandwidth and the batch-1 decode bound it implies.
//
//   para-bench-engine --model DIR [--batches 1,8,32] [--prompt-len 64] [--decode-steps 16]
//                     [--prefill-len 512] [--threads N]
//
// Batch-1 decode must stream every weight once per token, so its ceiling is
// bandwidth / (bytes of weights read per token). Larger batches reuse each weight for every row.
#include <chrono>
#include <cstdio>
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

// Decode tokens/s at batch `b`: b sequences prefilled with `prompt` tokens, then `steps` timed
// decode steps (forward + greedy sampling of every sequence).
absl::StatusOr<double> DecodeThroughput(Engine& e, int b, int prompt, int steps) {
  std::vector<std::unique_ptr<Sequence>> seqs;
  std::vector<Sequence*> ptrs;
  for (int i = 0; i < b; ++i) {
    GenerationRequest r;
    r.prompt_ids = RandomPrompt(prompt, e.config().vocab_size, 1000 + i);
    r.sampling.temperature = 0;
    r.stopping.max_tokens = steps + 2;
    r.stopping.ignore_eos = true;
    RETURN_IF_ERROR(e.ValidateRequest(r));
    seqs.push_back(e.NewSequence(std::move(r)));
    ptrs.push_back(seqs.back().get());
  }
  std::vector<SequenceUpdate> updates;
  RETURN_IF_ERROR(e.Step(ptrs, &updates));  // prefill (untimed)
  RETURN_IF_ERROR(e.Step(ptrs, &updates));  // warm-up decode step
  auto t0 = Clock::now();
  for (int s = 0; s < steps; ++s) {
    updates.clear();
    RETURN_IF_ERROR(e.Step(ptrs, &updates));
  }
  const double secs = Seconds(t0, Clock::now());
  for (Sequence* s : ptrs) e.Release(s);
  return b * steps / secs;
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

absl::Status Run(int argc, char** argv) {
  ASSIGN_OR_RETURN(
      tools::Args a,
      tools::Args::Parse(argc, argv, 1,
                         tools::Union(tools::kEngineFlags,
                                      {"batches", "prompt-len", "decode-steps", "prefill-len"}),
                         {}));
  ASSIGN_OR_RETURN(EngineOptions eo, tools::EngineOptionsFromArgs(a));
  ASSIGN_OR_RETURN(std::vector<int32_t> batches,
                   tools::ParseIdList(a.GetOr("batches", "1,8,32"), "--batches"));
  ASSIGN_OR_RETURN(int64_t prompt, a.Int("prompt-len", 64));
  ASSIGN_OR_RETURN(int64_t steps, a.Int("decode-steps", 16));
  ASSIGN_OR_RETURN(int64_t prefill, a.Int("prefill-len", 512));
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
  for (int b : batches) {
    ASSIGN_OR_RETURN(double tps, DecodeThroughput(*engine, b, static_cast<int>(prompt),
                                                  static_cast<int>(steps)));
    std::string note =
        b == 1 ? absl::StrCat(static_cast<int>(100 * tps / bound), "% of the bandwidth bound")
               : absl::StrCat(static_cast<int>(tps / b * 1000) / 1000.0, " tok/s per sequence");
    std::printf("decode batch %-13d %12.2f %s\n", b, tps, note.c_str());
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
