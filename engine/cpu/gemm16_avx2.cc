// gemm16's AVX2 path (AVX2 + FMA + F16C), for CPUs without AVX-512: the AVX-512 path's scheme with
// 8-lane vectors and 16 registers. A vector holds 2 weight rows x 4 consecutive k (lane 4j + l =
// row j, k = 4s + l), matched by x[4s .. 4s + 3] in both 128-bit halves, so each output gets the
// same four partial sums, in the same order, as on AVX-512: the results are bitwise the same.
// Decode (m <= 8) widens in registers over all of k; larger m packs 12 rows x kKc into a panel
// that 4 x 12 register tiles sweep. Compiled without AVX-512 (engine/CMakeLists.txt) so that it
// runs as on an AVX2-only machine; it includes nothing but intrinsics so that no shared inline
// function is emitted here.
#include <immintrin.h>

#include <cstdint>

#include "engine/cpu/gemm16_kernels.h"

namespace para::cpu::gemm16 {
namespace {

constexpr int kMr = 4;  // rows of x per register tile
constexpr int kNv = 3;  // row pairs per panel (6 weight rows)
constexpr int kPanelRows = 2 * kNv;

inline int64_t Min(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t Max(int64_t a, int64_t b) { return a > b ? a : b; }

template <int T>
constexpr int64_t kEs = T == kF32 ? 4 : 2;
// A block is 16 bytes of a row: 8 k (BF16/F16) or 4 k (F32), i.e. kSteps 4-k steps.
template <int T>
constexpr int64_t kBlockK = 16 / kEs<T>;
template <int T>
constexpr int kSteps = static_cast<int>(kBlockK<T> / 4);

// 16 bytes of a row; kMasked: only the first `bytes` are read, zeros after them.
template <bool kMasked>
[[gnu::always_inline]] inline __m128i Load16(const uint8_t* p, int64_t bytes) {
  if constexpr (kMasked) {
    alignas(16) uint8_t tmp[16] = {};
    for (int64_t i = 0; i < bytes && i < 16; ++i) tmp[i] = p[i];
    return _mm_load_si128(reinterpret_cast<const __m128i*>(tmp));
  } else {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  }
}

// One block of a row pair at p (row stride l), widened: v[s] lane 4j + l = W[j][4s + l].
template <int T, bool kMasked>
[[gnu::always_inline]] inline void LoadPair(const uint8_t* p, int64_t l, const int64_t* bytes,
                                            __m256 v[kSteps<T>]) {
  const __m128i r0 = Load16<kMasked>(p, kMasked ? bytes[0] : 16);
  const __m128i r1 = Load16<kMasked>(p + l, kMasked ? bytes[1] : 16);
  if constexpr (T == kBF16) {
    const __m256i o = _mm256_inserti128_si256(_mm256_castsi128_si256(r0), r1, 1);
    const __m256i zero = _mm256_setzero_si256();
    v[0] = _mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, o));
    v[1] = _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, o));
  } else if constexpr (T == kF16) {
    v[0] = _mm256_cvtph_ps(_mm_unpacklo_epi64(r0, r1));
    v[1] = _mm256_cvtph_ps(_mm_unpackhi_epi64(r0, r1));
  } else {
    v[0] = _mm256_castsi256_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(r0), r1, 1));
  }
}

// x[0 .. 4) in both halves; kMasked: only the first n floats are read (zeros after).
template <bool kMasked>
[[gnu::always_inline]] inline __m256 X4(const float* x, int64_t n) {
  if constexpr (kMasked) {
    const __m128i mask =
        _mm_cmpgt_epi32(_mm_set1_epi32(static_cast<int>(n)), _mm_setr_epi32(0, 1, 2, 3));
    const __m128 v = _mm_maskload_ps(x, mask);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(v), v, 1);
  } else {
    return _mm256_broadcast_ps(reinterpret_cast<const __m128*>(x));
  }
}

// Ends one accumulator of a row pair: (p0 + p1) + (p2 + p3) per row, combined with y by `init`;
// the first n (<= 2) stored.
[[gnu::always_inline]] inline void Finish(__m256 acc, float* y, int64_t n, int init, float beta) {
  const __m256 t = _mm256_add_ps(acc, _mm256_permute_ps(acc, 0xb1));
  const __m256 u = _mm256_add_ps(t, _mm256_permute_ps(t, 0x4e));
  __m128 s[2] = {_mm256_castps256_ps128(u), _mm256_extractf128_ps(u, 1)};
  for (int j = 0; j < n; ++j) {
    __m128 r = s[j];
    if (init == kInitLoad) {
      r = _mm_add_ss(_mm_load_ss(y + j), r);
    } else if (init == kInitScale) {
      r = _mm_fmadd_ss(_mm_set_ss(beta), _mm_load_ss(y + j), r);
    }
    _mm_store_ss(y + j, r);
  }
}

// ---- Decode: G row pairs x MR rows of x over all of k -------------------------------------

template <int T, int MR, int G, bool kPartial>
void Direct(const uint8_t* w, int64_t l, int64_t nrows, int64_t k, const float* x, int64_t ldx,
            float* y, int64_t ldy, int init, float beta) {
  constexpr int64_t kAhead = 512;
  __m256 acc[G][MR];
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i) acc[g][i] = _mm256_setzero_ps();
  }
  int64_t bytes[2];
  const int64_t kb = kBlockK<T>, row_bytes = k * kEs<T>;
  int64_t kk = 0;
  for (; kk + kb <= k; kk += kb) {
    // Near the end of the rows, prefetch the start of the same rows of the next G pairs.
    const int64_t ahead =
        kk * kEs<T> + kAhead < row_bytes ? kAhead : 2 * G * l + kAhead - row_bytes;
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      const uint8_t* p = w + 2 * g * l + kk * kEs<T>;
      __m256 v[kSteps<T>];
      if constexpr (kPartial) {
        bytes[0] = 2 * g < nrows ? 16 : 0;
        bytes[1] = 2 * g + 1 < nrows ? 16 : 0;
        LoadPair<T, true>(p, l, bytes, v);
      } else {
        if ((kk & 31) == 0) {
          _mm_prefetch(reinterpret_cast<const char*>(p + ahead), _MM_HINT_T0);
          _mm_prefetch(reinterpret_cast<const char*>(p + l + ahead), _MM_HINT_T0);
        }
        LoadPair<T, false>(p, l, nullptr, v);
      }
#pragma GCC unroll 2
      for (int s = 0; s < kSteps<T>; ++s) {
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i)
          acc[g][i] = _mm256_fmadd_ps(X4<false>(x + i * ldx + kk + 4 * s, 4), v[s], acc[g][i]);
      }
    }
  }
  if (kk < k) {  // the last, partial block of k
    const int64_t left = k - kk;
    const int steps = static_cast<int>((left + 3) / 4);
#pragma GCC unroll 8
    for (int g = 0; g < G; ++g) {
      bytes[0] = 2 * g < nrows ? left * kEs<T> : 0;
      bytes[1] = 2 * g + 1 < nrows ? left * kEs<T> : 0;
      __m256 v[kSteps<T>];
      LoadPair<T, true>(w + 2 * g * l + kk * kEs<T>, l, bytes, v);
      for (int s = 0; s < steps; ++s) {
        const int64_t n = Min(4, left - 4 * s);
#pragma GCC unroll 8
        for (int i = 0; i < MR; ++i) {
          const float* xs = x + i * ldx + kk + 4 * s;
          acc[g][i] = _mm256_fmadd_ps(n == 4 ? X4<false>(xs, 4) : X4<true>(xs, n), v[s], acc[g][i]);
        }
      }
    }
  }
#pragma GCC unroll 8
  for (int g = 0; g < G; ++g) {
    const int64_t n = Max(0, Min(2, nrows - 2 * g));
#pragma GCC unroll 8
    for (int i = 0; i < MR; ++i)
      if (n > 0) Finish(acc[g][i], y + i * ldy + 2 * g, n, init, beta);
  }
}

// Row pairs side by side for MR rows of x. At m = 1 four pairs (8 weight rows read side by side,
// as on the AVX-512 path) rather than six: on a Zen 5 host (PARA_CPU_ISA=avx2) batch-1 decode
// ran ~6% faster with fewer concurrent row streams per thread (bench/README.md).
constexpr int GroupsFor(int mr) { return mr <= 2 ? 4 : mr == 3 ? 3 : mr == 4 ? 2 : 1; }

template <int T, int MR>
void DecodeRows(const uint8_t* w, int64_t l, int64_t rows, const Block& b) {
  constexpr int G = GroupsFor(MR);
  int64_t r0 = 0;
  for (; r0 + 2 * G <= rows; r0 += 2 * G)
    Direct<T, MR, G, false>(w + r0 * l, l, 2 * G, b.k, b.x, b.ldx, b.y + r0, b.ldy, b.init, b.beta);
  for (; r0 < rows; r0 += 2)
    Direct<T, MR, 1, true>(w + r0 * l, l, Min(2, rows - r0), b.k, b.x, b.ldx, b.y + r0, b.ldy,
                           b.init, b.beta);
}

// ---- Larger m: panels of 6 rows x kKc, 4 x 6 register tiles -------------------------------

// wp[(s * kNv + v) * 8 + lane] = step s of row pair v, for pairs v < ceil(nrows / 2).
template <int T>
void PackPanel(const uint8_t* w, int64_t l, int64_t nrows, int64_t kc, float* wp) {
  const int nv = static_cast<int>((nrows + 1) / 2);
  int64_t bytes[2];
  for (int64_t kk = 0; kk < kc; kk += kBlockK<T>) {
    const bool full_k = kk + kBlockK<T> <= kc;
    for (int v = 0; v < nv; ++v) {
      const uint8_t* p = w + 2 * v * l + kk * kEs<T>;
      __m256 q[kSteps<T>];
      if (full_k && 2 * v + 2 <= nrows) {
        LoadPair<T, false>(p, l, nullptr, q);
      } else {
        for (int j = 0; j < 2; ++j) bytes[j] = 2 * v + j < nrows ? Min(16, (kc - kk) * kEs<T>) : 0;
        LoadPair<T, true>(p, l, bytes, q);
      }
      float* dst = wp + ((kk / 4) * kNv + v) * 8;
#pragma GCC unroll 2
      for (int s = 0; s < kSteps<T>; ++s) _mm256_store_ps(dst + s * kNv * 8, q[s]);
    }
  }
}

template <int MR, int NV>
void Micro(const float* wp, int64_t kc, const float* x, int64_t ldx, float* part, bool first,
           bool last, float* y, int64_t ldy, int64_t nrows, int init, float beta) {
  __m256 acc[MR][NV];
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v)
      acc[i][v] = first ? _mm256_setzero_ps() : _mm256_load_ps(part + (i * kNv + v) * 8);
  }
  const int64_t full = kc / 4;
#pragma GCC unroll 2
  for (int64_t s = 0; s < full; ++s) {
    __m256 wv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_load_ps(wp + (s * kNv + v) * 8);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = X4<false>(x + i * ldx + 4 * s, 4);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(xb, wv[v], acc[i][v]);
    }
  }
  if (kc % 4 != 0) {
    __m256 wv[NV];
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) wv[v] = _mm256_load_ps(wp + (full * kNv + v) * 8);
#pragma GCC unroll 4
    for (int i = 0; i < MR; ++i) {
      const __m256 xb = X4<true>(x + i * ldx + 4 * full, kc % 4);
#pragma GCC unroll 3
      for (int v = 0; v < NV; ++v) acc[i][v] = _mm256_fmadd_ps(xb, wv[v], acc[i][v]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < MR; ++i) {
#pragma GCC unroll 3
    for (int v = 0; v < NV; ++v) {
      if (last) {
        Finish(acc[i][v], y + i * ldy + 2 * v, Min(2, nrows - 2 * v), init, beta);
      } else {
        _mm256_store_ps(part + (i * kNv + v) * 8, acc[i][v]);
      }
    }
  }
}

using MicroFn = void (*)(const float*, int64_t, const float*, int64_t, float*, bool, bool, float*,
                         int64_t, int64_t, int, float);

template <int MR>
constexpr MicroFn kRow[kNv] = {Micro<MR, 1>, Micro<MR, 2>, Micro<MR, 3>};
constexpr const MicroFn* kMicro[kMr] = {kRow<1>, kRow<2>, kRow<3>, kRow<4>};

template <int T>
void BlockT(const Block& b) {
  const uint8_t* w = static_cast<const uint8_t*>(b.w);
  const int64_t l = b.ldw * kEs<T>;
  if (b.m <= 8) {
    using RowsFn = void (*)(const uint8_t*, int64_t, int64_t, const Block&);
    static constexpr RowsFn kDecode[8] = {DecodeRows<T, 1>, DecodeRows<T, 2>, DecodeRows<T, 3>,
                                          DecodeRows<T, 4>, DecodeRows<T, 5>, DecodeRows<T, 6>,
                                          DecodeRows<T, 7>, DecodeRows<T, 8>};
    kDecode[b.m - 1](w, l, b.rows, b);
    return;
  }
  // Rows of x in blocks of mc; k in outer blocks of kKx (x[mc, kKx] stays in L2 while the
  // panels pass), panels of 6 weight rows, k in inner blocks of kKc (the panel
  // block and x[tile, kKc] stay in L1). Partial sums wait in b.part, one slot per panel and row
  // of x, between blocks of k.
  for (int64_t m0 = 0; m0 < b.m; m0 += b.mc) {
    const int64_t m1 = Min(b.m, m0 + b.mc);
    const int64_t tiles = (m1 - m0 + kMr - 1) / kMr;  // register tiles per block of k
    for (int64_t kx = 0; kx < b.k; kx += kKx) {
      const int64_t kx1 = Min(b.k, kx + kKx);
      for (int64_t p0 = 0; p0 < b.rows; p0 += kPanelRows) {
        const int64_t nr = Min(kPanelRows, b.rows - p0);
        const int nv = static_cast<int>((nr + 1) / 2);
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

void BlockAvx2(const Block& b) {
  if (b.type == kF32) {
    BlockT<kF32>(b);
  } else if (b.type == kF16) {
    BlockT<kF16>(b);
  } else {
    BlockT<kBF16>(b);
  }
}

}  // namespace para::cpu::gemm16
