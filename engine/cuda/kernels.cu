// The CUDA backend's kernels (see kernels.h for what each computes). F32 math throughout; BF16
// only where data is stored (weights, GEMM inputs, the KV cache when asked for).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>

#include "engine/cuda/kernels.h"

namespace para::cuda {
namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ float WarpSum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the total.
__device__ float BlockSum(float v) {
  __shared__ float partial[32];
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  v = WarpSum(v);
  __syncthreads();
  if (lane == 0) partial[warp] = v;
  __syncthreads();
  float total = 0.f;
  for (int i = 0; i < static_cast<int>(blockDim.x / 32); ++i) total += partial[i];
  return total;
}

__device__ __forceinline__ uint16_t ToBf16(float f) { return F32ToBf16Bits(f); }
__device__ __forceinline__ float FromBf16(uint16_t b) { return Bf16BitsToF32(b); }

// KV element access by cache type.
__device__ __forceinline__ float LoadKv(const void* base, int64_t i, KvType t) {
  switch (t) {
    case KvType::kF16:
      return __half2float(static_cast<const __half*>(base)[i]);
    case KvType::kBF16:
      return FromBf16(static_cast<const uint16_t*>(base)[i]);
    default:
      return static_cast<const float*>(base)[i];
  }
}
__device__ __forceinline__ void StoreKv(void* base, int64_t i, KvType t, float v) {
  switch (t) {
    case KvType::kF16:
      static_cast<__half*>(base)[i] = __float2half_rn(v);
      break;
    case KvType::kBF16:
      static_cast<uint16_t*>(base)[i] = ToBf16(v);
      break;
    default:
      static_cast<float*>(base)[i] = v;
  }
}

// The PARA vector of (row's sequence, layer, segment), or null when the sequence has none.
__device__ __forceinline__ const float* ParaVec(const StepRows& rows, const PoolView& pool,
                                                int32_t row, int32_t layer, int32_t seg) {
  const int32_t vp = rows.seq_vp[rows.row_seq[row]];
  if (vp < 0) return nullptr;
  const int32_t slot = layer * 3 + seg;
  return static_cast<const float*>(pool.base) +
         ParaVectorOffset(pool.page_floats, rows.vector_pages + vp, pool.slot_page[slot],
                          pool.slot_offset[slot]);
}

__global__ void EmbedKernel(const uint16_t* embed, int64_t hidden, const int32_t* tokens,
                            float* h) {
  const int64_t r = blockIdx.x;
  const uint16_t* src = embed + static_cast<int64_t>(tokens[r]) * hidden;
  for (int64_t i = threadIdx.x; i < hidden; i += blockDim.x) h[r * hidden + i] = FromBf16(src[i]);
}

__global__ void RmsNormKernel(const float* h, const float* w, float eps, int64_t hidden,
                              const int32_t* rows_index, uint16_t* out) {
  const int64_t i = blockIdx.x;
  const int64_t src = rows_index ? rows_index[i] : i;
  const float* x = h + src * hidden;
  float ss = 0.f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) ss += x[j] * x[j];
  ss = BlockSum(ss);
  const float scale = 1.0f / sqrtf(ss / static_cast<float>(hidden) + eps);
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x)
    out[i * hidden + j] = ToBf16(x[j] * scale * w[j]);
}

__global__ void RopeTableKernel(const int32_t* pos, const double* inv_freq, int32_t half,
                                float* cos_out, float* sin_out) {
  const int64_t r = blockIdx.x;
  for (int32_t i = threadIdx.x; i < half; i += blockDim.x) {
    const double a = pos[r] * inv_freq[i];
    cos_out[r * half + i] = static_cast<float>(::cos(a));
    sin_out[r * half + i] = static_cast<float>(::sin(a));
  }
}

__global__ void QkvEpilogueKernel(float* qkv, int32_t nq, int32_t nkv, int32_t hd, const float* cos,
                                  const float* sin, StepRows rows, PoolView pool, int32_t layer) {
  const int32_t r = blockIdx.x;
  const int32_t half = hd / 2;
  const int64_t qkv_n = static_cast<int64_t>(nq + 2 * nkv) * hd;
  float* q = qkv + r * qkv_n;
  float* k = q + static_cast<int64_t>(nq) * hd;
  float* v = k + static_cast<int64_t>(nkv) * hd;
  const float* lq = ParaVec(rows, pool, r, layer, 0);
  const float* lv = ParaVec(rows, pool, r, layer, 1);
  const float* c = cos + static_cast<int64_t>(r) * half;
  const float* sn = sin + static_cast<int64_t>(r) * half;
  for (int32_t p = threadIdx.x; p < nq * half; p += blockDim.x) {
    const int32_t head = p / half, i = p % half;
    float* a = q + head * hd + i;
    float* b = a + half;
    if (lq) {
      *a *= lq[head * hd + i];
      *b *= lq[head * hd + i + half];
    }
    RopePair(c[i], sn[i], a, b);
  }
  const int32_t seq = rows.row_seq[r];
  const int32_t* blocks = rows.blocks + rows.seq_blocks[seq];
  const int32_t position = rows.pos[r];
  for (int32_t p = threadIdx.x; p < nkv * half; p += blockDim.x) {
    const int32_t head = p / half, i = p % half;
    float a = k[head * hd + i], b = k[head * hd + i + half];
    RopePair(c[i], sn[i], &a, &b);
    const int64_t dst = KvRowOffset(pool.geo, blocks, position, layer, 0, head);
    StoreKv(pool.base, dst + i, pool.type, a);
    StoreKv(pool.base, dst + i + half, pool.type, b);
  }
  for (int32_t e = threadIdx.x; e < nkv * hd; e += blockDim.x) {
    const int32_t head = e / hd, i = e % hd;
    const float val = lv ? v[e] * lv[e] : v[e];
    StoreKv(pool.base, KvRowOffset(pool.geo, blocks, position, layer, 1, head) + i, pool.type, val);
  }
}

constexpr int kAttnWarps = 4;

// One warp per (listed row, query head, split): online softmax over the chunk's positions.
__global__ void AttentionKernel(const float* qkv, int32_t nq, int32_t nkv, int32_t hd,
                                StepRows rows, const int32_t* row_list, int32_t count,
                                PoolView pool, int32_t layer, SplitPlan plan, float* partials) {
  const int64_t item = static_cast<int64_t>(blockIdx.x) * kAttnWarps + threadIdx.x / 32;
  const int32_t lane = threadIdx.x % 32;
  const int64_t total = static_cast<int64_t>(count) * nq * plan.splits;
  if (item >= total) return;
  const int32_t split = static_cast<int32_t>(item % plan.splits);
  const int64_t rh = item / plan.splits;
  const int32_t hq = static_cast<int32_t>(rh % nq);
  const int32_t r = row_list[rh / nq];
  const int32_t kvh = hq / (nq / nkv);
  const int64_t qkv_n = static_cast<int64_t>(nq + 2 * nkv) * hd;
  const float scale = rsqrtf(static_cast<float>(hd));
  float qv[kMaxPerLane], acc[kMaxPerLane];
  const int32_t per_lane = LaneElements(hd, lane);
  const float* q = qkv + r * qkv_n + static_cast<int64_t>(hq) * hd;
  for (int32_t e = 0; e < kMaxPerLane; ++e) {
    qv[e] = e < per_lane ? q[lane + 32 * e] * scale : 0.f;
    acc[e] = 0.f;
  }
  int32_t begin, end;
  SplitRange(plan, split, rows.pos[r] + 1, &begin, &end);
  const int32_t* blocks = rows.blocks + rows.seq_blocks[rows.row_seq[r]];
  float m = kNegInf, l = 0.f;
  for (int32_t j = begin; j < end; ++j) {
    const int64_t ko = KvRowOffset(pool.geo, blocks, j, layer, 0, kvh);
    float dot = 0.f;
    for (int32_t e = 0; e < per_lane; ++e)
      dot += qv[e] * LoadKv(pool.base, ko + lane + 32 * e, pool.type);
    const float s = WarpSum(dot);
    const float m_new = MaxF(m, s);
    const float corr = MergeWeight(m, m_new);
    const float p = Exp(s - m_new);
    l = l * corr + p;
    const int64_t vo = KvRowOffset(pool.geo, blocks, j, layer, 1, kvh);
    for (int32_t e = 0; e < per_lane; ++e)
      acc[e] = acc[e] * corr + p * LoadKv(pool.base, vo + lane + 32 * e, pool.type);
    m = m_new;
  }
  float* out = partials + item * (hd + 2);
  if (lane == 0) {
    out[0] = m;
    out[1] = l;
  }
  for (int32_t e = 0; e < per_lane; ++e) out[2 + lane + 32 * e] = acc[e];
}

// One block per (tile, KV head): K/V chunks staged in shared memory as F32, each warp running the
// online softmax of up to kPrefillPairs (row, query head) pairs of the tile.
__global__ void PrefillAttentionKernel(const float* qkv, int32_t nq, int32_t nkv, int32_t hd,
                                       StepRows rows, const AttnTile* tiles, PoolView pool,
                                       int32_t layer, uint16_t* out) {
  extern __shared__ float stage[];  // [kPrefillChunk][hd] keys, then values
  const AttnTile tile = tiles[blockIdx.x];
  const int32_t kvh = blockIdx.y;
  const int32_t group = nq / nkv;
  const int32_t warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t qkv_n = static_cast<int64_t>(nq + 2 * nkv) * hd;
  const float scale = rsqrtf(static_cast<float>(hd));
  const int32_t per_lane = LaneElements(hd, lane);
  const int32_t pairs = tile.count * group;
  float qv[kPrefillPairs][kMaxPerLane], acc[kPrefillPairs][kMaxPerLane];
  float m[kPrefillPairs], l[kPrefillPairs];
  int32_t row[kPrefillPairs], pos[kPrefillPairs], head[kPrefillPairs];
  for (int32_t i = 0; i < kPrefillPairs; ++i) {
    const int32_t pair = warp + i * kPrefillWarps;
    row[i] = tile.first_row + (pair < pairs ? pair / group : 0);
    head[i] = kvh * group + (pair < pairs ? pair % group : 0);
    pos[i] = pair < pairs ? rows.pos[row[i]] : -1;  // -1: no pair, attends to nothing
    m[i] = kNegInf;
    l[i] = 0.f;
    const float* q = qkv + row[i] * qkv_n + static_cast<int64_t>(head[i]) * hd;
    for (int32_t e = 0; e < kMaxPerLane; ++e) {
      qv[i][e] = e < per_lane && pos[i] >= 0 ? q[lane + 32 * e] * scale : 0.f;
      acc[i][e] = 0.f;
    }
  }
  const int32_t* blocks = rows.blocks + rows.seq_blocks[rows.row_seq[tile.first_row]];
  const int32_t last = rows.pos[tile.first_row + tile.count - 1];  // the tile's longest context
  float* ks = stage;
  float* vs = stage + kPrefillChunk * hd;
  for (int32_t c0 = 0; c0 <= last; c0 += kPrefillChunk) {
    const int32_t n = last + 1 - c0 < kPrefillChunk ? last + 1 - c0 : kPrefillChunk;
    __syncthreads();
    for (int32_t e = threadIdx.x; e < n * hd; e += blockDim.x) {
      const int32_t j = e / hd, d = e % hd;
      ks[e] =
          LoadKv(pool.base, KvRowOffset(pool.geo, blocks, c0 + j, layer, 0, kvh) + d, pool.type);
      vs[e] =
          LoadKv(pool.base, KvRowOffset(pool.geo, blocks, c0 + j, layer, 1, kvh) + d, pool.type);
    }
    __syncthreads();
    for (int32_t i = 0; i < kPrefillPairs; ++i) {
      const int32_t stop = pos[i] + 1 - c0 < n ? pos[i] + 1 - c0 : n;  // causal
      for (int32_t j = 0; j < stop; ++j) {
        float dot = 0.f;
        for (int32_t e = 0; e < per_lane; ++e) dot += qv[i][e] * ks[j * hd + lane + 32 * e];
        const float s = WarpSum(dot);
        const float m_new = MaxF(m[i], s);
        const float corr = MergeWeight(m[i], m_new);
        const float p = Exp(s - m_new);
        l[i] = l[i] * corr + p;
        for (int32_t e = 0; e < per_lane; ++e)
          acc[i][e] = acc[i][e] * corr + p * vs[j * hd + lane + 32 * e];
        m[i] = m_new;
      }
    }
  }
  for (int32_t i = 0; i < kPrefillPairs; ++i) {
    if (pos[i] < 0) continue;
    uint16_t* o = out + static_cast<int64_t>(row[i]) * nq * hd + static_cast<int64_t>(head[i]) * hd;
    for (int32_t e = 0; e < per_lane; ++e) o[lane + 32 * e] = ToBf16(acc[i][e] / l[i]);
  }
}

// Merges the splits of one (listed row, head); one thread per head element.
__global__ void AttentionCombineKernel(const float* partials, const int32_t* row_list, int32_t nq,
                                       int32_t hd, int32_t splits, uint16_t* out) {
  const int64_t rh = blockIdx.x;
  const int64_t dst = (static_cast<int64_t>(row_list[rh / nq]) * nq + rh % nq) * hd;
  const float* p = partials + rh * splits * (hd + 2);
  SoftmaxState total{kNegInf, 0.f};
  for (int32_t s = 0; s < splits; ++s)
    total = MergeSoftmax(total, {p[s * (hd + 2)], p[s * (hd + 2) + 1]});
  for (int32_t d = threadIdx.x; d < hd; d += blockDim.x) {
    float v = 0.f;
    for (int32_t s = 0; s < splits; ++s)
      v += p[s * (hd + 2) + 2 + d] * MergeWeight(p[s * (hd + 2)], total.m);
    out[dst + d] = ToBf16(total.l > 0.f ? v / total.l : 0.f);
  }
}

__global__ void SwiGluKernel(const float* gu, int64_t ffn, StepRows rows, PoolView pool,
                             int32_t layer, uint16_t* act) {
  const int32_t r = blockIdx.y;
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= ffn) return;
  const float* lu = ParaVec(rows, pool, r, layer, 2);
  const float g = gu[r * 2 * ffn + i];
  const float u = gu[r * 2 * ffn + ffn + i] * (lu ? lu[i] : 1.f);
  act[r * ffn + i] = ToBf16(g / (1.0f + Exp(-g)) * u);
}

__device__ float ParaAct(int32_t a, float x) {
  switch (a) {
    case 0:  // exact GELU
      return 0.5f * x * (1.0f + erff(x * 0.70710678118654752f));
    case 1:  // tanh GELU
      return 0.5f * x * (1.0f + tanhf(0.79788456080286536f * (x + 0.044715f * x * x * x)));
    case 2:
      return x > 0.f ? x : 0.f;
    default:
      return x / (1.0f + expf(-x));
  }
}

__global__ void ParaPoolKernel(const ParaGenItem* items, const float* h, int64_t hidden,
                               float* pooled) {
  const ParaGenItem it = items[blockIdx.y];
  const int64_t j = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (j >= hidden) return;
  float v;
  if (it.pooler == 0) {
    v = h[static_cast<int64_t>(it.row_begin + it.prompt_len - 1) * hidden + j];
  } else {
    double sum = 0.0;
    for (int32_t p = 0; p < it.prompt_len; ++p)
      sum += h[static_cast<int64_t>(it.row_begin + p) * hidden + j];
    v = static_cast<float>(sum / it.prompt_len);
  }
  pooled[blockIdx.y * hidden + j] = v;
}

__global__ void ParaDownKernel(const ParaGenItem* items, const float* pooled, int64_t hidden,
                               int32_t max_r, float* t) {
  const ParaGenItem it = items[blockIdx.y];
  const int32_t k = blockIdx.x;
  if (k >= it.r) return;  // uniform over the block
  const float* w = it.down + static_cast<int64_t>(k) * hidden;
  const float* p = pooled + blockIdx.y * hidden;
  float s = 0.f;
  for (int64_t j = threadIdx.x; j < hidden; j += blockDim.x) s += w[j] * p[j];
  s = BlockSum(s);
  if (threadIdx.x == 0) t[blockIdx.y * max_r + k] = ParaAct(it.activation, s);
}

__global__ void ParaUpKernel(const ParaGenItem* items, const float* t, int32_t max_r, int64_t q_dim,
                             int64_t kv_dim, int64_t ffn, StepRows rows, PoolView pool,
                             int32_t layer) {
  const ParaGenItem it = items[blockIdx.y];
  const int64_t o = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (o >= q_dim + kv_dim + ffn) return;
  const float* tv = t + blockIdx.y * max_r;
  float v = 0.f;
  for (int32_t k = 0; k < it.r; ++k) v += it.up[o * it.r + k] * tv[k];
  v += it.bias[o];
  int64_t idx;
  const int32_t seg = ParaSegmentOf(o, q_dim, kv_dim, &idx);
  const int32_t slot = layer * 3 + seg;
  const int32_t vp = rows.seq_vp[it.seq];
  static_cast<float*>(pool.base)[ParaVectorOffset(pool.page_floats, rows.vector_pages + vp,
                                                  pool.slot_page[slot], pool.slot_offset[slot]) +
                                 idx] = v;
}

// Shrink: one warp per rank index k, all rows of the tile at once (A read once per tile).
constexpr int kShrinkWarps = 4;
__global__ void LoraShrinkKernel(const uint16_t* x, int64_t ldx, const LoraTile* tiles,
                                 const int32_t* row_index, const LoraSiteDesc* const* tables,
                                 int32_t site, float* t, int64_t ldt) {
  const LoraTile tile = tiles[blockIdx.x];
  const LoraSiteDesc& d = tables[tile.table][site];
  const int32_t k = blockIdx.y * kShrinkWarps + threadIdx.x / 32;
  const int32_t lane = threadIdx.x % 32;
  if (k >= d.total_rank) return;
  const uint16_t* a = d.a + static_cast<int64_t>(k) * d.in_dim;
  float acc[kLoraTileRows];
  int64_t row_off[kLoraTileRows];
  for (int32_t i = 0; i < kLoraTileRows; ++i) {
    acc[i] = 0.f;
    row_off[i] = i < tile.count ? row_index[tile.first + i] * ldx : 0;
  }
  for (int32_t j = lane; j < d.in_dim; j += 32) {
    const float av = FromBf16(a[j]);
    for (int32_t i = 0; i < kLoraTileRows; ++i)
      if (i < tile.count) acc[i] += av * FromBf16(x[row_off[i] + j]);
  }
  for (int32_t i = 0; i < kLoraTileRows; ++i) {
    if (i >= tile.count) break;
    const float v = WarpSum(acc[i]);
    if (lane == 0) t[row_index[tile.first + i] * ldt + k] = v;
  }
}

// Expand: one thread per output column, all rows of the tile (B's row read once per tile).
__global__ void LoraExpandKernel(const float* t, int64_t ldt, const LoraTile* tiles,
                                 const int32_t* row_index, const LoraSiteDesc* const* tables,
                                 int32_t site, int32_t ncols, float* y, int64_t ldy) {
  const LoraTile tile = tiles[blockIdx.x];
  const LoraSiteDesc& d = tables[tile.table][site];
  const int32_t col = blockIdx.y * blockDim.x + threadIdx.x;
  if (col >= ncols) return;
  const int32_t mi = ModuleOfColumn(d, col);
  if (mi < 0) return;
  const LoraModuleDesc& md = d.modules[mi];
  const uint16_t* b = md.b + static_cast<int64_t>(col - md.out_offset) * md.rank;
  for (int32_t i = 0; i < tile.count; ++i) {
    const int64_t row = row_index[tile.first + i];
    const float* tr = t + row * ldt + md.a_offset;
    float v = 0.f;
    for (int32_t k = 0; k < md.rank; ++k) v += tr[k] * FromBf16(b[k]);
    y[row * ldy + col] += v;
  }
}

__global__ void GreedyKernel(const float* logits, int64_t vocab, int32_t* token, float* logprob) {
  __shared__ float best_v[32];
  __shared__ int32_t best_i[32];
  const float* x = logits + static_cast<int64_t>(blockIdx.x) * vocab;
  float bv = kNegInf;
  int32_t bi = 0x7fffffff;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x)
    if (x[i] > bv) bv = x[i], bi = static_cast<int32_t>(i);  // ascending i: first max kept
  for (int o = 16; o > 0; o >>= 1) {
    const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    const int32_t oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) bv = ov, bi = oi;
  }
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  if (lane == 0) best_v[warp] = bv, best_i[warp] = bi;
  __syncthreads();
  bv = kNegInf;
  bi = 0x7fffffff;
  for (int w = 0; w < static_cast<int>(blockDim.x / 32); ++w)
    if (best_v[w] > bv || (best_v[w] == bv && best_i[w] < bi)) bv = best_v[w], bi = best_i[w];
  float sum = 0.f;
  for (int64_t i = threadIdx.x; i < vocab; i += blockDim.x) sum += expf(x[i] - bv);
  sum = BlockSum(sum);
  if (threadIdx.x == 0) {
    token[blockIdx.x] = bi;
    logprob[blockIdx.x] = -logf(sum);
  }
}

__global__ void F32ToBf16Kernel(const float* src, int64_t n, uint16_t* dst) {
  const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < n) dst[i] = ToBf16(src[i]);
}

unsigned Blocks(int64_t n, int threads = kThreads) {
  return static_cast<unsigned>(CeilDiv(n, threads));
}

}  // namespace

void LaunchEmbed(const uint16_t* embed, int64_t hidden, const int32_t* tokens, int32_t rows,
                 float* h, cudaStream_t s) {
  if (rows > 0) EmbedKernel<<<rows, kThreads, 0, s>>>(embed, hidden, tokens, h);
}

void LaunchRmsNorm(const float* h, const float* w, float eps, int64_t hidden,
                   const int32_t* rows_index, int32_t rows, uint16_t* out, cudaStream_t s) {
  if (rows > 0) RmsNormKernel<<<rows, kThreads, 0, s>>>(h, w, eps, hidden, rows_index, out);
}

void LaunchRopeTable(const int32_t* pos, int32_t rows, const double* inv_freq, int32_t half,
                     float* cos, float* sin, cudaStream_t s) {
  if (rows > 0) RopeTableKernel<<<rows, 64, 0, s>>>(pos, inv_freq, half, cos, sin);
}

void LaunchQkvEpilogue(float* qkv, int32_t nq, int32_t nkv, int32_t hd, const float* cos,
                       const float* sin, const StepRows& rows, const PoolView& pool, int32_t layer,
                       cudaStream_t s) {
  if (rows.rows > 0)
    QkvEpilogueKernel<<<rows.rows, kThreads, 0, s>>>(qkv, nq, nkv, hd, cos, sin, rows, pool, layer);
}

void LaunchAttention(const float* qkv, int32_t nq, int32_t nkv, int32_t hd, const StepRows& rows,
                     const int32_t* row_list, int32_t count, const PoolView& pool, int32_t layer,
                     SplitPlan plan, float* partials, uint16_t* out, cudaStream_t s) {
  if (count == 0) return;
  const int64_t items = static_cast<int64_t>(count) * nq * plan.splits;
  AttentionKernel<<<static_cast<unsigned>(CeilDiv(items, kAttnWarps)), 32 * kAttnWarps, 0, s>>>(
      qkv, nq, nkv, hd, rows, row_list, count, pool, layer, plan, partials);
  const int threads = static_cast<int>(RoundUp(hd < 256 ? hd : 256, 32));
  AttentionCombineKernel<<<static_cast<unsigned>(count) * nq, threads, 0, s>>>(
      partials, row_list, nq, hd, plan.splits, out);
}

void LaunchPrefillAttention(const float* qkv, int32_t nq, int32_t nkv, int32_t hd,
                            const StepRows& rows, const AttnTile* tiles, int32_t num_tiles,
                            const PoolView& pool, int32_t layer, uint16_t* out, cudaStream_t s) {
  if (num_tiles == 0) return;
  const size_t shared = 2 * sizeof(float) * kPrefillChunk * hd;  // 32 KiB at head_dim 256
  PrefillAttentionKernel<<<dim3(num_tiles, nkv), 32 * kPrefillWarps, shared, s>>>(
      qkv, nq, nkv, hd, rows, tiles, pool, layer, out);
}

void LaunchSwiGlu(const float* gu, int64_t ffn, const StepRows& rows, const PoolView& pool,
                  int32_t layer, uint16_t* act, cudaStream_t s) {
  if (rows.rows == 0) return;
  SwiGluKernel<<<dim3(Blocks(ffn), rows.rows), kThreads, 0, s>>>(gu, ffn, rows, pool, layer, act);
}

void LaunchParaGenerate(const ParaGenItem* items, int32_t num_items, int32_t max_r, const float* h,
                        int64_t hidden, int64_t q_dim, int64_t kv_dim, int64_t ffn,
                        const StepRows& rows, const PoolView& pool, int32_t layer, float* pooled,
                        float* t, cudaStream_t s) {
  if (num_items == 0) return;
  ParaPoolKernel<<<dim3(Blocks(hidden), num_items), kThreads, 0, s>>>(items, h, hidden, pooled);
  ParaDownKernel<<<dim3(max_r, num_items), kThreads, 0, s>>>(items, pooled, hidden, max_r, t);
  ParaUpKernel<<<dim3(Blocks(q_dim + kv_dim + ffn), num_items), kThreads, 0, s>>>(
      items, t, max_r, q_dim, kv_dim, ffn, rows, pool, layer);
}

void LaunchLoraShrink(const uint16_t* x, int64_t ldx, const LoraTile* tiles, int32_t num_tiles,
                      const int32_t* row_index, const LoraSiteDesc* const* tables, int32_t site,
                      int32_t max_total_rank, float* t, int64_t ldt, cudaStream_t s) {
  if (num_tiles == 0 || max_total_rank == 0) return;
  LoraShrinkKernel<<<dim3(num_tiles, Blocks(max_total_rank, kShrinkWarps)), 32 * kShrinkWarps, 0,
                     s>>>(x, ldx, tiles, row_index, tables, site, t, ldt);
}

void LaunchLoraExpand(const float* t, int64_t ldt, const LoraTile* tiles, int32_t num_tiles,
                      const int32_t* row_index, const LoraSiteDesc* const* tables, int32_t site,
                      int32_t ncols, float* y, int64_t ldy, cudaStream_t s) {
  if (num_tiles == 0) return;
  LoraExpandKernel<<<dim3(num_tiles, Blocks(ncols, 128)), 128, 0, s>>>(t, ldt, tiles, row_index,
                                                                       tables, site, ncols, y, ldy);
}

void LaunchGreedy(const float* logits, int32_t rows, int64_t vocab, int32_t* token, float* logprob,
                  cudaStream_t s) {
  if (rows > 0) GreedyKernel<<<rows, 1024, 0, s>>>(logits, vocab, token, logprob);
}

void LaunchF32ToBf16(const float* src, int64_t n, uint16_t* dst, cudaStream_t s) {
  if (n > 0) F32ToBf16Kernel<<<Blocks(n), kThreads, 0, s>>>(src, n, dst);
}

}  // namespace para::cuda
