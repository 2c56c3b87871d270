// Device copies of the adapters a CUDA step uses, keyed by the adapter's uid (adapter_uid.h, so a
// replaced or unloaded adapter never matches a new one). A LoRA adapter is uploaded as BF16 A and
// B matrices plus its [layers * 4] table of LoraSiteDesc; a PARA adapter as its F32 generator
// weights. Each adapter's copy is one device allocation. Copies come two ways:
//
// * The adapter store's device tier (tier(), adapter_device_tier.h): a promoted adapter is
//   uploaded at the start of the next step on a side stream (cudaStreamNonBlocking) from a pinned
//   staging buffer, with stream-ordered allocation (cudaMallocAsync); the first step that uses it
//   makes the main stream wait for that upload's event instead of copying synchronously. A
//   demoted adapter's copy is freed at the start of the next step with cudaFreeAsync on the main
//   stream, so after every step already queued there (after waiting for its upload if no step
//   used it). The store's device budget bounds these copies. The bookkeeping is DeviceTierBook
//   (device_tier_book.h, tested on the CPU).
// * Upload on first use, for adapters the tier does not hold (never promoted: tools, tests
//   without a store; or demoted while a replaced version's requests still run): copied
//   synchronously when a step first uses them, kept in an LRU byte budget of their own; when
//   those copies exceed it, the ones not used by the current step are freed, least recently used
//   first.
//
// Staging buffers are reused once their upload has completed (polled at each step, never
// waited for), so pinned memory grows to the largest set of uploads in flight at once and is
// kept. Owned by the backend; engine thread only, except tier()'s Promote/Demote (thread-safe).
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter_device_tier.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/device_tier_book.h"
#include "engine/cuda/kernel_math.h"
#include "engine/lora_adapter.h"
#include "engine/para_adapter.h"

namespace para::cuda {

// One PARA layer's generator weights on the device.
struct DeviceParaLayer {
  const float *down, *up, *bias;
};

// Where an adapter's pieces are in its device copy.
struct DeviceAdapterView {
  const LoraSiteDesc* lora_table = nullptr;  // LoRA: [layers * kNumLoraSites]
  std::vector<DeviceParaLayer> para;         // PARA: per layer
};

class DeviceAdapters {
 public:
  explicit DeviceAdapters(int64_t budget_bytes) : budget_(budget_bytes) {}
  ~DeviceAdapters();
  DeviceAdapters(const DeviceAdapters&) = delete;
  DeviceAdapters& operator=(const DeviceAdapters&) = delete;

  // The adapter store's device tier (thread-safe; applied at the next BeginStep).
  AdapterDeviceTier* tier() { return &book_; }
  // Starts a step whose work goes on `main`: frees the copies of demoted adapters and starts the
  // uploads of promoted ones; copies uploaded on first use by the previous step become evictable.
  void BeginStep(cudaStream_t main);
  // The device site-descriptor table of a LoRA adapter, uploading it when absent.
  absl::StatusOr<const LoraSiteDesc*> Lora(const LoraAdapter& a);
  // Device pointers of a PARA adapter's layers (a host array), uploading it when absent.
  absl::StatusOr<const std::vector<DeviceParaLayer>*> Para(const ParaAdapter& a);

  // Uploaded on first use: bytes, uploads so far, copies held.
  int64_t bytes() const { return bytes_; }
  int64_t uploads() const { return uploads_; }
  size_t resident() const { return entries_.size(); }
  // The device tier: bytes and copies held, uploads started so far.
  int64_t tier_bytes() const { return tier_bytes_; }
  size_t tier_copies() const { return promoted_.size(); }
  int64_t tier_uploads() const { return tier_uploads_; }
  const DeviceTierBook& book() const { return book_; }

 private:
  struct Entry {  // uploaded on first use
    DeviceBuffer mem;
    DeviceAdapterView view;
    int64_t last_step = 0;
  };
  struct Promoted {       // the device tier's
    void* mem = nullptr;  // cudaMallocAsync
    size_t bytes = 0;
    DeviceAdapterView view;
    cudaEvent_t uploaded = nullptr;  // recorded on the side stream after the copy
  };
  struct Staging {
    PinnedBuffer buf;
    cudaEvent_t done = nullptr;  // the last copy out of it
    bool busy = false;
  };
  // The view of `uid` for a step: the tier's copy (the main stream waiting for its upload the
  // first time), else one uploaded on first use by `upload`.
  absl::StatusOr<const DeviceAdapterView*> View(
      uint64_t uid, const std::function<size_t(uint8_t*, uint8_t*, DeviceAdapterView*)>& lay,
      const char* what);
  absl::Status StartUpload(const AdapterRef& a);
  void FreePromoted(const DeviceTierBook::Free& f);
  absl::StatusOr<Staging*> StagingFor(size_t bytes);
  // Frees least recently used entries not used this step until `incoming` more bytes fit.
  void MakeRoom(int64_t incoming);
  absl::StatusOr<Entry*> Insert(uint64_t uid, size_t bytes, const char* what);

  int64_t budget_;
  int64_t bytes_ = 0;
  int64_t step_ = 0;
  int64_t uploads_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;

  DeviceTierBook book_;
  cudaStream_t main_ = nullptr;
  cudaStream_t side_ = nullptr;  // created with the first tier upload
  std::unordered_map<uint64_t, Promoted> promoted_;
  std::vector<std::unique_ptr<Staging>> staging_;
  int64_t tier_bytes_ = 0;
  int64_t tier_uploads_ = 0;
};

}  // namespace para::cuda
