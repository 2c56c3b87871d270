#include "engine/cuda/device_tier_book.h"

#include <utility>

namespace para::cuda {

void DeviceTierBook::Promote(AdapterRef adapter) {
  const uint64_t uid = adapter.uid();
  if (uid == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  queued_[uid] = Request{true, std::move(adapter)};
}

void DeviceTierBook::Demote(uint64_t adapter_uid) {
  std::lock_guard<std::mutex> lock(mu_);
  queued_[adapter_uid] = Request{};  // drops a queued promotion's reference to the weights
}

DeviceTierBook::Changes DeviceTierBook::TakeChanges() {
  std::unordered_map<uint64_t, Request> queued;
  {
    std::lock_guard<std::mutex> lock(mu_);
    queued.swap(queued_);
  }
  Changes out;
  for (auto& [uid, request] : queued) {
    auto copy = copies_.find(uid);
    const bool held = copy != copies_.end();
    if (request.promote && !held) {
      copies_.emplace(uid, Copy::kUploading);
      out.uploads.push_back(std::move(request.adapter));
    } else if (!request.promote && held) {
      out.frees.push_back({uid, copy->second == Copy::kUploading});
      copies_.erase(copy);
    }
  }
  return out;
}

DeviceTierBook::Use DeviceTierBook::UseInStep(uint64_t uid) {
  auto copy = copies_.find(uid);
  if (copy == copies_.end()) return Use::kNotPromoted;
  if (copy->second == Copy::kReady) return Use::kReady;
  copy->second = Copy::kReady;  // the main stream's later work is ordered after the wait
  return Use::kWaitForUpload;
}

void DeviceTierBook::UploadFailed(uint64_t uid) {
  if (copies_.erase(uid) > 0) ++upload_failures_;
}

bool DeviceTierBook::uploading(uint64_t uid) const {
  auto copy = copies_.find(uid);
  return copy != copies_.end() && copy->second == Copy::kUploading;
}

}  // namespace para::cuda
