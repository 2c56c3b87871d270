// para-bench-engine: decode and prefill throughput of the engine on one model, with this
// machine's measured memory bandwidth and the batch-1 decode bound it implies, and optionally
// the same decode batches with PARA and LoRA adapters, as ratios to the base model from one run.
//
//   para-bench-engine --model DIR [--batches 1,8,32] [--prompt-len 64] [--decode-steps 16]
//                     [--prefill-len 512] [--threads N]
//                     [--adapters N [--compare
//                     para,lora-r8-qv,lora-r16-qv,lora-r8-all,lora-r16-all]
//                      [--adapter-dir D]] [--device auto|cpu|cuda] [--hbm-gbps G]
//
// Decode throughput is the batch size over the median step time (forward pass + greedy sampling
// of every sequence). With --adapters N, each decode batch size b also runs once per --compare
// variant with min(b, N) distinct adapters (PARA r = 12; LoRA of the named rank on q,v or on all
// seven projections), written once to --adapter-dir (default MODEL-bench-adapters). The base batch
// and every variant's batch are all prefilled first; then their decode steps alternate one by one,
// in an order that rotates every round, so the drifts of a shared machine hit all alike.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "bench/bandwidth.h"
#include "common/status_macros.h"
#include "engine/aligned_buffer.h"
#include "engine/cpu/blas.h"
#include "engine/device.h"
#include "engine/engine.h"
#include "tools/args.h"
#include "tools/engine_flags.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::bench {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<int32_t> RandomPrompt(int n, int64_t vocab, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int32_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(3 + static_cast<int32_t>(rng() % (vocab - 3)));
  return ids;
}

// A bench variant: no adapter, PARA, or LoRA of one rank and target set, with its adapters.
struct Variant {
  std::string name;
  std::vector<AdapterRef> adapters;  // empty = base model
};

// A batch of `b` decoding sequences, prefilled with `prompt` tokens each (untimed).
// Sequence i uses adapters[i % adapters.size()].
class DecodeBatch {
 public:
  static absl::StatusOr<std::unique_ptr<DecodeBatch>> Start(
      Engine& e, int b, int prompt, int steps, const std::vector<AdapterRef>& adapters) {
    auto d = std::make_unique<DecodeBatch>();
    d->engine_ = &e;
    for (int i = 0; i < b; ++i) {
      GenerationRequest r;
      r.prompt_ids = RandomPrompt(prompt, e.config().vocab_size, 1000 + i);
      r.sampling.temperature = 0;
      r.stopping.max_tokens = steps + 2;
      r.stopping.ignore_eos = true;
      if (!adapters.empty()) {
        r.para = adapters[i % adapters.size()].para;
        r.lora = adapters[i % adapters.size()].lora;
      }
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
  // One decode step; returns its seconds.
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

// The adapters of one --compare variant ("para", "lora-r16-all", ...): n of them, written once.
absl::StatusOr<Variant> MakeVariant(Engine& e, const std::string& name, int n,
                                    const std::string& dir) {
  Variant v{name, {}};
  for (int i = 0; i < n; ++i) {
    const std::string path = absl::StrCat(dir, "/", name, "_", i);
    if (!std::filesystem::exists(path + "/adapter_config.json")) {
      if (name == "para") {
        tools::TinyParaOptions o;
        o.r = 12;
        o.seed = static_cast<uint64_t>(i);
        o.pooler = i % 2 ? ParaPooler::kMean : ParaPooler::kLast;
        RETURN_IF_ERROR(tools::MakeTinyParaAdapter(path, e.model().dir(), o));
      } else {
        std::vector<std::string> parts = absl::StrSplit(name, '-');  // lora-r16-all
        int64_t r = 0;
        if (parts.size() != 3 || parts[0] != "lora" || parts[1].size() < 2 ||
            !absl::SimpleAtoi(parts[1].substr(1), &r) || (parts[2] != "qv" && parts[2] != "all"))
          return absl::InvalidArgumentError(absl::StrCat("--compare: unknown variant '", name,
                                                         "' (para, or lora-rR-qv / lora-rR-all)"));
        tools::TinyLoraOptions o;
        o.r = r;
        o.alpha = 2.0 * r;
        ASSIGN_OR_RETURN(o.targets,
                         tools::ParseLoraTargets(parts[2] == "all" ? "all" : "q_proj,v_proj"));
        o.seed = static_cast<uint64_t>(i);
        RETURN_IF_ERROR(tools::MakeTinyLoraAdapter(path, e.model().dir(), o));
      }
    }
    ASSIGN_OR_RETURN(AdapterRef ref, e.LoadAdapter(path));
    v.adapters.push_back(std::move(ref));
  }
  return v;
}

// Decode at batch b for the base model and every variant, steps interleaved.
absl::Status CompareDecode(Engine& e, int b, int prompt, int steps,
                           const std::vector<Variant>& variants, double bound) {
  std::vector<std::unique_ptr<DecodeBatch>> batches;
  std::vector<std::string> names = {"base"};
  ASSIGN_OR_RETURN(auto base, DecodeBatch::Start(e, b, prompt, steps, {}));
  batches.push_back(std::move(base));
  for (const Variant& v : variants) {
    const std::vector<AdapterRef> distinct(
        v.adapters.begin(), v.adapters.begin() + std::min<size_t>(b, v.adapters.size()));
    ASSIGN_OR_RETURN(auto batch, DecodeBatch::Start(e, b, prompt, steps, distinct));
    batches.push_back(std::move(batch));
    names.push_back(absl::StrCat(v.name, ", ", distinct.size(), " distinct"));
  }
  std::vector<std::vector<double>> times(batches.size());
  // Each round starts one batch later, so no batch always runs first or after the same one.
  for (int s = 0; s < steps; ++s)
    for (size_t j = 0; j < batches.size(); ++j) {
      const size_t i = (s + j) % batches.size();
      ASSIGN_OR_RETURN(double t, batches[i]->TimedStep());
      times[i].push_back(t);
    }
  const double base_tps = b / Median(times[0]);
  const std::string note =
      b == 1 ? absl::StrCat(static_cast<int>(100 * base_tps / bound), "% of the bandwidth bound")
             : absl::StrCat(static_cast<int>(base_tps / b * 1000) / 1000.0, " tok/s per sequence");
  std::printf("decode batch %-13d %12.2f %s\n", b, base_tps, note.c_str());
  for (size_t i = 1; i < batches.size(); ++i) {
    const double tps = b / Median(times[i]);
    std::printf("  %-24s %12.2f x%.4f of base (%+.2f%%)\n", names[i].c_str(), tps, tps / base_tps,
                100.0 * (tps / base_tps - 1.0));
  }
  return absl::OkStatus();
}

// The bench's own flags (the engine's follow them in --help).
const std::vector<tools::FlagSpec> kBenchFlags = {
    {"batches", "1,8,32", "1,8,32", "decode batch sizes"},
    {"prompt-len", "N", "64", "prompt tokens of every decoding sequence"},
    {"decode-steps", "N", "16", "timed decode steps per batch size"},
    {"prefill-len", "N", "512", "prompt tokens of the prefill measurement"},
    {"adapters", "N", "0 = base model only", "distinct adapters per compared decode batch"},
    {"compare", "LIST", "para,lora-r8-qv,lora-r16-qv,lora-r8-all,lora-r16-all",
     "adapter variants compared with the base model"},
    {"adapter-dir", "D", "MODEL-bench-adapters", "where the variants' adapters are written"},
    {"hbm-gbps", "N", "0 = measure a device copy", "GPU memory bandwidth for the batch-1 bound"},
};

std::string Usage() {
  return absl::StrCat("usage: para-bench-engine --model DIR [flags]\n",
                      "(the engine's --kv-cache-bytes defaults to 4294967296 here)\n",
                      tools::FlagHelp(kBenchFlags), "engine flags:\n",
                      tools::FlagHelp(tools::kEngineFlagSpecs));
}

absl::Status Run(int argc, char** argv) {
  ASSIGN_OR_RETURN(tools::Args a,
                   tools::Args::Parse(
                       argc, argv, 1,
                       tools::Union(tools::kEngineFlags, tools::ValueFlagNames(kBenchFlags)), {}));
  ASSIGN_OR_RETURN(EngineOptions eo, tools::EngineOptionsFromArgs(a));
  ASSIGN_OR_RETURN(std::vector<int32_t> batches,
                   tools::ParseIdList(a.GetOr("batches", "1,8,32"), "--batches"));
  ASSIGN_OR_RETURN(int64_t prompt, a.Int("prompt-len", 64));
  ASSIGN_OR_RETURN(int64_t steps, a.Int("decode-steps", 16));
  ASSIGN_OR_RETURN(int64_t prefill, a.Int("prefill-len", 512));
  ASSIGN_OR_RETURN(int64_t n_adapters, a.Int("adapters", 0));
  if (!a.Has("kv-cache-bytes") && !a.Has("kv-cache-blocks")) eo.kv_cache.bytes = 4ll << 30;
  auto t0 = Clock::now();
  ASSIGN_OR_RETURN(auto engine, Engine::Create(eo));
  const ModelConfig& c = engine->config();
  std::printf(
      "model: %s  (%ld layers, hidden %ld, heads %ld/%ld kv, ffn %ld, vocab %ld, %.0f M params)\n"
      "device: %s\n",
      eo.model_dir.c_str(), c.num_hidden_layers, c.hidden_size, c.num_attention_heads,
      c.num_key_value_heads, c.intermediate_size, c.vocab_size, c.NumParameters() / 1e6,
      engine->device_summary().c_str());
  std::printf("loaded in %.1f s; threads %d; OpenBLAS kernels %s; KV cache %d blocks of %d\n",
              Seconds(t0, Clock::now()), engine->thread_pool().num_threads(), cpu::BlasKernelName(),
              engine->kv_cache().pool().num_blocks(), engine->kv_cache().block_size());
  std::vector<Variant> variants;
  if (n_adapters > 0) {
    const std::string dir = a.GetOr("adapter-dir", absl::StrCat(eo.model_dir, "-bench-adapters"));
    for (absl::string_view name :
         absl::StrSplit(a.GetOr("compare", "para,lora-r8-qv,lora-r16-qv,lora-r8-all,lora-r16-all"),
                        ',', absl::SkipEmpty())) {
      ASSIGN_OR_RETURN(Variant v,
                       MakeVariant(*engine, std::string(name), static_cast<int>(n_adapters), dir));
      variants.push_back(std::move(v));
    }
  }
  // The bound: weight bytes read per batch-1 token over the memory's bandwidth (host memory on
  // the CPU, measured; on a GPU, --hbm-gbps when given, else a device-to-device copy measured).
  const bool gpu = engine->device_summary().rfind("cuda", 0) == 0;
  ASSIGN_OR_RETURN(int64_t hbm_gbps, a.Int("hbm-gbps", 0));
  const double bw = !gpu ? MeasureReadBandwidth(engine->thread_pool())
                         : (hbm_gbps > 0 ? static_cast<double>(hbm_gbps) : CudaCopyBandwidthGBps());
  // BF16 on the device; on the CPU, the weights as held.
  const double bytes_per_param =
      gpu ? 2.0 : static_cast<double>(DTypeSize(engine->weights_dtype()));
  // Batch-1 decode reads every weight except the embedding table (one row of it) once per token.
  const double bytes_per_token =
      bytes_per_param *
      static_cast<double>(c.NumParameters() -
                          (c.tie_word_embeddings ? 0 : c.vocab_size * c.hidden_size));
  const double bound = bw * 1e9 / bytes_per_token;
  std::printf(
      "memory bandwidth: %.1f GB/s (%s) -> batch-1 decode bound %.2f tok/s (%.2f GB of weights per "
      "token)\n\n",
      bw, !gpu ? "host reads, measured" : (hbm_gbps > 0 ? "--hbm-gbps" : "device copy, measured"),
      bound, bytes_per_token / 1e9);
  std::printf("%-26s %12s %s\n", "phase", "tokens/s", "notes");
  for (int b : batches)
    RETURN_IF_ERROR(CompareDecode(*engine, b, static_cast<int>(prompt), static_cast<int>(steps),
                                  variants, bound));
  ASSIGN_OR_RETURN(double p1, PrefillThroughput(*engine, static_cast<int>(prefill), 1));
  std::printf("prefill 1 x %-14ld %12.1f\n", prefill, p1);
  ASSIGN_OR_RETURN(double p4, PrefillThroughput(*engine, static_cast<int>(prefill / 4), 4));
  std::printf("prefill 4 x %-14ld %12.1f\n", prefill / 4, p4);
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  if (para::tools::WantsHelp(argc, argv, 1)) {
    std::fputs(para::bench::Usage().c_str(), stdout);
    return 0;
  }
  absl::Status s = para::bench::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-bench-engine: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
