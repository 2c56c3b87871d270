// Microbenchmark: the projections of one TinyLlama-1.1B-shaped decoder layer (hidden 2048,
// 32 heads / 4 KV heads of 64, FFN 5632) plain, with PARA's per-row scaling, and with batched
// LoRA (rank 8/16/64 on q,v or on all seven projections), at batch 1/8/32/128 with 1, 8 or
// all-distinct adapters.
//
//   para-bench-adapter-projections [--rounds 12] [--threads N] [--batches 1,8,32,128]
//                                  [--adapter-dir DIR]
//
// A case runs the layer's four projection GEMMs (QKV, O, gate/up, down) with the kernels the CPU
// backend uses after each: the QKV epilogue (PARA q/v scaling, RoPE, KV write), SwiGLU (PARA u
// scaling) and, for LoRA, the batched shrink/expand of every targeted projection. Attention is
// left out: it is the same in every case. Every round runs all cases of a batch size back to back
// in random order; a case's overhead is the median over rounds of its time over plain's time in
// the same round, so the drifts of a shared machine cancel.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <vector>

#include "absl/strings/str_cat.h"
#include "bench/tinyllama_layer.h"
#include "engine/aligned_buffer.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/kernels.h"
#include "engine/cpu/lora_kernels.h"
#include "engine/lora_adapter.h"
#include "engine/model_config.h"
#include "common/status_macros.h"
#include "engine/thread_pool.h"
#include "tools/args.h"
#include "tools/tiny_lora.h"

namespace para::bench {
namespace {

void FillRandom(AlignedBuffer& b, float scale, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> d(-scale, scale);
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = d(rng);
}

struct Weights {
  AlignedBuffer wqkv{kQkv * kHidden}, wo{kHidden * kQ}, wgu{2 * kFfn * kHidden}, wd{kHidden * kFfn};
  Weights() {
    FillRandom(wqkv, 0.02f, 1);
    FillRandom(wo, 0.02f, 2);
    FillRandom(wgu, 0.02f, 3);
    FillRandom(wd, 0.02f, 4);
  }
};

struct Variant {
  std::string name;  // column header
  int kind;          // 0 plain, 1 PARA, 2 LoRA
  int64_t rank = 0;
  std::string targets;  // "q_proj,v_proj" or "all"
};

struct Case {
  int64_t m;
  const Variant* variant;
  int64_t adapters;  // distinct adapters among the rows
  std::vector<double> times;
};

class Bench {
 public:
  Bench(ThreadPool* pool, std::string adapter_dir) : pool_(pool), dir_(std::move(adapter_dir)) {}

  // LoRA adapters of (rank, targets), `n` of them, written once under the adapter dir.
  absl::StatusOr<std::vector<std::shared_ptr<const LoraAdapter>>> Loras(int64_t rank,
                                                                        const std::string& targets,
                                                                        int64_t n) {
    const std::string key = absl::StrCat(rank, "_", targets == "all" ? "all" : "qv");
    auto& have = loras_[key];
    const std::string model_dir = dir_ + "/model";
    if (!std::filesystem::exists(model_dir + "/config.json")) {
      std::filesystem::create_directories(model_dir);
      std::ofstream(model_dir + "/config.json") << ModelConfigToJson(LayerConfig());
    }
    while (static_cast<int64_t>(have.size()) < n) {
      const std::string path = absl::StrCat(dir_, "/lora_", key, "_", have.size());
      if (!std::filesystem::exists(path + "/adapter_config.json")) {
        tools::TinyLoraOptions o;
        o.r = rank;
        o.alpha = 2.0 * rank;
        ASSIGN_OR_RETURN(o.targets, tools::ParseLoraTargets(targets));
        o.seed = have.size();
        RETURN_IF_ERROR(tools::MakeTinyLoraAdapter(path, model_dir, o));
      }
      ASSIGN_OR_RETURN(auto a, LoraAdapter::Load(path, LayerConfig(), 64));
      have.push_back(std::move(a));
    }
    return std::vector<std::shared_ptr<const LoraAdapter>>(have.begin(), have.begin() + n);
  }

  absl::Status Run(Case& c, const Weights& w) {
    const int64_t m = c.m;
    x_.EnsureSize(m * kHidden);
    qkv_.EnsureSize(m * kQkv);
    attn_.EnsureSize(m * kQ);
    h_.EnsureSize(m * kHidden);
    gu_.EnsureSize(m * 2 * kFfn);
    act_.EnsureSize(m * kFfn);
    cache_.EnsureSize(m * 2 * kKv);
    std::vector<const float*> vec(m, nullptr);
    std::vector<cpu::LoraRowGroup> groups;
    if (c.variant->kind == 1) {
      while (static_cast<int64_t>(vectors_.size()) < c.adapters) {
        vectors_.emplace_back(kQ + kKv + kFfn);
        FillRandom(vectors_.back(), 0.2f, 100 + vectors_.size());
        for (size_t i = 0; i < vectors_.back().size(); ++i) vectors_.back().data()[i] += 1.0f;
      }
      for (int64_t r = 0; r < m; ++r) vec[r] = vectors_[r % c.adapters].data();
    } else if (c.variant->kind == 2) {
      ASSIGN_OR_RETURN(auto loras, Loras(c.variant->rank, c.variant->targets, c.adapters));
      std::vector<const LoraAdapter*> row(m);
      for (int64_t r = 0; r < m; ++r)
        row[r] = loras[r % c.adapters].get();  // decode: rows interleave
      groups = cpu::GroupLoraRows(row);
    }
    auto lora = [&](LoraSite site, const float* x, int64_t ldx, float* y, int64_t ldy) {
      if (!groups.empty()) cpu::ApplyLoraSite(pool_, groups, 0, site, x, ldx, y, ldy, &scratch_);
    };
    auto t0 = std::chrono::steady_clock::now();
    cpu::Linear(pool_, m, kQkv, kHidden, x_.data(), kHidden, w.wqkv.data(), 0.f, qkv_.data(), kQkv);
    lora(LoraSite::kQkv, x_.data(), kHidden, qkv_.data(), kQkv);
    pool_->ParallelFor(m, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        float* q = qkv_.data() + r * kQkv;
        cpu::QkvRowEpilogue(q, q + kQ, q + kQ + kKv, kHeads, kKvHeads, kHeadDim, cos_, sin_, vec[r],
                            vec[r] ? vec[r] + kQ : nullptr);
        cpu::StoreRow(DType::kF32, q + kQ, 2 * kKv, cache_.data() + r * 2 * kKv);
        std::copy_n(q, kQ, attn_.data() + r * kQ);  // stands in for attention's output
      }
    });
    cpu::Linear(pool_, m, kHidden, kQ, attn_.data(), kQ, w.wo.data(), 1.f, h_.data(), kHidden);
    lora(LoraSite::kO, attn_.data(), kQ, h_.data(), kHidden);
    cpu::Linear(pool_, m, 2 * kFfn, kHidden, x_.data(), kHidden, w.wgu.data(), 0.f, gu_.data(),
                2 * kFfn);
    lora(LoraSite::kGateUp, x_.data(), kHidden, gu_.data(), 2 * kFfn);
    pool_->ParallelFor(m, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* row = gu_.data() + r * 2 * kFfn;
        cpu::SwiGluRow(row, row + kFfn, vec[r] ? vec[r] + kQ + kKv : nullptr, kFfn,
                       act_.data() + r * kFfn);
      }
    });
    cpu::Linear(pool_, m, kHidden, kFfn, act_.data(), kFfn, w.wd.data(), 1.f, h_.data(), kHidden);
    lora(LoraSite::kDown, act_.data(), kFfn, h_.data(), kHidden);
    c.times.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    return absl::OkStatus();
  }

 private:
  ThreadPool* pool_;
  std::string dir_;
  std::map<std::string, std::vector<std::shared_ptr<const LoraAdapter>>> loras_;
  std::vector<AlignedBuffer> vectors_;
  AlignedBuffer x_, qkv_, attn_, h_, gu_, act_, cache_;
  float cos_[kHeadDim / 2] = {}, sin_[kHeadDim / 2] = {};
  cpu::LoraScratch scratch_;
};

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

absl::Status Main(int argc, char** argv) {
  ASSIGN_OR_RETURN(
      tools::Args a,
      tools::Args::Parse(argc, argv, 1, {"rounds", "threads", "batches", "adapter-dir"}, {}));
  ASSIGN_OR_RETURN(int64_t rounds, a.Int("rounds", 12));
  ASSIGN_OR_RETURN(int64_t threads, a.Int("threads", 0));
  ASSIGN_OR_RETURN(std::vector<int32_t> batches,
                   tools::ParseIdList(a.GetOr("batches", "1,8,32,128"), "--batches"));
  RETURN_IF_ERROR(cpu::InitBlas());
  ThreadPool pool(static_cast<int>(threads));
  Weights w;
  Bench bench(&pool, a.GetOr("adapter-dir", "/tmp/para-bench-adapter-projections"));
  const std::vector<Variant> variants = {{"plain", 0},
                                         {"PARA", 1},
                                         {"LoRA r8 qv", 2, 8, "q_proj,v_proj"},
                                         {"LoRA r16 qv", 2, 16, "q_proj,v_proj"},
                                         {"LoRA r64 qv", 2, 64, "q_proj,v_proj"},
                                         {"LoRA r8 all", 2, 8, "all"},
                                         {"LoRA r16 all", 2, 16, "all"},
                                         {"LoRA r64 all", 2, 64, "all"}};
  std::printf(
      "Adapter projections vs plain: the four projection GEMMs of one TinyLlama-1.1B layer plus\n"
      "their adapter work; %d threads, OpenBLAS %s; median over %ld rounds of per-round ratios\n",
      pool.num_threads(), cpu::BlasKernelName(), rounds);
  std::mt19937 rng(7);
  for (int m : batches) {
    std::vector<Case> cases;
    cases.push_back({m, &variants[0], 0, {}});
    std::vector<int64_t> counts = {1};  // distinct adapters among the rows: 1, 8, all
    if (m >= 8) counts.push_back(8);
    if (m > 8) counts.push_back(m);
    for (size_t v = 1; v < variants.size(); ++v)
      for (int64_t n : counts) cases.push_back({m, &variants[v], n, {}});
    for (auto& c : cases) RETURN_IF_ERROR(bench.Run(c, w));  // warm-up, creates adapters
    for (auto& c : cases) c.times.clear();
    for (int64_t r = 0; r < rounds; ++r) {
      std::vector<size_t> order(cases.size());
      std::iota(order.begin(), order.end(), 0);
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i : order) RETURN_IF_ERROR(bench.Run(cases[i], w));
    }
    std::printf("\nbatch %d: plain %.3f ms\n%-14s %12s %12s %12s\n", m, Median(cases[0].times),
                "variant", "1 adapter", "8 adapters", "distinct");
    for (size_t v = 1; v < variants.size(); ++v) {
      std::printf("%-14s", variants[v].name.c_str());
      for (int64_t n : {int64_t{1}, int64_t{8}, int64_t{m}}) {
        auto it = std::find_if(cases.begin(), cases.end(), [&](const Case& c) {
          return c.variant == &variants[v] && c.adapters == n;
        });
        if (it == cases.end()) {
          std::printf(" %12s", "-");
          continue;
        }
        std::vector<double> ratios;
        for (size_t r = 0; r < cases[0].times.size(); ++r)
          ratios.push_back(it->times[r] / cases[0].times[r]);
        std::printf(" %+11.2f%%", 100.0 * (Median(ratios) - 1.0));
      }
      std::printf("\n");
    }
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  absl::Status s = para::bench::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-bench-adapter-projections: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
