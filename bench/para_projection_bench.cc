// Microbenchmark: PARA's per-row scaled projections against the plain projections they replace,
// on one TinyLlama-1.1B-shaped layer (hidden 2048, 32 heads / 4 KV heads of 64, FFN 5632).
//
//   para-bench-para-projections [--rounds 20] [--threads N]
//
// Each case runs one layer's QKV projection (one GEMM over all rows, then the per-row epilogue:
// q scaled then RoPE, k RoPE, v scaled then written to its KV slot) and its gate/up projection
// (one GEMM, then SwiGLU with u scaled), with the same kernels the CPU backend runs. Rows take
// their vectors from 1, 8 or all-distinct adapters; "plain" passes none. Every round runs the four
// cases of a batch size back to back in a random order; a case's overhead is the median over
// rounds of its time divided by plain's time in the same round, so drifts and bursts of a shared
// machine cancel instead of landing on one case.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "engine/aligned_buffer.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/kernels.h"
#include "engine/status_macros.h"
#include "engine/thread_pool.h"
#include "tools/args.h"

namespace para::bench {
namespace {

constexpr int64_t kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 64, kFfn = 5632;
constexpr int64_t kQ = kHeads * kHeadDim, kKv = kKvHeads * kHeadDim, kQkv = kQ + 2 * kKv;
constexpr int kBatches[] = {1, 8, 32, 128};
constexpr int kAdapters[] = {0, 1, 8, -1};  // 0 = plain, -1 = one adapter per row

void FillRandom(AlignedBuffer& b, float scale, uint64_t seed) {
  std::mt19937 rng(static_cast<uint32_t>(seed));
  std::uniform_real_distribution<float> d(-scale, scale);
  for (size_t i = 0; i < b.size(); ++i) b.data()[i] = d(rng);
}

struct Weights {
  AlignedBuffer wqkv{kQkv * kHidden}, wgu{2 * kFfn * kHidden};
  Weights() {
    FillRandom(wqkv, 0.02f, 1);
    FillRandom(wgu, 0.02f, 2);
  }
};

// Buffers of one (batch, adapters) case.
struct Case {
  int64_t m, adapters;
  AlignedBuffer x, qkv, gu, act, cache, cos, sin;
  std::vector<AlignedBuffer> vectors;  // per adapter: [l_q | l_v | l_u]
  std::vector<double> times;           // per round, ms

  Case(int64_t batch, int64_t n_adapters)
      : m(batch),
        adapters(n_adapters < 0 ? batch : n_adapters),
        x(m * kHidden),
        qkv(m * kQkv),
        gu(m * 2 * kFfn),
        act(m * kFfn),
        cache(m * 2 * kKv),
        cos(m * kHeadDim / 2),
        sin(m * kHeadDim / 2) {
    FillRandom(x, 1.0f, 3);
    for (int64_t i = 0; i < m * kHeadDim / 2; ++i) {
      cos.data()[i] = std::cos(0.1f * i);
      sin.data()[i] = std::sin(0.1f * i);
    }
    for (int64_t a = 0; a < adapters; ++a) {
      vectors.emplace_back(kQ + kKv + kFfn);
      FillRandom(vectors.back(), 0.2f, 10 + a);
      for (size_t i = 0; i < vectors.back().size(); ++i) vectors.back().data()[i] += 1.0f;
    }
  }

  const float* Vec(int64_t row, int64_t offset) const {
    return adapters == 0 ? nullptr : vectors[row % adapters].data() + offset;
  }

  void Run(const Weights& w, ThreadPool& pool) {
    cpu::Linear(&pool, m, kQkv, kHidden, x.data(), kHidden, w.wqkv.data(), 0.f, qkv.data(), kQkv);
    pool.ParallelFor(m, [&](int64_t b, int64_t e) {
      float* k_dst[kKvHeads];
      float* v_dst[kKvHeads];
      for (int64_t r = b; r < e; ++r) {
        for (int64_t g = 0; g < kKvHeads; ++g) {
          k_dst[g] = cache.data() + r * 2 * kKv + g * kHeadDim;
          v_dst[g] = cache.data() + r * 2 * kKv + kKv + g * kHeadDim;
        }
        float* q = qkv.data() + r * kQkv;
        cpu::QkvRowEpilogue(q, q + kQ, q + kQ + kKv, kHeads, kKvHeads, kHeadDim,
                            cos.data() + r * kHeadDim / 2, sin.data() + r * kHeadDim / 2, Vec(r, 0),
                            Vec(r, kQ), k_dst, v_dst);
      }
    });
    cpu::Linear(&pool, m, 2 * kFfn, kHidden, x.data(), kHidden, w.wgu.data(), 0.f, gu.data(),
                2 * kFfn);
    pool.ParallelFor(m, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r) {
        const float* row = gu.data() + r * 2 * kFfn;
        cpu::SwiGluRow(row, row + kFfn, Vec(r, kQ + kKv), kFfn, act.data() + r * kFfn);
      }
    });
  }
};

absl::Status Main(int argc, char** argv) {
  ASSIGN_OR_RETURN(tools::Args a, tools::Args::Parse(argc, argv, 1, {"rounds", "threads"}, {}));
  ASSIGN_OR_RETURN(int64_t rounds, a.Int("rounds", 20));
  ASSIGN_OR_RETURN(int64_t threads, a.Int("threads", 0));
  RETURN_IF_ERROR(cpu::InitBlas());
  ThreadPool pool(static_cast<int>(threads));
  Weights w;
  std::vector<std::unique_ptr<Case>> cases;
  for (int m : kBatches)
    for (int ad : kAdapters) cases.push_back(std::make_unique<Case>(m, ad));
  for (auto& c : cases) c->Run(w, pool);  // warm-up: touch every buffer
  std::mt19937 rng(42);
  for (int64_t round = 0; round < rounds; ++round) {
    for (size_t group = 0; group < cases.size(); group += 4) {
      std::vector<size_t> order = {group, group + 1, group + 2, group + 3};
      std::shuffle(order.begin(), order.end(), rng);
      for (size_t i : order) {
        auto t0 = std::chrono::steady_clock::now();
        cases[i]->Run(w, pool);
        cases[i]->times.push_back(
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count());
      }
    }
  }
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::printf(
      "PARA per-row scaled projections vs plain: QKV + gate/up of one TinyLlama-1.1B layer,\n"
      "%d threads, OpenBLAS %s, median of %ld rounds (overhead: median of per-round ratios)\n\n",
      pool.num_threads(), cpu::BlasKernelName(), rounds);
  std::printf("%-8s %12s %14s %14s %14s\n", "batch", "plain (ms)", "1 adapter", "8 adapters",
              "distinct");
  for (size_t i = 0; i < cases.size(); i += 4) {
    const Case& plain = *cases[i];
    std::printf("%-8ld %12.3f", plain.m, median(plain.times));
    for (size_t j = 1; j < 4; ++j) {
      std::vector<double> ratios;
      for (size_t r = 0; r < plain.times.size(); ++r)
        ratios.push_back(cases[i + j]->times[r] / plain.times[r]);
      std::printf(" %+13.2f%%", 100.0 * (median(ratios) - 1.0));
    }
    std::printf("\n");
  }
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  absl::Status s = para::bench::Main(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-bench-para-projections: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
