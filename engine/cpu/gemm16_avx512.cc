// gemm16's AVX-512 path (F, BW, DQ, VL). Lanes: a vector holds a "quad" of 4 weight rows x 4
// consecutive k (lane 4j + l = row j, k = 4s + l at step s); the matching x vector is x[4s ..
// 4s + 3] broadcast to the four 128-bit chunks. Widening a quad takes one 128-bit shuffle and one
// unpack (BF16) per vector, far fewer than a 16-row transpose. Decode (m <= 8) widens in
// registers and accumulates G quads x m rows over all of k; larger m packs 12 rows x k into an
// F32 panel (L2) once, then an 8 x 12 register tile (24 accumulators) sweeps it per 8 rows of x.
// Both compute each output as gemm16_kernels.h specifies, so their results are identical.
// Compiled with AVX-512 for this file only (engine/CMakeLists.txt), entered after a CPU check,
// and including nothing but intrinsics so that no shared inline function gets AVX-512 code.
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/gemm16_kernels.h"

// GCC 12's AVX-512 headers build some intrinsics on _mm512_undefined_*(), which it then reports
// as maybe uninitialized where they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace para::cpu::gemm16 {
namespace {

constexpr int kMr = 8;  // rows of x per register tile
constexpr int kNv = 3;  // quads per panel (12 weight rows)
constexpr int kPanelRows = 4 * kNv;

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

template <int T>
constexpr int64_t kEs = T == kF32 ? 4 : 2;  // bytes per weight
// k per block (64 bytes of a row) and 4-k steps per block.
template <int T>
constexpr int64_t kBlockK = 64 / kEs<T>;
template <int T>
constexpr int kSteps = static_cast<int>(kBlockK<T> / 4);

inline __mmask32 ByteMask(int64_t bytes) {
  return bytes >= 32 ? 0xffffffffu : bytes <= 0 ? 0u : (__mmask32)((1u << bytes) - 1);
}

// Two rows' 32 bytes side by side: [row a | row b]. kMasked: only `va` / `vb` bytes are read
// (the rest is zero), so a tail never reads past a row.
template <bool kMasked>
[[gnu::always_inline]] inline __m512i Pair(const uint8_t* a, const uint8_t* b, int64_t va,
                                           int64_t vb) {
  if constexpr (kMasked) {
    const __m256i lo = _mm256_maskz_loadu_epi8(ByteMask(va), a);
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), _mm256_maskz_loadu_epi8(ByteMask(vb), b),
                              1);
  } else {
    const __m256i lo = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b)), 1);
  }
}

// One block (64 bytes: 32 k of BF16/F16, 16 k of F32) of a quad at `p` (row stride l), widened:
// v[s] lane 4j + l = W[j][4s + l] for s < kSteps. kMasked: row j has only bytes[j] valid bytes
// from p (zero rows and the k tail read nothing past them).
template <int T, bool kMasked>
[[gnu::always_inline]] inline void LoadQuad(const uint8_t* p, int64_t l, const int64_t* bytes,
                                            __m512 v[kSteps<T>]) {
  const int64_t b0 = kMasked ? bytes[0] : 64, b1 = kMasked ? bytes[1] : 64,
                b2 = kMasked ? bytes[2] : 64, b3 = kMasked ? bytes[3] : 64;
  // a = [r0 0:32 | r1 0:32], b = [r0 32:64 | r1 32:64], c, d the same for rows 2, 3.
  const __m512i a = Pair<kMasked>(p, p + l, b0, b1);
  const __m512i b = Pair<kMasked>(p + 32, p + l + 32, b0 - 32, b1 - 32);
  const __m512i c = Pair<kMasked>(p + 2 * l, p + 3 * l, b2, b3);
  const __m512i d = Pair<kMasked>(p + 2 * l + 32, p + 3 * l + 32, b2 - 32, b3 - 32);
  if constexpr (T == kF16) {
    // Steps 2q and 2q + 1 of 16-byte chunk q: its low and high 8 bytes in each of the 4 rows.
    const __m512i i0 = _mm512_setr_epi64(0, 4, 8, 12, 1, 5, 9, 13);
    const __m512i i1 = _mm512_setr_epi64(2, 6, 10, 14, 3, 7, 11, 15);
    const __m512i z[4] = {_mm512_permutex2var_epi64(a, i0, c), _mm512_permutex2var_epi64(a, i1, c),
                          _mm512_permutex2var_epi64(b, i0, d), _mm512_permutex2var_epi64(b, i1, d)};
#pragma GCC unroll 4
    for (int q = 0; q < 4; ++q) {
      v[2 * q] = _mm512_cvtph_ps(_mm512_castsi512_si256(z[q]));
      v[2 * q + 1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(z[q], 1));
    }
  } else {
    // o[q] = 16-byte chunk q of rows 0..3.
    const __m512i o[4] = {_mm512_shuffle_i32x4(a, c, 0x88), _mm512_shuffle_i32x4(a, c, 0xdd),
                          _mm512_shuffle_i32x4(b, d, 0x88), _mm512_shuffle_i32x4(b, d, 0xdd)};
    if constexpr (T == kBF16) {
      const __m512i zero = _mm512_setzero_si512();
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) {
        v[2 * q] = _mm512_castsi512_ps(_mm512_unpacklo_epi16(zero, o[q]));
        v[2 * q + 1] = _mm512_castsi512_ps(_mm512_unpackhi_epi16(zero, o[q]));
      }
    } else {
#pragma GCC unroll 4
      for (int q = 0; q < 4; ++q) v[q] = _mm512_castsi512_ps(o[q]);
    }
  }
}

// x[0 .. 4) in every 128-bit chunk; kMasked: only the first n floats are read (zeros after).
template <bool kMasked>
[[gnu::always_inline]] inline __m512 X4(const float* x, int64_t n) {
  if constexpr (kMasked) {
    return _mm512_broadcast_f32x4(_mm_maskz_loadu_ps((__mmask8)((1u << n) - 1), x));
  } else {
    return _mm512_broadcast_f32x4(_mm_loadu_ps(x));
  }
}

// Ends one accumulator vector of a quad: each output's four partial sums added as
// (p0 + p1) + (p2 + p3), then combined with y by `init`, and the first n (<= 4) stored.
[[gnu::always_inline]] inline void Finish(__m512 acc, float* y, int64_t n, int init, float beta) {
  const __m512 t = _mm512_add_ps(acc, _mm512_permute_ps(acc, 0xb1));
  const __m512 u = _mm512_add_ps(t, _mm512_permute_ps(t, 0x4e));
  __m128 s = _mm512_castps512_ps128(_mm512_maskz_compress_ps(0x1111, u));
  const __mmask8 mk = (__mmask8)((1u << n) - 1);
  if (init == kInitLoad) {
    s = _mm_add_ps(_mm_maskz_loadu_ps(mk, y), s);
  } else if (init == kInitScale) {
    s = _mm_fmadd_ps(_mm_set1_ps(beta), _mm_maskz_loadu_ps(mk, y), s);
  }
  _mm_mask_storeu_ps(y, mk, s);
}

// ---- Decode: G quads x MR rows of x over all of k, widening in registers -------------------

// kPartial: the quads may have fewer than 4 G rows (nrows), and only then are rows checked.
template <int T, int MR, int G, bool kPartial>
void Direct(const uint8_t* w, int64_t l, int64_t nrows, int64_t k, const float* x, int64_t ldx,
            float* y, int64_t ldy, int init, float beta) {
  constexpr int64_t kAhead = 512;  // prefetch distance (bytes of each row)
  __m512 acc[G][MR];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[g][i] = _mm512_setzero_ps();
  }
  int64_t rows_bytes[G][4];  // valid bytes per row for masked loads (partial quads, k tail)
  const int64_t kb = kBlockK<T>, row_bytes = k * kEs<T>;
  int64_t kk = 0;
  for (; kk + kb <= k; kk += kb) {
    // The last kAhead bytes of each row prefetch the start of the same row of the next G quads
    // (the next call's), so that the stream does not restart cold at every group.
    const int64_t ahead =
        kk * kEs<T> + kAhead < row_bytes ? kAhead : 4 * G * l + kAhead - row_bytes;
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const uint8_t* p = w + 4 * g * l + kk * kEs<T>;
      __m512 v[kSteps<T>];
      if constexpr (kPartial) {
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j) rows_bytes[g][j] = 4 * g + j < nrows ? 64 : 0;
        LoadQuad<T, true>(p, l, rows_bytes[g], v);
      } else {
#pragma GCC unroll 4
        for (int j = 0; j < 4; ++j)
          _mm_prefetch(reinterpret_cast<const char*>(p + j * l + ahead), _MM_HINT_T0);
        LoadQuad<T, false>(p, l, nullptr, v);
      }
#pragma GCC unroll 8
      for (int s = 0; s < kSteps<T>; ++s) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i)
          acc[g][i] = _mm512_fmadd_ps(X4<false>(x + i * ldx + kk + 4 * s, 4), v[s], acc[g][i]);
      }
    }
  }
  if (kk < k) {  // the last, partial block of k
    const int64_t left = k - kk;
    const int steps = static_cast<int>((left + 3) / 4);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
#pragma GCC unroll 4
      for (int j = 0; j < 4; ++j) rows_bytes[g][j] = 4 * g + j < nrows ? left * kEs<T> : 0;
      __m512 v[kSteps<T>];
      LoadQuad<T, true>(w + 4 * g * l + kk * kEs<T>, l, rows_bytes[g], v);
      for (int s = 0; s < steps; ++s) {
        const int64_t n = Min(4, left - 4 * s);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const float* xs = x + i * ldx + kk + 4 * s;
          acc[g][i] = _mm512_fmadd_ps(n == 4 ? X4<false>(xs, 4) : X4<true>(xs, n), v[s], acc[g][i]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    const int64_t n = Max(0, Min(4, nrows - 4 * g));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      if (n > 0) Finish(acc[g][i], y + i * ldy + 4 * g, n, init, beta);
  }
}

using DirectFn = void (*)(const uint8_t*, int64_t, int64_t, int64_t, const float*, int64_t, float*,
                          int64_t, int, float);

// Quads side by side for MR rows of x: enough independent accumulators to hide the FMA latency,
// few enough that nothing spills. At m = 1 two quads (8 weight rows read side by side) rather
// than four: batch-1 decode is a pure stream, and on a Zen 5 host 16 concurrent row streams per
// thread read ~20% slower than one linear run while 8 read ~10% slower; two accumulator chains
// still keep ahead of memory (bench/README.md, "16 or 8 rows side by side at batch 1").
constexpr int GroupsFor(int mr) {
  return mr <= 1 ? 2 : mr <= 2 ? 4 : mr <= 4 ? 3 : mr <= 6 ? 2 : 1;
}

template <int T, int MR>
void DecodeRows(const uint8_t* w, int64_t l, int64_t rows, const Block& b) {
  constexpr int G = GroupsFor(MR);
  int64_t r0 = 0;
  for (; r0 + 4 * G <= rows; r0 += 4 * G)
    Direct<T, MR, G, false>(w + r0 * l, l, 4 * G, b.k, b.x, b.ldx, b.y + r0, b.ldy, b.init, b.beta);
  for (; r0 < rows; r0 += 4)
    Direct<T, MR, 1, true>(w + r0 * l, l, Min(4, rows - r0), b.k, b.x, b.ldx, b.y + r0, b.ldy,
                           b.init, b.beta);
}

// ---- Larger m: pack a panel of 12 rows x k, then 8 x 12 tiles -----------------------------

// wp[(s * kNv + v) * 16 + lane] = step s of quad v, for quads v < ceil(nrows / 4).
template <int T>
void PackPanel(const uint8_t* w, int64_t l, int64_t nrows, int64_t k, float* wp) {
  const int nv = static_cast<int>((nrows + 3) / 4);
  int64_t bytes[4];
  for (int64_t kk = 0; kk < k; kk += kBlockK<T>) {
    const bool full_k = kk + kBlockK<T> <= k;
    for (int v = 0; v < nv; ++v) {
      const uint8_t* p = w + 4 * v * l + kk * kEs<T>;
      __m512 q[kSteps<T>];
      if (full_k && 4 * v + 4 <= nrows) {
        LoadQuad<T, false>(p, l, nullptr, q);
      } else {
        for (int j = 0; j < 4; ++j) bytes[j] = 4 * v + j < nrows ? (k - kk) * kEs<T> : 0;
        LoadQuad<T, true>(p, l, bytes, q);
      }
      float* dst = wp + ((kk / 4) * kNv + v) * 16;
#pragma GCC unroll 8
      for (int s = 0; s < kSteps<T>; ++s) _mm512_store_ps(dst + s * kNv * 16, q[s]);
    }
  }
}

// MR rows of x against NV quads of a packed panel, over kc of k. The accumulators start at zero
// (first) or from `part` (the partial sums of the earlier blocks of k, as raw vectors), and end
// in y (last) or back in `part`.
template <int MR, int NV>
void Micro(const float* wp, int64_t kc, const float* x, int64_t ldx, float* part, bool first,
           bool last, float* y, int64_t ldy, int64_t nrows, int init, float beta) {
  __m512 acc[MR][NV];
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v)
      acc[i][v] = first ? _mm512_setzero_ps() : _mm512_load_ps(part + (i * kNv + v) * 16);
  }
  const int64_t full = kc / 4;
#pragma GCC unroll 2
  for (int64_t s = 0; s < full; ++s) {
    __m512 wv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(wp + (s * kNv + v) * 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 xb = X4<false>(x + i * ldx + 4 * s, 4);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(xb, wv[v], acc[i][v]);
    }
  }
  if (kc % 4 != 0) {
    __m512 wv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) wv[v] = _mm512_load_ps(wp + (full * kNv + v) * 16);
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) {
      const __m512 xb = X4<true>(x + i * ldx + 4 * full, kc % 4);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm512_fmadd_ps(xb, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      if (last) {
        Finish(acc[i][v], y + i * ldy + 4 * v, Min(4, nrows - 4 * v), init, beta);
      } else {
        _mm512_store_ps(part + (i * kNv + v) * 16, acc[i][v]);
      }
    }
  }
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, bool, bool, float*,
                         int64_t, int64_t, int, float);

template <int MR>
constexpr MicroFn kRow[kNv] = {Micro<MR, 1>, Micro<MR, 2>, Micro<MR, 3>};
constexpr const MicroFn* kMicro[kMr] = {kRow<1>, kRow<2>, kRow<3>, kRow<4>,
                                        kRow<5>, kRow<6>, kRow<7>, kRow<8>};

template <int T>
void BlockT(const Block& b) {
  const uint8_t* w = static_cast<const uint8_t*>(b.w);
  const int64_t l = b.ldw * kEs<T>;
  if (b.m <= kMr) {
    using RowsFn = void (*)(const uint8_t*, int64_t, int64_t, const Block&);
    static constexpr RowsFn kDecode[kMr] = {DecodeRows<T, 1>, DecodeRows<T, 2>, DecodeRows<T, 3>,
                                            DecodeRows<T, 4>, DecodeRows<T, 5>, DecodeRows<T, 6>,
                                            DecodeRows<T, 7>, DecodeRows<T, 8>};
    kDecode[b.m - 1](w, l, b.rows, b);
    return;
  }
  // Rows of x in blocks of mc; k in outer blocks of kKx (x[mc, kKx] stays in L2 while the
  // panels pass), panels of 12 weight rows, k in inner blocks of kKc (the panel
  // block and x[tile, kKc] stay in L1). Partial sums wait in b.part, one slot per panel and row
  // of x, between blocks of k.
  for (int64_t m0 = 0; m0 < b.m; m0 += b.mc) {
    const int64_t m1 = Min(b.m, m0 + b.mc);
    const int64_t tiles = (m1 - m0 + kMr - 1) / kMr;  // register tiles per block of k
    for (int64_t kx = 0; kx < b.k; kx += kKx) {
      const int64_t kx1 = Min(b.k, kx + kKx);
      for (int64_t p0 = 0; p0 < b.rows; p0 += kPanelRows) {
        const int64_t nr = Min(kPanelRows, b.rows - p0);
        const int nv = static_cast<int>((nr + 3) / 4);
        // One slot per panel when k has several outer blocks (rows <= kRowsMax then), else the
        // panel is done before the next one starts and slot 0 serves all.
        float* part = b.part + (b.k > kKx ? p0 / kPanelRows : 0) * kMcMax * kPartFloatsPerRow;
        for (int64_t k0 = kx; k0 < kx1; k0 += kKc) {
          const int64_t kc = Min(kKc, kx1 - k0);
          PackPanel<T>(w + p0 * l + k0 * kEs<T>, l, nr, kc, b.panel);
          const NextBlock next = NextPanelBlock(b, kEs<T>, kPanelRows, p0, k0, kx, kx1);
          for (int64_t i0 = m0; i0 < m1; i0 += kMr) {
            PrefetchShare(next, l, (i0 - m0) / kMr, tiles);
            const int mr = static_cast<int>(Min(kMr, m1 - i0));
            kMicro[mr - 1][nv - 1](b.panel, kc, b.x + i0 * b.ldx + k0, b.ldx,
                                   part + (i0 - m0) * kPartFloatsPerRow, k0 == 0, k0 + kc == b.k,
                                   b.y + i0 * b.ldy + p0, b.ldy, nr, b.init, b.beta);
          }
        }
      }
    }
  }
}

}  // namespace

void BlockAvx512(const Block& b) {
  if (b.type == kF32) {
    BlockT<kF32>(b);
  } else if (b.type == kF16) {
    BlockT<kF16>(b);
  } else {
    BlockT<kBF16>(b);
  }
}

}  // namespace para::cpu::gemm16
