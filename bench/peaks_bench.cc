// para-bench-peaks: this machine's peaks, as the benchmarks' bounds use them: read bandwidth
// (bench/bandwidth.h) and the FMA peak (bench/fma_peak.h: AVX-512 and AVX2 f32 FMA, AVX512-BF16
// dot products), each on one thread and on all --threads together.
//
//   para-bench-peaks [--threads N] [--bandwidth-bytes B] [--passes P] [--json]
//
// --json prints one line of JSON (bench/peer_llamacpp_bench.py reads it); otherwise a table.
#include <cstdio>

#include "absl/status/status.h"
#include "bench/bandwidth.h"
#include "bench/fma_peak.h"
#include "common/status_macros.h"
#include "engine/thread_pool.h"
#include "tools/args.h"

namespace para::bench {
namespace {

absl::Status Run(int argc, char** argv) {
  ASSIGN_OR_RETURN(
      tools::Args a,
      tools::Args::Parse(argc, argv, 1, {"threads", "bandwidth-bytes", "passes"}, {"json"}));
  ASSIGN_OR_RETURN(int64_t threads, a.Int("threads", 0));
  ASSIGN_OR_RETURN(int64_t bytes, a.Int("bandwidth-bytes", int64_t{2} << 30));
  ASSIGN_OR_RETURN(int64_t passes, a.Int("passes", 10));
  if (threads < 0 || bytes < (int64_t{1} << 20) || passes < 1)
    return absl::InvalidArgumentError(
        "--threads must be >= 0, --bandwidth-bytes >= 1 MiB, --passes >= 1");
  ThreadPool pool(static_cast<int>(threads));
  ThreadPool one(1);
  const double bw =
      MeasureReadBandwidth(pool, static_cast<size_t>(bytes), static_cast<int>(passes));
  const double bw1 =
      MeasureReadBandwidth(one, static_cast<size_t>(bytes), static_cast<int>(passes));
  const double f512 = MeasureFmaPeak(pool, FmaIsa::kAvx512);
  const double f256 = MeasureFmaPeak(pool, FmaIsa::kAvx2);
  const double fbf16 = MeasureFmaPeak(pool, FmaIsa::kAvx512Bf16);
  const double f512_1 = MeasureFmaPeak(one, FmaIsa::kAvx512);
  if (a.Has("json")) {
    std::printf(
        "{\"threads\": %d, \"bandwidth_bytes\": %lld, \"bandwidth_passes\": %lld, "
        "\"read_bandwidth_gbs\": %.2f, \"read_bandwidth_1thread_gbs\": %.2f, "
        "\"fma_avx512_gflops\": %.1f, \"fma_avx2_gflops\": %.1f, \"dot_bf16_gflops\": %.1f, "
        "\"fma_avx512_1thread_gflops\": %.1f}\n",
        pool.num_threads(), static_cast<long long>(bytes), static_cast<long long>(passes), bw, bw1,
        f512, f256, fbf16, f512_1);
    return absl::OkStatus();
  }
  std::printf(
      "read bandwidth (%.1f GiB, best of %lld passes): %.1f GB/s on %d threads, %.1f on 1\n",
      bytes / double(1 << 30), static_cast<long long>(passes), bw, pool.num_threads(), bw1);
  std::printf("%-30s %10.1f GFLOP/s on %d threads\n", FmaIsaName(FmaIsa::kAvx512), f512,
              pool.num_threads());
  std::printf("%-30s %10.1f GFLOP/s on 1 thread\n", FmaIsaName(FmaIsa::kAvx512), f512_1);
  std::printf("%-30s %10.1f GFLOP/s on %d threads\n", FmaIsaName(FmaIsa::kAvx2), f256,
              pool.num_threads());
  std::printf("%-30s %10.1f GFLOP/s on %d threads\n", FmaIsaName(FmaIsa::kAvx512Bf16), fbf16,
              pool.num_threads());
  return absl::OkStatus();
}

}  // namespace
}  // namespace para::bench

int main(int argc, char** argv) {
  absl::Status s = para::bench::Run(argc, argv);
  if (!s.ok()) {
    std::fprintf(stderr, "para-bench-peaks: %s\n", s.ToString().c_str());
    return 1;
  }
  return 0;
}
