// Time for the scheduler: an injectable clock so scheduling is deterministic in tests.
// SystemClock reads the steady clock; ManualClock is advanced by hand. Both are thread-safe
// for reads; ManualClock::Advance must not race with readers in tests that care.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace para::sched {

// Microseconds since an arbitrary epoch.
using TimeUs = int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimeUs Now() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimeUs Now() const override {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
};

class ManualClock final : public Clock {
 public:
  explicit ManualClock(TimeUs start = 0) : now_(start) {}
  TimeUs Now() const override { return now_.load(); }
  void Advance(TimeUs us) { now_ += us; }

 private:
  std::atomic<TimeUs> now_;
};

}  // namespace para::sched
