// The thread pool covers every index exactly once, statically and dynamically, across many
// back-to-back hand-offs (spinning and sleeping), and an idle pool stops using the CPU.
#include "engine/thread_pool.h"

#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

namespace para {
namespace {

TEST(ThreadPoolTest, ParallelForCoversEveryIndexOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    for (int64_t n : {0, 1, 7, 1000}) {
      std::vector<std::atomic<int>> hits(n);
      pool.ParallelFor(n, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) hits[i]++;
      });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(hits[i].load(), 1) << "n=" << n << " i=" << i;
      std::vector<std::atomic<int>> dyn(n);
      pool.ParallelForDynamic(n, [&](int64_t i) { dyn[i]++; });
      for (int64_t i = 0; i < n; ++i) ASSERT_EQ(dyn[i].load(), 1);
    }
  }
}

TEST(ThreadPoolTest, RunOnAllRunsEachThreadIndexOnce) {
  ThreadPool pool(3);
  std::vector<std::atomic<int>> seen(3);
  for (int round = 0; round < 100; ++round) pool.RunOnAll([&](int t) { seen[t]++; });
  for (auto& s : seen) EXPECT_EQ(s.load(), 100);
}

// Many short loops back to back (the workers still spinning), then loops after pauses long
// enough that the workers went to sleep: no loop is lost, run twice or left unfinished.
TEST(ThreadPoolTest, HandOffsSurviveSpinningAndSleeping) {
  ThreadPool pool(3);
  int64_t total = 0;
  std::atomic<int64_t> sum{0};
  for (int round = 0; round < 2000; ++round) {
    pool.ParallelFor(6, [&](int64_t b, int64_t e) { sum += e - b; });
    total += 6;
  }
  for (int round = 0; round < 20; ++round) {
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
    pool.RunOnAll([&](int) { sum += 1; });
    total += 3;
  }
  EXPECT_EQ(sum.load(), total);
}

double ProcessCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// After its last loop the pool spins for at most a fraction of a millisecond and then sleeps:
// an idle engine must not keep cores busy. Half a second idle costs far less than the 1 s of
// CPU that two workers spinning throughout would use.
TEST(ThreadPoolTest, AnIdlePoolSleeps) {
  ThreadPool pool(3);
  pool.RunOnAll([](int) {});
  const double before = ProcessCpuSeconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  EXPECT_LT(ProcessCpuSeconds() - before, 0.1);
}

}  // namespace
}  // namespace para
