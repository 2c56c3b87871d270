// A fixed pool of worker threads for data-parallel loops inside one engine step.
//
// ParallelFor(n, fn) splits [0, n) into contiguous chunks, runs them on the workers and the
// calling thread, and returns when all are done. Calls must come from one thread at a time (the
// engine thread); the pool owns its workers and joins them on destruction. `fn` must not throw.
//
// Hand-offs spin briefly before sleeping: a decode step is a few hundred short parallel loops,
// and waking a sleeping thread through the kernel costs tens of microseconds each time on a VM.
// Workers (and the caller waiting for them) spin for up to kSpin after the last loop, then block
// on a condition variable, so an idle pool uses no CPU.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace para {

class ThreadPool {
 public:
  // num_threads counts the calling thread: 1 runs everything inline. 0 = hardware concurrency.
  explicit ThreadPool(int num_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int num_threads() const { return static_cast<int>(workers_.size()) + 1; }

  // Runs fn(begin, end) over chunks covering [0, n). `grain` is the smallest chunk worth a thread.
  void ParallelFor(int64_t n, const std::function<void(int64_t, int64_t)>& fn, int64_t grain = 1);
  // Runs fn(i) for every i in [0, n), handing out indices dynamically (for uneven work items).
  void ParallelForDynamic(int64_t n, const std::function<void(int64_t)>& fn);
  // Runs fn(t) once for every thread index t in [0, num_threads()).
  void RunOnAll(const std::function<void(int)>& fn);

 private:
  static constexpr std::chrono::microseconds kSpin{50};

  void WorkerLoop(int index);
  // Spins until pred() or kSpin passes; true if pred() held.
  template <typename Pred>
  static bool SpinUntil(Pred pred);

  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_;
  std::condition_variable done_cv_;
  std::atomic<const std::function<void(int)>*> task_{nullptr};
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> pending_{0};
  std::atomic<bool> stop_{false};
};

}  // namespace para
