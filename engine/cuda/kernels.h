// The CUDA backend's kernels, as host functions that launch them on a stream (kernels.cu). Every
// pointer argument is device memory unless said otherwise; nothing here allocates, synchronises
// or checks errors (the caller checks cudaGetLastError once per step). The index arithmetic the
// kernels share with the host lives in kernel_math.h. Plain C++ header: the backend and the
// tests include it without nvcc. Safe from any thread for distinct streams and outputs.
#pragma once

#include <cstdint>

#include "engine/cuda/kernel_math.h"
#include "engine/cuda/sample_math.h"

typedef struct CUstream_st* cudaStream_t;

namespace para::cuda {

// Element type of the KV cache on the device.
enum class KvType : int32_t { kF32 = 0, kF16 = 1, kBF16 = 2 };

// A step's per-row and per-sequence metadata (device copies of what the host planned).
struct StepRows {
  const int32_t* tokens = nullptr;        // [rows]
  const int32_t* pos = nullptr;           // [rows] absolute position
  const int32_t* row_seq = nullptr;       // [rows] sequence of the row
  const int32_t* seq_blocks = nullptr;    // [seqs] offset of the sequence's table in `blocks`
  const int32_t* blocks = nullptr;        // block tables, concatenated
  const int32_t* seq_vp = nullptr;        // [seqs] offset in `vector_pages`, -1 = no PARA
  const int32_t* vector_pages = nullptr;  // PARA vector pages, concatenated
  int32_t rows = 0;
};

// The device pool of KV blocks and PARA pages (one allocation) and where PARA vectors sit in it.
struct PoolView {
  void* base = nullptr;
  KvGeometry geo{};
  KvType type = KvType::kBF16;
  int64_t page_floats = 0;               // block bytes / 4: a block used as a page of floats
  const int32_t* slot_page = nullptr;    // [layers * 3] page index of (layer, segment)
  const int64_t* slot_offset = nullptr;  // [layers * 3] float offset of (layer, segment)
};

// h[r, :] = embed[tokens[r], :] (BF16 table, F32 rows).
void LaunchEmbed(const uint16_t* embed, int64_t hidden, const int32_t* tokens, int32_t rows,
                 float* h, cudaStream_t s);
// out[i, :] = bf16(rmsnorm(h[src_row(i), :]) * w); src_row(i) = rows_index[i] or i when null.
void LaunchRmsNorm(const float* h, const float* w, float eps, int64_t hidden,
                   const int32_t* rows_index, int32_t rows, uint16_t* out, cudaStream_t s);
// cos/sin[r, i] = cos/sin(pos[r] * inv_freq[i]) computed in double, stored as float.
void LaunchRopeTable(const int32_t* pos, int32_t rows, const double* inv_freq, int32_t half,
                     float* cos, float* sin, cudaStream_t s);
// In place on the F32 QKV rows: q *= l_q then RoPE, k RoPE, v *= l_v; then K and V are written
// into each row's slot of the paged cache for `layer`.
void LaunchQkvEpilogue(float* qkv, int32_t nq, int32_t nkv, int32_t hd, const float* cos,
                       const float* sin, const StepRows& rows, const PoolView& pool, int32_t layer,
                       cudaStream_t s);
// Causal attention of the rows listed in `row_list` (`count` of them; decode rows) over their
// sequences' cached positions, split-K as `plan` says; `partials` holds count * nq * plan.splits *
// (hd + 2) floats; out is BF16 [rows, nq * hd] (only the listed rows are written).
void LaunchAttention(const float* qkv, int32_t nq, int32_t nkv, int32_t hd, const StepRows& rows,
                     const int32_t* row_list, int32_t count, const PoolView& pool, int32_t layer,
                     SplitPlan plan, float* partials, uint16_t* out, cudaStream_t s);
// Causal attention of the rows of each tile (consecutive rows of one sequence, at most
// PrefillTileRows(nq / nkv)), K/V staged in shared memory once per tile and KV head.
void LaunchPrefillAttention(const float* qkv, int32_t nq, int32_t nkv, int32_t hd,
                            const StepRows& rows, const AttnTile* tiles, int32_t num_tiles,
                            const PoolView& pool, int32_t layer, uint16_t* out, cudaStream_t s);
// act[r, :] = bf16(silu(gate) * (up * l_u)) from gu = [gate | up] F32 rows of 2 * ffn.
void LaunchSwiGlu(const float* gu, int64_t ffn, const StepRows& rows, const PoolView& pool,
                  int32_t layer, uint16_t* act, cudaStream_t s);

// One sequence generating its PARA vectors this step, for one layer.
struct ParaGenItem {
  const float* down;  // [r, hidden]
  const float* up;    // [d_out, r]
  const float* bias;  // [d_out]
  int32_t r, pooler /* 0 last, 1 mean */, activation /* ParaActivation */;
  int32_t row_begin, prompt_len, seq;
};
// For every item: pools its prompt rows of h, runs the bottleneck and writes l_q, l_v, l_u into
// the sequence's pages. `pooled` holds items * hidden floats, `t` items * max_r floats.
void LaunchParaGenerate(const ParaGenItem* items, int32_t num_items, int32_t max_r, const float* h,
                        int64_t hidden, int64_t q_dim, int64_t kv_dim, int64_t ffn,
                        const StepRows& rows, const PoolView& pool, int32_t layer, float* pooled,
                        float* t, cudaStream_t s);

// LoRA over row tiles (kernel_math.h): `tables[tile.table]` is an adapter's [layers * 4] site
// descriptors. Shrink: t[row, k] = x[row] · A[k] for k < total_rank. Expand: y[row, col] +=
// Σ_k t[row, a_offset + k] · B[col - out_offset, k] over the site's `ncols` output columns.
inline constexpr int32_t kLoraTileRows = 8;
void LaunchLoraShrink(const uint16_t* x, int64_t ldx, const LoraTile* tiles, int32_t num_tiles,
                      const int32_t* row_index, const LoraSiteDesc* const* tables, int32_t site,
                      int32_t max_total_rank, float* t, int64_t ldt, cudaStream_t s);
void LaunchLoraExpand(const float* t, int64_t ldt, const LoraTile* tiles, int32_t num_tiles,
                      const int32_t* row_index, const LoraSiteDesc* const* tables, int32_t site,
                      int32_t ncols, float* y, int64_t ldy, cudaStream_t s);

// Per row of logits: the arg-max token (lowest id on ties) and its log-probability under the
// softmax of the row.
void LaunchGreedy(const float* logits, int32_t rows, int64_t vocab, int32_t* token, float* logprob,
                  cudaStream_t s);

// The device sampler (sample_kernels.cu, sample_math.h): draw i samples row
// descs[i].logit_row - first_row of `logits` ([rows, vocab]) and writes out[i], and its top
// alternatives to top_ids / top_lp[i * max_top ...]. Scratch per draw: v[vocab] and
// keys / ids[SortCapacity(vocab)]; descs, edit_ids and edits are the step's (device copies).
struct SampleLaunch {
  const float* logits;
  int64_t vocab;
  const SampleRowDesc* descs;
  const int32_t* edit_ids;
  const SampleEdit* edits;
  float* v;
  uint32_t* keys;
  int32_t* ids;
  SampleRowOut* out;
  int32_t* top_ids;
  float* top_lp;
  int32_t max_top;
};
void LaunchSample(const SampleLaunch& a, int32_t first_row, int32_t draws, cudaStream_t s);

// dst[i] = bf16(src[i]) for n F32 values (weights going to the device).
void LaunchF32ToBf16(const float* src, int64_t n, uint16_t* dst, cudaStream_t s);

}  // namespace para::cuda
