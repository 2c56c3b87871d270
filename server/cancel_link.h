// Remembers the engine-loop handle of a submitted request so that a cancellation arriving at any
// time (even before the submission finished, e.g. while its adapter loads) reaches the loop
// exactly once. Shared by a front-door call and the code that submits it.
// Thread-safe.
#pragma once

#include <cstdint>
#include <mutex>

#include "scheduler/engine_loop.h"

namespace para::server {

class CancelLink {
 public:
  void SetHandle(sched::EngineLoop* loop, uint64_t handle) {
    std::lock_guard<std::mutex> lock(mu_);
    loop_ = loop;
    handle_ = handle;
    if (cancelled_) loop_->Cancel(handle_);
  }
  void Cancel() {
    std::lock_guard<std::mutex> lock(mu_);
    cancelled_ = true;
    if (loop_ != nullptr) loop_->Cancel(handle_);
  }

 private:
  std::mutex mu_;
  sched::EngineLoop* loop_ = nullptr;
  uint64_t handle_ = 0;
  bool cancelled_ = false;
};

}  // namespace para::server
