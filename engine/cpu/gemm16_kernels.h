// Internal to gemm16: the per-ISA block kernels behind LinearParts (engine/cpu/gemm16.h).
//
// A block is a run of consecutive rows of one weight part. Every path computes each output
// element y[i, j] by the same sequence of float operations, so the ISA, the tile shapes and the
// thread split never change a result:
//   p[l] = 0 for l < 4; for s = 0, 1, .. while 4s < k, for each l < 4:
//     p[l] = fma(x[i, 4s + l], W[j, 4s + l], p[l])   (x and W read as 0 past k)
//   S = (p[0] + p[1]) + (p[2] + p[3])
//   y[i, j] = S (beta 0), y[i, j] + S (beta 1), fma(beta, y[i, j], S) (otherwise).
// The four partial sums are the lanes of one 128-bit chunk: a vector holds 4 rows x 4 k (AVX-512)
// or 2 rows x 4 k (AVX2). Each ISA lives in its own translation unit, compiled for that ISA only;
// this header is plain C++ so that all of them can include it. Pure functions: a call touches
// only its block's rows of y and its own scratch.
#pragma once

#include <cstdint>

namespace para::cpu::gemm16 {

// Element type codes shared by the ISA files (mirror WType in gemm16.h).
enum : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// How a block's accumulators start: from zero, from y, or from beta * y.
enum : int { kInitZero = 0, kInitLoad = 1, kInitScale = 2 };

struct Block {
  const void* w;   // first weight row of the block (any alignment)
  int type;        // kF32 / kF16 / kBF16
  int64_t ldw;     // elements between consecutive weight rows (= k for contiguous rows)
  int64_t rows;    // weight rows (= output columns) in the block; <= kRowsMax when m > 8
  int64_t k;       // inner dimension
  int64_t m;       // activation rows
  const float* x;  // x[m, k], row stride ldx
  int64_t ldx;
  int init;    // kInit*
  float beta;  // for kInitScale
  float* y;    // y[m, rows] for this block: y + column of the block's first row
  int64_t ldy;
  int64_t mc;    // activation rows per pass over the block (<= kMcMax)
  float* panel;  // per-thread scratch: kPanelFloats floats, 64-byte aligned
  float* part;   // per-thread scratch: kPartFloats floats, 64-byte aligned
};

// Blocking of the larger-m path: rows of x in blocks of at most kMcMax; k in outer blocks of
// kKx (x[kMcMax, kKx] fits in L2) and inner blocks of kKc (a packed panel of 12 rows x kKc fits
// in L1); blocks of at most kRowsMax weight rows.
inline constexpr int64_t kKc = 256;
inline constexpr int64_t kKx = 2048;
inline constexpr int64_t kMcMax = 128;
inline constexpr int64_t kRowsMax = 96;
// Per-thread scratch: the packed panel, and the partial sums of every panel of a block for a
// block of rows of x (kPartFloatsPerRow per row of x and panel), kept between outer blocks of k.
inline constexpr int64_t kPanelFloats = 12 * kKc;
inline constexpr int64_t kPartFloatsPerRow = 48;
inline constexpr int64_t kPartFloats = (kRowsMax + 5) / 6 * kMcMax * kPartFloatsPerRow;
inline constexpr int64_t kScratchFloats = kPanelFloats + kPartFloats;

// The weights of the block a larger-m pass packs after the panel of `panel_rows` rows at p0 and
// the inner block of k at k0 (same panel, next k; else the next panel, first k of [kx, kx1)):
// its first byte, rows and bytes per row (none after the last). `es`: bytes per weight.
struct NextBlock {
  const uint8_t* w;
  int64_t rows, bytes;
};
static inline NextBlock NextPanelBlock(const Block& b, int64_t es, int64_t panel_rows, int64_t p0,
                                       int64_t k0, int64_t kx, int64_t kx1) {
  const bool same = k0 + kKc < kx1;
  const int64_t np0 = same ? p0 : p0 + panel_rows, nk0 = same ? k0 + kKc : kx;
  if (np0 >= b.rows) return {static_cast<const uint8_t*>(b.w), 0, 0};
  const int64_t rows = b.rows - np0 < panel_rows ? b.rows - np0 : panel_rows;
  const int64_t k = kx1 - nk0 < kKc ? kx1 - nk0 : kKc;
  return {static_cast<const uint8_t*>(b.w) + (np0 * b.ldw + nk0) * es, rows, k * es};
}

// Asks for share `t` of `shares` of a NextBlock's rows into L2, so that its packing does not wait
// for memory; a pass issues one share before each register tile. (Measured on the development
// machine at 32 sequences: the AVX2 path, which prefetched nothing before, decodes 7-11% faster;
// on AVX-512 this is as fast as one burst of all the block's prefetches.) Static: each ISA file
// keeps its own copy.
static inline void PrefetchShare(const NextBlock& n, int64_t ldw_bytes, int64_t t, int64_t shares) {
  for (int64_t r = n.rows * t / shares; r < n.rows * (t + 1) / shares; ++r)
    for (int64_t c = 0; c < n.bytes; c += 64) __builtin_prefetch(n.w + r * ldw_bytes + c, 0, 2);
}

void BlockAvx512(const Block& b);
void BlockAvx2(const Block& b);

// Blocks are cut at multiples of this many rows (whole panels and quads of every path).
inline constexpr int64_t kBlockRows = 48;

}  // namespace para::cpu::gemm16
