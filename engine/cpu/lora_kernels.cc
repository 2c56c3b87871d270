#include "engine/cpu/lora_kernels.h"

#include <algorithm>
#include <atomic>

#include "engine/cpu/blas.h"

namespace para::cpu {
namespace {

constexpr int64_t kExpandBlock = 512;  // output columns per expand task

// C[m, n] (+)= A[m, k] · B[n, k]ᵀ; GEMV when m == 1.
void Gemm(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b, float beta,
          float* c, int64_t ldc) {
  if (m == 1) {
    Sgemv(n, k, b, k, a, beta, c);
  } else {
    SgemmNT(m, n, k, a, lda, b, k, beta, c, ldc);
  }
}

}  // namespace

std::vector<LoraRowGroup> GroupLoraRows(std::span<const LoraAdapter* const> row_adapter) {
  std::vector<LoraRowGroup> groups;
  GroupLoraRows(row_adapter, &groups);
  return groups;
}

void GroupLoraRows(std::span<const LoraAdapter* const> row_adapter,
                   std::vector<LoraRowGroup>* groups) {
  // Groups keep their row vectors' storage across steps: a step reuses the first `used`.
  size_t used = 0;
  for (int32_t r = 0; r < static_cast<int32_t>(row_adapter.size()); ++r) {
    const LoraAdapter* a = row_adapter[r];
    if (a == nullptr) continue;
    size_t g = 0;
    while (g < used && (*groups)[g].adapter != a) ++g;  // few distinct adapters per step
    if (g == used) {
      if (used == groups->size()) groups->emplace_back();
      LoraRowGroup& fresh = (*groups)[used++];
      fresh.adapter = a;
      fresh.rows.clear();
      fresh.contiguous = true;
    }
    LoraRowGroup& grp = (*groups)[g];
    if (!grp.rows.empty() && grp.rows.back() != r - 1) grp.contiguous = false;
    grp.rows.push_back(r);
  }
  groups->resize(used);
}

void ApplyLoraSite(ThreadPool* pool, std::span<const LoraRowGroup> groups, int64_t layer,
                   LoraSite site, const float* x, int64_t ldx, float* y, int64_t ldy,
                   LoraScratch* scratch) {
  const int s = static_cast<int>(site);
  // Offsets of each group's T and gathered X in the scratch buffers.
  std::vector<int64_t>& t_off = scratch->t_off;
  std::vector<int64_t>& x_off = scratch->x_off;
  t_off.resize(groups.size());
  x_off.resize(groups.size());
  int64_t t_total = 0, x_total = 0;
  for (size_t g = 0; g < groups.size(); ++g) {
    const LoraSiteWeights& w = groups[g].adapter->layer(layer).sites[s];
    const int64_t n = static_cast<int64_t>(groups[g].rows.size());
    t_off[g] = t_total;
    x_off[g] = x_total;
    t_total += n * w.total_rank;
    if (!groups[g].contiguous && !w.empty()) x_total += n * w.in_dim;
  }
  if (t_total == 0) return;
  scratch->shrink.EnsureSize(t_total);
  scratch->gather.EnsureSize(std::max<int64_t>(1, x_total));

  // Shrink: T_g = X_g · A_siteᵀ, one GEMM per group over all the site's modules.
  pool->ParallelForDynamic(static_cast<int64_t>(groups.size()), [&](int64_t g) {
    const LoraRowGroup& grp = groups[g];
    const LoraSiteWeights& w = grp.adapter->layer(layer).sites[s];
    if (w.empty()) return;
    const int64_t n = static_cast<int64_t>(grp.rows.size());
    const float* xg = x + grp.rows[0] * ldx;
    int64_t ld = ldx;
    if (!grp.contiguous) {
      float* dst = scratch->gather.data() + x_off[g];
      for (int64_t i = 0; i < n; ++i)
        std::copy_n(x + grp.rows[i] * ldx, w.in_dim, dst + i * w.in_dim);
      xg = dst;
      ld = w.in_dim;
    }
    Gemm(n, w.total_rank, w.in_dim, xg, ld, w.a.data(), 0.f, scratch->shrink.data() + t_off[g],
         w.total_rank);
  });

  // Expand: Y_g[:, module columns] += T_g[:, module ranks] · B_moduleᵀ, in column blocks.
  std::vector<LoraExpandTask>& tasks = scratch->tasks;
  tasks.clear();
  for (size_t g = 0; g < groups.size(); ++g) {
    const LoraSiteWeights& w = groups[g].adapter->layer(layer).sites[s];
    for (size_t mi = 0; mi < w.modules.size(); ++mi)
      for (int64_t c = 0; c < w.modules[mi].out_dim; c += kExpandBlock)
        tasks.push_back({static_cast<int32_t>(g), static_cast<int32_t>(mi), c,
                         std::min(w.modules[mi].out_dim, c + kExpandBlock)});
  }
  if (scratch->expand.size() < static_cast<size_t>(pool->num_threads()))
    scratch->expand.resize(pool->num_threads());
  std::atomic<int64_t> next{0};
  pool->RunOnAll([&](int thread) {
    for (int64_t i = next.fetch_add(1); i < static_cast<int64_t>(tasks.size());
         i = next.fetch_add(1)) {
      const LoraExpandTask& task = tasks[i];
      const LoraRowGroup& grp = groups[task.group];
      const LoraSiteWeights& w = grp.adapter->layer(layer).sites[s];
      const LoraModule& mod = w.modules[task.module];
      const int64_t n = static_cast<int64_t>(grp.rows.size());
      const int64_t cols = task.col_end - task.col_begin;
      const float* t = scratch->shrink.data() + t_off[task.group] + mod.a_offset;
      const float* b = mod.b.data() + task.col_begin * mod.rank;
      const int64_t col = mod.out_offset + task.col_begin;
      if (grp.contiguous) {
        Gemm(n, cols, mod.rank, t, w.total_rank, b, 1.f, y + grp.rows[0] * ldy + col, ldy);
        continue;
      }
      AlignedBuffer& tmp = scratch->expand[thread];
      tmp.EnsureSize(n * cols);
      Gemm(n, cols, mod.rank, t, w.total_rank, b, 0.f, tmp.data(), cols);
      for (int64_t r = 0; r < n; ++r) {
        float* dst = y + grp.rows[r] * ldy + col;
        const float* src = tmp.data() + r * cols;
#pragma omp simd
        for (int64_t j = 0; j < cols; ++j) dst[j] += src[j];
      }
    }
  });
}

}  // namespace para::cpu
