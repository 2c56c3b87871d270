// Batched LoRA on the CPU, Punica-style: the base projection stays one GEMM over every row of the
// step; afterwards, for the rows of each adapter, a shrink (T = X·Aᵀ, one GEMM over all of a site's
// stacked A matrices) and an expand per module (Y += T·Bᵀ, scale folded into B) add the deltas.
// A group whose rows are one contiguous range (a prefill, or decode rows the scheduler kept
// together) is read and written in place (SGMV-style segments); scattered rows (decode rows of
// different sequences sharing an adapter) are gathered into one GEMM and scattered back
// (BGMV-style). Work is split over groups (shrink) and over groups x modules x column blocks
// (expand) on the engine's thread pool; every task writes a disjoint block of the output.
// LoraScratch belongs to the backend; calls come from the engine thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "engine/aligned_buffer.h"
#include "engine/lora_adapter.h"
#include "engine/thread_pool.h"

namespace para::cpu {

struct LoraRowGroup {
  const LoraAdapter* adapter = nullptr;
  std::vector<int32_t> rows;  // ascending row indices of the step
  bool contiguous = true;     // rows == [rows.front(), rows.back()]
};

// Groups rows by adapter (null = no LoRA, skipped). `row_adapter[r]` is row r's adapter.
std::vector<LoraRowGroup> GroupLoraRows(std::span<const LoraAdapter* const> row_adapter);
// The same into `groups`, reusing its storage (the engine's step path).
void GroupLoraRows(std::span<const LoraAdapter* const> row_adapter,
                   std::vector<LoraRowGroup>* groups);

// One expand work item: a column block of one module of one group.
struct LoraExpandTask {
  int32_t group, module;
  int64_t col_begin, col_end;  // within the module's output
};

// Everything ApplyLoraSite needs between calls; grown to the largest step, then reused, so a
// step allocates nothing once warm.
struct LoraScratch {
  AlignedBuffer shrink;               // T for every group
  AlignedBuffer gather;               // gathered X rows of non-contiguous groups
  std::vector<AlignedBuffer> expand;  // per thread: Y block of a non-contiguous group
  std::vector<int64_t> t_off, x_off;  // per group: offsets in `shrink` and `gather`
  std::vector<LoraExpandTask> tasks;
};

// y[row, module.out_offset + j] += Σ_k (x[row] · A_kᵀ) B[j, k] for every group's rows and every
// module the adapter has at (layer, site).
void ApplyLoraSite(ThreadPool* pool, std::span<const LoraRowGroup> groups, int64_t layer,
                   LoraSite site, const float* x, int64_t ldx, float* y, int64_t ldy,
                   LoraScratch* scratch);

}  // namespace para::cpu
