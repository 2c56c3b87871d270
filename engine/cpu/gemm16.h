// Matrix products with weights kept in their stored dtype (BF16, F16 or F32): the CPU kernels of
// the projections. y = x . W^T with F32 activations, F32 accumulation and weights widened to F32
// in registers (never in memory): the result is an F32 computation on the stored weights, and no
// activation is ever rounded to 16 bits.
//
//   LinearParts(pool, m, parts, x, ldx, beta, y, ldy, &scratch)
//     y[i, j] = beta * y[i, j] + sum_k x[i, k] * W[j, k]   for i < m, j < sum of parts' rows,
//     where W is the row-wise concatenation of `parts` (e.g. the checkpoint's q, k and v
//     tensors, used in place): output columns follow the parts in order.
//
// Results. Every output element is computed by one fixed sequence of float operations: four
// partial sums p[l] over the k = l (mod 4), each by one fused multiply-add per k in increasing k,
// then S = (p[0] + p[1]) + (p[2] + p[3]), then y = S (beta == 0; y is not read), y + S
// (beta == 1) or fma(beta, y, S). The sequence does not depend on m, on the other rows of x, on
// how the weights are split into parts, on the threads or on the ISA path, so a row's result is
// bitwise the same whatever batch it is in, decode or prefill (tests/engine/gemm16_test.cc
// checks all of it against a scalar transcription). Error: that of an F32 dot product of k / 4
// terms per partial sum. Non-finite weights or activations give unspecified results.
//
// ISA. AVX-512 (F, BW, DQ, VL) when the CPU has it, else AVX2 + FMA + F16C (required). The
// environment variable PARA_CPU_ISA=avx2|avx512, read at first use, or SetGemm16Isa() forces a
// supported path. AVX512_BF16 (vdpbf16ps) and AMX are not used: they multiply BF16 by BF16, so
// they would need activations rounded to BF16 (or split into three BF16 parts, which costs more
// than it saves on the FMA path).
//
// Kernels (engine/cpu/gemm16_avx512.cc, gemm16_avx2.cc): a vector holds 4 weight rows x 4
// consecutive k (2 x 4 on AVX2), which takes one shuffle and one unpack per vector to widen from
// BF16 instead of a 16 x 16 transpose. Decode (m <= 8) widens in registers and streams each
// weight once; larger m packs 12 rows x 256 k into an F32 panel in L1 and sweeps it with 8 x 12
// register tiles (24 accumulators).
//
// Threads. Output columns are cut into chunks of whole weight rows, and the chunks into one
// contiguous span per thread of the pool. A thread takes the chunks of its own span from the
// front, so that it streams one run of memory, then takes chunks from the back of the other
// spans (dynamic, so a descheduled thread on a shared machine does not hold the others back).
// Each chunk's weights are read by one thread. (Threads taking adjacent chunks in turn read
// ~10% slower at batch 1 here: every chunk restarts the hardware prefetcher's streams.) Large m
// is processed in blocks of rows of x per chunk so that x stays in the L2 cache.
//
// Thread-safety: LinearParts may run concurrently with other calls only on distinct scratch and
// y, and not on the same pool (ThreadPool's rule: one caller at a time). LinearScratch is owned
// by the caller and reused; its size does not depend on the shapes, so it allocates once, at its
// first use (or Reserve), for the pool's threads. Nothing else is allocated per call.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

#include "engine/aligned_buffer.h"
#include "engine/thread_pool.h"

namespace para::cpu {

enum class WType : uint8_t { kF32, kF16, kBF16 };

inline size_t WTypeSize(WType t) { return t == WType::kF32 ? 4 : 2; }

// A weight matrix in checkpoint (Hugging Face) layout: row-major [rows = outputs, cols =
// inputs], rows contiguous, `data` of any alignment (e.g. inside a memory-mapped safetensors
// file). Not owned.
struct WeightView {
  const void* data = nullptr;
  WType type = WType::kF32;
  int64_t rows = 0, cols = 0;
};

enum class CpuIsa : uint8_t { kAvx2, kAvx512 };

const char* CpuIsaName(CpuIsa isa);
// Whether this CPU (and OS) can run the path.
bool CpuIsaSupported(CpuIsa isa);
// The path LinearParts uses now.
CpuIsa Gemm16Isa();
// Forces a path for the following calls (tests, benchmarks); false, and no change, when the CPU
// lacks it. Not to be called while a LinearParts call is running.
bool SetGemm16Isa(CpuIsa isa);

// Per-thread packing panels and chunk spans for LinearParts. Move-only; one per concurrent
// caller.
class LinearScratch {
 public:
  // A thread's span of chunks [front, back), packed as back << 32 | front so that its owner
  // (from the front) and other threads (from the back) take chunks with one compare-and-swap.
  struct alignas(64) Span {
    std::atomic<uint64_t> front_back{0};
  };

  LinearScratch() = default;
  // Allocates for `num_threads` threads (about 400 KiB each) if it has fewer; LinearParts calls
  // it, so the first call allocates and later ones on the same pool do not.
  void Reserve(int num_threads);
  float* thread_buffer(int thread);                   // for LinearParts
  Span* span(int thread) { return &spans_[thread]; }  // for LinearParts

 private:
  AlignedBuffer buf_;
  std::unique_ptr<Span[]> spans_;
  int threads_ = 0;
};

// See the top of this file. Preconditions (not checked: the backend validates shapes at load):
// every part has cols == parts[0].cols == k, the length of x's rows; x is [m, k] with row stride
// ldx >= k, y is [m, n] with ldy >= n, n = sum of the parts' rows; x and y do not overlap the
// weights. m == 0 or n == 0 does nothing; k == 0 sets y = beta * y.
void LinearParts(ThreadPool* pool, int64_t m, std::span<const WeightView> parts, const float* x,
                 int64_t ldx, float beta, float* y, int64_t ldy, LinearScratch* scratch);

}  // namespace para::cpu
