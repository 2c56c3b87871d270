// Read bandwidth of the two weight layouts the batch-1 kernel could stream, on this machine's
// memory, with 4 KiB pages and with transparent huge pages: a standalone measurement behind the
// "Two ideas for the batch-1 gap" paragraph of bench/README.md (not part of the build).
//
//   rows16   the m = 1 kernel's pattern until 2026-12-02 (engine/cpu/gemm16_avx512.cc,
//            Direct<2, 1, 4>): each thread reads 16 rows of 4 KiB side by side, 64 bytes of each
//            per step, with a software prefetch 512 bytes ahead in every row;
//   rows8    the same with 8 rows (Direct<2, 1, 2>, the pattern since);
//   linear   one contiguous run per thread (what a repacked layout would read), prefetch 1 KiB
//            ahead, and the same without prefetch.
// Each pass: 2 threads, each over half of a `--mib` buffer (2048 = several times the L3 of
// 480 MiB), summing widened BF16 lanes so that nothing is optimised away; GB/s = 1e9 bytes/s.
//
//   g++ -O2 -mavx512f -mavx512bw -pthread -o /tmp/stream_layouts bench/stream_layouts.cc
//   /tmp/stream_layouts 4k|huge [MiB]       # MiB defaults to 2048; run on a quiet machine
#include <immintrin.h>
#include <sys/mman.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>

// GCC 12's AVX-512 headers build some intrinsics on _mm512_undefined_*(), which it then reports
// as maybe uninitialized where they are inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"

namespace {

constexpr int64_t kRowBytes = 4096;

__m512 Widen(__m512i v) { return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16)); }

// N rows of kRowBytes side by side, 64 bytes of each per step (the m = 1 kernel's pattern: 16
// rows before 2026-12-02, 8 since).
template <int N>
float Rows(const uint8_t* w, int64_t r0, int64_t r1) {
  __m512 acc = _mm512_setzero_ps();
  for (int64_t r = r0; r + N <= r1; r += N) {
    for (int64_t k = 0; k < kRowBytes; k += 64) {
      for (int j = 0; j < N; ++j) {
        const uint8_t* p = w + (r + j) * kRowBytes + k;
        _mm_prefetch(reinterpret_cast<const char*>(p + 512), _MM_HINT_T0);
        acc = _mm512_add_ps(acc, Widen(_mm512_loadu_si512(p)));
      }
    }
  }
  return _mm512_reduce_add_ps(acc);
}

float Linear(const uint8_t* w, int64_t r0, int64_t r1, int64_t ahead) {
  __m512 a0 = _mm512_setzero_ps(), a1 = a0;
  for (const uint8_t *p = w + r0 * kRowBytes, *e = w + r1 * kRowBytes; p < e; p += 128) {
    if (ahead > 0) _mm_prefetch(reinterpret_cast<const char*>(p + ahead), _MM_HINT_T0);
    a0 = _mm512_add_ps(a0, Widen(_mm512_loadu_si512(p)));
    a1 = _mm512_add_ps(a1, Widen(_mm512_loadu_si512(p + 64)));
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

// One pass of `mode` over the buffer on 2 threads; returns GB/s.
double Pass(const uint8_t* w, int64_t rows, int mode) {
  volatile float sink = 0;
  const auto t0 = std::chrono::steady_clock::now();
  std::thread threads[2];
  for (int t = 0; t < 2; ++t)
    threads[t] = std::thread([&, t] {
      const int64_t r0 = t * rows / 2, r1 = (t + 1) * rows / 2;
      const float s = mode == 0   ? Rows<16>(w, r0, r1)
                      : mode == 1 ? Rows<8>(w, r0, r1)
                                  : Linear(w, r0, r1, mode == 2 ? 1024 : 0);
      sink = sink + s;
    });
  for (auto& th : threads) th.join();
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rows * kRowBytes / sec / 1e9;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || (std::strcmp(argv[1], "4k") != 0 && std::strcmp(argv[1], "huge") != 0)) {
    std::fprintf(stderr, "usage: %s 4k|huge [MiB]\n", argv[0]);
    return 2;
  }
  const int64_t mib = argc > 2 ? std::atoll(argv[2]) : 2048;
  const int64_t bytes = mib << 20, rows = bytes / kRowBytes;
  auto* w = static_cast<uint8_t*>(std::aligned_alloc(size_t{2} << 20, bytes));
  if (w == nullptr) return 1;
  ::madvise(w, bytes, argv[1][0] == 'h' ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
  for (int64_t i = 0; i < bytes; ++i) w[i] = static_cast<uint8_t>(i * 7);
  const char* names[] = {"rows16 (prefetch 512)", "rows8 (prefetch 512)", "linear (prefetch 1024)",
                         "linear (none)"};
  constexpr int kModes = 4;
  constexpr int kPasses = 6;
  double gbs[kModes][kPasses];
  for (int pass = 0; pass < kPasses; ++pass)  // the layouts interleaved, so drift hits all alike
    for (int mode = 0; mode < kModes; ++mode) gbs[mode][pass] = Pass(w, rows, mode);
  std::printf("%s pages, %lld MiB, 2 threads, GB/s per pass (the first warms up)\n", argv[1],
              static_cast<long long>(mib));
  for (int mode = 0; mode < kModes; ++mode) {
    std::printf("%-24s", names[mode]);
    for (double g : gbs[mode]) std::printf(" %5.1f", g);
    std::printf("\n");
  }
  std::free(w);
  return 0;
}
