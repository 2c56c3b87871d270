#include "server/prepare_pool.h"

#include <pthread.h>

#include <algorithm>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "absl/strings/str_cat.h"

namespace para::server {

PreparePool::PreparePool(int threads, int max_queued_per_tenant, int64_t trim_after_bytes)
    : max_queued_(max_queued_per_tenant), trim_after_(trim_after_bytes) {
  for (int i = 0; i < std::max(1, threads); ++i)
    threads_.emplace_back([this] {
      pthread_setname_np(pthread_self(), "para-prepare");
      Work();
    });
}

PreparePool::~PreparePool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) t.join();
}

absl::Status PreparePool::Post(const std::string& tenant, int64_t bytes,
                               std::function<void()> job) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    std::deque<Job>& q = queues_[tenant];
    if (static_cast<int>(q.size()) >= max_queued_) {
      if (q.empty()) queues_.erase(tenant);
      return absl::ResourceExhaustedError(
          absl::StrCat("tenant '", tenant, "' already has ", max_queued_,
                       " long prompts waiting to be tokenized; try again later"));
    }
    q.push_back({bytes, std::move(job)});
  }
  cv_.notify_one();
  return absl::OkStatus();
}

// The first job of the tenant after the one served last (wrapping around).
bool PreparePool::NextLocked(Job* out) {
  if (queues_.empty()) return false;
  auto it = queues_.upper_bound(last_);
  if (it == queues_.end()) it = queues_.begin();
  last_ = it->first;
  *out = std::move(it->second.front());
  it->second.pop_front();
  if (it->second.empty()) queues_.erase(it);
  return true;
}

void PreparePool::Work() {
  for (;;) {
    Job job;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stop_ || !queues_.empty(); });
      if (!NextLocked(&job)) return;  // stopping, nothing left
    }
    job.run();
    job.run = nullptr;  // the job's captures (the request, its text) go now
#ifdef __GLIBC__
    if (job.bytes >= trim_after_) malloc_trim(0);  // tokenizing it took (and freed) a lot
#endif
  }
}

}  // namespace para::server
