// Index arithmetic and tiling decisions of the CUDA kernels, as __host__ __device__ functions:
// the kernels call them on the device, the host code that plans a step calls them on the CPU,
// and tests/engine/cuda_kernel_math_test.cc checks them with the ordinary g++ build (no GPU, no
// nvcc needed). Pure functions of their arguments, no state; safe from any thread.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define PARA_HD __host__ __device__ __forceinline__
#else
#define PARA_HD inline
#endif

namespace para::cuda {

PARA_HD int64_t CeilDiv(int64_t a, int64_t b) { return (a + b - 1) / b; }
PARA_HD int64_t RoundUp(int64_t a, int64_t b) { return CeilDiv(a, b) * b; }
PARA_HD float MaxF(float a, float b) { return a > b ? a : b; }
PARA_HD float BitsToFloat(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  return __builtin_bit_cast(float, u);
#endif
}
PARA_HD uint32_t FloatToBits(float f) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(f);
#else
  return __builtin_bit_cast(uint32_t, f);
#endif
}
PARA_HD float Exp(float x) {
#if defined(__CUDA_ARCH__)
  return expf(x);
#else
  return __builtin_expf(x);
#endif
}
inline constexpr float kNegInf = -__builtin_huge_valf();

// ---- BF16 as bits (round to nearest even; NaN stays NaN), the same rule as engine/dtype.h.
PARA_HD float Bf16BitsToF32(uint16_t v) { return BitsToFloat(static_cast<uint32_t>(v) << 16); }
PARA_HD uint16_t F32ToBf16Bits(float f) {
  const uint32_t bits = FloatToBits(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((bits >> 16) | 0x40);
  const uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<uint16_t>((bits + rounding) >> 16);
}

// ---- The paged KV cache (engine/kv_cache.h's KvLayout, restated for the device): a block is
// [layer][K|V][kv_head][slot][head_dim] elements.
struct KvGeometry {
  int32_t layers, kv_heads, head_dim, block_size;
};
PARA_HD int64_t KvBlockElements(const KvGeometry& g) {
  return static_cast<int64_t>(g.layers) * 2 * g.kv_heads * g.block_size * g.head_dim;
}
// Element offset, from the pool's start, of position `pos`'s row for (layer, kv, head) of a
// sequence whose block table is `blocks`.
PARA_HD int64_t KvRowOffset(const KvGeometry& g, const int32_t* blocks, int32_t pos, int32_t layer,
                            int32_t kv, int32_t head) {
  const int64_t block = blocks[pos / g.block_size];
  const int64_t slot = pos % g.block_size;
  return block * KvBlockElements(g) +
         ((static_cast<int64_t>(layer) * 2 + kv) * g.kv_heads + head) * g.block_size * g.head_dim +
         slot * g.head_dim;
}

// ---- Rows of a step. Sequence s owns rows [seq_row_begin[s], seq_row_begin[s + 1]); the last
// entry is the step's row count. Finds the sequence of a row by binary search.
PARA_HD int32_t SeqOfRow(const int32_t* seq_row_begin, int32_t num_seqs, int32_t row) {
  int32_t lo = 0, hi = num_seqs - 1;
  while (lo < hi) {
    const int32_t mid = (lo + hi + 1) / 2;
    if (seq_row_begin[mid] <= row) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}

// ---- Split-K attention (flash-decoding). A query row at position `pos` attends to positions
// [0, pos]; they are cut into chunks of `chunk` positions, each chunk handled by its own warp,
// whose partial results (running max, sum of exponentials, weighted sum of values) are merged.
struct SplitPlan {
  int32_t splits;  // chunks per query row (the most any row of the step uses)
  int32_t chunk;   // positions per chunk, a multiple of 16
};
// Chooses the chunk so that the step's (row, head) pairs times splits fill about `target_warps`
// warps, within the `max_partials` partial-result slots of the scratch buffer, with chunks of at
// least `min_chunk` positions (short contexts are not split).
PARA_HD SplitPlan PlanSplits(int64_t row_heads, int32_t max_ctx, int64_t target_warps,
                             int64_t max_partials, int32_t min_chunk) {
  if (row_heads <= 0) return {1, 16};
  int64_t splits = row_heads >= target_warps ? 1 : CeilDiv(target_warps, row_heads);
  const int64_t by_len = CeilDiv(max_ctx, min_chunk);
  if (splits > by_len) splits = by_len;
  const int64_t by_room = max_partials / (row_heads > 0 ? row_heads : 1);
  if (splits > by_room) splits = by_room;
  if (splits < 1) splits = 1;
  int64_t chunk = RoundUp(CeilDiv(max_ctx > 0 ? max_ctx : 1, splits), 16);
  splits = CeilDiv(max_ctx > 0 ? max_ctx : 1, chunk);
  return {static_cast<int32_t>(splits), static_cast<int32_t>(chunk)};
}
// Positions [*begin, *end) of chunk `split` for a row that attends to `ctx` positions; empty
// (begin >= end) when the row's context ends before the chunk.
PARA_HD void SplitRange(const SplitPlan& p, int32_t split, int32_t ctx, int32_t* begin,
                        int32_t* end) {
  *begin = split * p.chunk;
  const int32_t e = *begin + p.chunk;
  *end = e < ctx ? e : ctx;
}

// Online softmax state of one chunk: m = max score, l = Σ exp(score - m). Merging two states
// rescales each to the larger max; MergeWeight gives the factor a state's l and value sum take.
struct SoftmaxState {
  float m, l;
};
PARA_HD float MergeWeight(float m_part, float m_total) {
  return m_part == kNegInf ? 0.f : Exp(m_part - m_total);
}
PARA_HD SoftmaxState MergeSoftmax(SoftmaxState a, SoftmaxState b) {
  const float m = MaxF(a.m, b.m);
  if (m == kNegInf) return {m, 0.f};
  return {m, a.l * MergeWeight(a.m, m) + b.l * MergeWeight(b.m, m)};
}

// ---- Prefill attention: the rows of one sequence's prompt are cut into tiles of query rows that
// share each chunk of K/V staged in shared memory. A tile's (row, query head of the KV head's
// group) pairs are spread over kPrefillWarps warps, at most kPrefillPairs per warp, so a tile has
// at most kPrefillWarps * kPrefillPairs / group rows.
inline constexpr int32_t kPrefillWarps = 8;
inline constexpr int32_t kPrefillPairs = 2;
inline constexpr int32_t kPrefillChunk = 16;  // K/V positions staged at a time
PARA_HD int32_t PrefillTileRows(int32_t group) {
  const int32_t rows = kPrefillWarps * kPrefillPairs / group;
  return rows < 1 ? 1 : rows;
}
// False when even a one-row tile would need more pairs than a block holds (then every row goes
// through the split-K kernel).
PARA_HD bool PrefillTilesFit(int32_t group) { return group <= kPrefillWarps * kPrefillPairs; }
struct AttnTile {
  int32_t first_row;  // the tile's first row of the step (its rows are consecutive)
  int32_t count;      // rows in the tile
};

// ---- Row tiles for LoRA (SGMV/BGMV). Rows sharing an adapter are cut into tiles of at most
// `tile` rows; a tile's rows are read through an index list (a contiguous segment is a run of
// consecutive indices, scattered decode rows a gather), so one tile reads the adapter's matrices
// once for all its rows.
struct LoraTile {
  int32_t table;  // index of the adapter's descriptor table in the step's table list
  int32_t first;  // first entry of the tile in the step's row-index list
  int32_t count;  // rows in the tile, 1..tile
};
// Tiles for a group of `n` rows whose indices start at `first`; writes CeilDiv(n, tile) tiles.
PARA_HD int32_t TileGroup(int32_t table, int32_t first, int32_t n, int32_t tile, LoraTile* out) {
  int32_t t = 0;
  for (int32_t r = 0; r < n; r += tile, ++t)
    out[t] = {table, first + r, n - r < tile ? n - r : tile};
  return t;
}

// One LoRA site (projections that read the same input) of one adapter layer, as the device
// kernels read it: A stacked [total_rank, in_dim] and, per module, B [out_dim, rank] with the
// scale folded in, both BF16 bits.
struct LoraModuleDesc {
  const uint16_t* b;
  int32_t rank, a_offset, out_offset, out_dim;
};
struct LoraSiteDesc {
  const uint16_t* a;
  int32_t in_dim, total_rank, num_modules;
  LoraModuleDesc modules[3];
};
// The module whose output columns hold site column `col`, or -1 (a column no module targets).
PARA_HD int32_t ModuleOfColumn(const LoraSiteDesc& s, int32_t col) {
  for (int32_t i = 0; i < s.num_modules; ++i)
    if (col >= s.modules[i].out_offset && col < s.modules[i].out_offset + s.modules[i].out_dim)
      return i;
  return -1;
}

// ---- PARA vectors in pool pages (engine/para_vectors.h's layout): (layer, segment) lives in
// page vector_pages[slot_page] at float offset slot_offset.
PARA_HD int64_t ParaVectorOffset(int64_t page_floats, const int32_t* vector_pages,
                                 int32_t slot_page, int64_t slot_offset) {
  return static_cast<int64_t>(vector_pages[slot_page]) * page_floats + slot_offset;
}
// Which segment (0: l_q, 1: l_v, 2: l_u) output `o` of the generator belongs to, and its index
// inside the segment.
PARA_HD int32_t ParaSegmentOf(int64_t o, int64_t q_dim, int64_t kv_dim, int64_t* index) {
  if (o < q_dim) {
    *index = o;
    return 0;
  }
  if (o < q_dim + kv_dim) {
    *index = o - q_dim;
    return 1;
  }
  *index = o - q_dim - kv_dim;
  return 2;
}

// ---- RoPE in Hugging Face's rotate_half layout: element i < half pairs with i + half.
PARA_HD void RopePair(float cos, float sin, float* a, float* b) {
  const float x = *a, y = *b;
  *a = x * cos - y * sin;
  *b = y * cos + x * sin;
}

// ---- Element ownership inside a warp: lane `lane` of 32 holds elements lane, lane + 32, ...
// of a head of `head_dim` (at most kMaxHeadDim) elements.
inline constexpr int32_t kMaxHeadDim = 256;
inline constexpr int32_t kMaxPerLane = kMaxHeadDim / 32;
PARA_HD int32_t LaneElements(int32_t head_dim, int32_t lane) {
  return lane < head_dim % 32 ? head_dim / 32 + 1 : head_dim / 32;
}

}  // namespace para::cuda
