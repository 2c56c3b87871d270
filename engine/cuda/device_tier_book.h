// DeviceTierBook: the host-side bookkeeping of the CUDA backend's adapter device tier
// (adapter_device_tier.h), with no CUDA call in it so that it is tested on the CPU. DeviceAdapters
// (device_adapters.h) owns one and does what it says with the device.
//
// The store's Promote/Demote calls (any thread) are queued, the last one per adapter uid winning.
// At the start of each step the engine thread takes the queue (TakeChanges) and gets the uploads
// to start and the copies to free; each promoted copy then goes
//   absent -> uploading (its upload was started on the side stream)
//          -> ready     (the first step that uses it made the main stream wait for the upload)
//          -> absent    (demoted: freed, stream-ordered after the main stream's work so far).
// A copy demoted while still uploading (no step used it) is freed after the main stream waits
// for its upload, so that the free cannot overtake the copy. A step that uses an adapter the book
// does not hold (never promoted, demoted, or its upload failed) gets kNotPromoted: the backend's
// upload-on-first-use path serves it.
// Thread-safety: Promote and Demote are thread-safe and never block (one short lock); every other
// method is for the engine thread only.
#pragma once

#include <cstdint>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "engine/adapter_device_tier.h"

namespace para::cuda {

class DeviceTierBook final : public AdapterDeviceTier {
 public:
  // AdapterDeviceTier (any thread).
  void Promote(AdapterRef adapter) override;
  void Demote(uint64_t adapter_uid) override;

  struct Free {
    uint64_t uid = 0;
    bool wait_for_upload = false;  // the main stream never waited for its upload: wait, then free
  };
  struct Changes {
    std::vector<Free> frees;          // do these first (they return device memory)
    std::vector<AdapterRef> uploads;  // then start these (each becomes kUploading)
  };
  // Engine thread, at the start of a step: the requests queued since the last call, reduced to
  // what must change on the device.
  Changes TakeChanges();

  enum class Use {
    kNotPromoted,    // not on the device tier: upload on first use
    kWaitForUpload,  // the main stream must wait for its upload (now marked ready)
    kReady,          // already ordered before the main stream's work
  };
  // Engine thread: a step uses the adapter `uid`.
  Use UseInStep(uint64_t uid);
  // Engine thread: the upload of `uid` could not start (TakeChanges listed it); it is forgotten,
  // so steps that use it upload it on first use.
  void UploadFailed(uint64_t uid);

  // Engine thread: copies the book holds (uploading or ready), and of them those still uploading.
  size_t promoted() const { return copies_.size(); }
  bool uploading(uint64_t uid) const;
  int64_t upload_failures() const { return upload_failures_; }

 private:
  enum class Copy { kUploading, kReady };
  struct Request {
    bool promote = false;
    AdapterRef adapter;  // set when promote
  };
  std::mutex mu_;
  std::unordered_map<uint64_t, Request> queued_;  // guarded by mu_; the last request per uid
  std::unordered_map<uint64_t, Copy> copies_;     // engine thread
  int64_t upload_failures_ = 0;
};

}  // namespace para::cuda
