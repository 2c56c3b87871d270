#include "engine/cpu/gemm16.h"

#include <cpuid.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>

#include "engine/cpu/gemm16_kernels.h"

namespace para::cpu {
namespace {

struct CpuFeatures {
  bool avx2 = false;    // AVX2 + FMA + F16C, with the OS saving ymm state
  bool avx512 = false;  // AVX-512 F, BW, DQ, VL, with the OS saving zmm state
};

CpuFeatures Detect() {
  CpuFeatures f;
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return f;
  const bool osxsave = c & (1u << 27), fma = c & (1u << 12), f16c = c & (1u << 29),
             avx = c & (1u << 28);
  if (!osxsave || !avx) return f;
  unsigned xlo, xhi;
  __asm__("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
  const bool ymm_state = (xlo & 0x6) == 0x6, zmm_state = (xlo & 0xe6) == 0xe6;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return f;
  f.avx2 = ymm_state && fma && f16c && (b & (1u << 5));
  const unsigned avx512 = (1u << 16) | (1u << 17) | (1u << 30) | (1u << 31);  // F, DQ, BW, VL
  f.avx512 = f.avx2 && zmm_state && (b & avx512) == avx512;
  return f;
}

const CpuFeatures& Features() {
  static const CpuFeatures f = Detect();
  return f;
}

std::atomic<int> g_isa{-1};

CpuIsa DefaultIsa() {
  const char* env = std::getenv("PARA_CPU_ISA");
  if (env != nullptr) {
    if (std::strcmp(env, "avx2") == 0 && CpuIsaSupported(CpuIsa::kAvx2)) return CpuIsa::kAvx2;
    if (std::strcmp(env, "avx512") == 0 && CpuIsaSupported(CpuIsa::kAvx512)) return CpuIsa::kAvx512;
  }
  return CpuIsaSupported(CpuIsa::kAvx512) ? CpuIsa::kAvx512 : CpuIsa::kAvx2;
}

int gemm16_type(WType t) {
  switch (t) {
    case WType::kF32:
      return gemm16::kF32;
    case WType::kF16:
      return gemm16::kF16;
    case WType::kBF16:
      return gemm16::kBF16;
  }
  return gemm16::kF32;
}

using Span = LinearScratch::Span;

void SetSpan(Span* s, int64_t front, int64_t back) {
  s->front_back.store(static_cast<uint64_t>(back) << 32 | static_cast<uint64_t>(front),
                      std::memory_order_relaxed);
}

// The next chunk of a span, from its front (the owner) or its back (another thread); -1 when the
// span is empty.
int64_t TakeChunk(Span* s, bool from_front) {
  uint64_t v = s->front_back.load(std::memory_order_relaxed);
  for (;;) {
    const uint64_t front = v & 0xffffffffu, back = v >> 32;
    if (front >= back) return -1;
    const uint64_t next = from_front ? back << 32 | (front + 1) : (back - 1) << 32 | front;
    if (s->front_back.compare_exchange_weak(v, next, std::memory_order_relaxed)) {
      return static_cast<int64_t>(from_front ? front : back - 1);
    }
  }
}

}  // namespace

const char* CpuIsaName(CpuIsa isa) { return isa == CpuIsa::kAvx512 ? "avx512" : "avx2"; }

bool CpuIsaSupported(CpuIsa isa) {
  return isa == CpuIsa::kAvx512 ? Features().avx512 : Features().avx2;
}

CpuIsa Gemm16Isa() {
  int v = g_isa.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(DefaultIsa());
    g_isa.store(v, std::memory_order_relaxed);
  }
  return static_cast<CpuIsa>(v);
}

bool SetGemm16Isa(CpuIsa isa) {
  if (!CpuIsaSupported(isa)) return false;
  g_isa.store(static_cast<int>(isa), std::memory_order_relaxed);
  return true;
}

void LinearScratch::Reserve(int num_threads) {
  if (num_threads <= threads_) return;
  buf_.EnsureSize(static_cast<size_t>(num_threads) * gemm16::kScratchFloats);
  spans_ = std::make_unique<Span[]>(static_cast<size_t>(num_threads));
  threads_ = num_threads;
}

float* LinearScratch::thread_buffer(int thread) {
  return buf_.data() + thread * gemm16::kScratchFloats;
}

void LinearParts(ThreadPool* pool, int64_t m, std::span<const WeightView> parts, const float* x,
                 int64_t ldx, float beta, float* y, int64_t ldy, LinearScratch* scratch) {
  if (m <= 0 || parts.empty()) return;
  const int64_t k = parts[0].cols;
  int64_t n = 0;
  size_t max_es = 1;
  for (const WeightView& p : parts) {
    n += p.rows;
    max_es = std::max(max_es, WTypeSize(p.type));
  }
  if (n <= 0) return;
  if (k == 0) {  // an empty sum: y = beta * y
    for (int64_t i = 0; i < m; ++i)
      for (int64_t j = 0; j < n; ++j) y[i * ldy + j] = beta == 0.f ? 0.f : beta * y[i * ldy + j];
    return;
  }
  const CpuIsa isa = Gemm16Isa();
  void (*block_fn)(const gemm16::Block&) =
      isa == CpuIsa::kAvx512 ? gemm16::BlockAvx512 : gemm16::BlockAvx2;
  const int64_t unit = gemm16::kBlockRows;
  const int threads = pool->num_threads();
  scratch->Reserve(threads);

  // Chunks of whole panels, taken in turn by the threads. Decode (m <= 8) streams the weights:
  // the smallest chunks, so that the threads finish together. Larger m: about 8 chunks per
  // thread, each at most kRowsMax rows (the scratch keeps partial sums for that many) and 512 KiB
  // of weights, so that a chunk stays in L2 while the blocks of x pass over it.
  int64_t chunk = unit;
  if (m > 8) {
    chunk = std::min({n / (8 * threads), gemm16::kRowsMax,
                      (int64_t{512} << 10) / (k * static_cast<int64_t>(max_es))});
    chunk = std::max(unit, chunk / unit * unit);
  }
  const int64_t mc = gemm16::kMcMax;
  int64_t total = 0;
  for (const WeightView& p : parts) total += (p.rows + chunk - 1) / chunk;

  gemm16::Block proto{};
  proto.k = k;
  proto.m = m;
  proto.x = x;
  proto.ldx = ldx;
  proto.init = beta == 0.f   ? gemm16::kInitZero
               : beta == 1.f ? gemm16::kInitLoad
                             : gemm16::kInitScale;
  proto.beta = beta;
  proto.ldy = ldy;
  proto.mc = mc;

  const int spans = threads == 1 || total == 1 ? 1 : threads;
  struct Ctx {
    std::span<const WeightView> parts;
    const gemm16::Block* proto;
    void (*block_fn)(const gemm16::Block&);
    LinearScratch* scratch;
    float* y;
    int64_t chunk, total;
    int spans;
    // The thread's own span from the front, then the others' from the back.
    void Run(int t) {
      gemm16::Block b = *proto;
      b.panel = scratch->thread_buffer(t);
      b.part = b.panel + gemm16::kPanelFloats;
      for (int d = 0; d < spans; ++d) {
        Span* s = scratch->span((t + d) % spans);
        for (int64_t c = TakeChunk(s, d == 0); c >= 0; c = TakeChunk(s, d == 0)) Do(c, &b);
      }
    }
    // Chunk c: its part, and its rows there.
    void Do(int64_t c, gemm16::Block* b) const {
      int64_t col = 0;
      size_t p = 0;
      for (;; ++p) {
        const int64_t chunks = (parts[p].rows + chunk - 1) / chunk;
        if (c < chunks) break;
        c -= chunks;
        col += parts[p].rows;
      }
      const WeightView& part = parts[p];
      const int64_t r0 = c * chunk;
      b->rows = std::min(chunk, part.rows - r0);
      b->type = gemm16_type(part.type);
      b->ldw = part.cols;
      b->w = static_cast<const uint8_t*>(part.data) + r0 * part.cols * WTypeSize(part.type);
      b->y = y + col + r0;
      block_fn(*b);
    }
  } ctx{parts, &proto, block_fn, scratch, y, chunk, total, spans};
  // Chunks cut into one contiguous span per thread; the pool's hand-off orders these stores
  // before the threads' first loads.
  for (int t = 0; t < ctx.spans; ++t)
    SetSpan(scratch->span(t), total * t / ctx.spans, total * (t + 1) / ctx.spans);
  if (ctx.spans == 1) {
    ctx.Run(0);
  } else {
    // A lambda of one reference fits std::function's inline storage: no allocation per call.
    pool->RunOnAll([&ctx](int t) { ctx.Run(t); });
  }
}

}  // namespace para::cpu
