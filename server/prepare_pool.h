// A few threads that tokenize long prompts (and render long chats), so that the HTTP and gRPC
// threads every tenant shares are never held by one tenant's expensive input: a small request
// of another tenant is converted at once on those threads while long ones wait here. Jobs are
// taken round-robin across tenants, each tenant's in order, and a tenant may have at most
// `max_queued_per_tenant` jobs waiting (beyond: RESOURCE_EXHAUSTED). After a job over
// `trim_after_bytes`, freed memory is returned to the OS (malloc_trim).
// Ownership: owns its threads; the destructor runs the jobs still queued, then joins.
// Thread-safety: Post from any thread.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"

namespace para::server {

class PreparePool {
 public:
  PreparePool(int threads, int max_queued_per_tenant, int64_t trim_after_bytes);
  ~PreparePool();
  PreparePool(const PreparePool&) = delete;
  PreparePool& operator=(const PreparePool&) = delete;

  // Queues `job` (whose input is `bytes` long) for `tenant`; RESOURCE_EXHAUSTED when the tenant
  // already has the most jobs waiting.
  absl::Status Post(const std::string& tenant, int64_t bytes, std::function<void()> job);

 private:
  struct Job {
    int64_t bytes;
    std::function<void()> run;
  };
  void Work();
  bool NextLocked(Job* out);

  const int max_queued_;
  const int64_t trim_after_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::deque<Job>> queues_;  // tenant -> its waiting jobs
  std::string last_;                               // the tenant served last (round-robin)
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace para::server
