// Device copies of the adapters a CUDA step uses, keyed by the adapter's uid (adapter_uid.h, so a
// replaced or unloaded adapter never matches a new one). A LoRA adapter is uploaded as BF16 A and
// B matrices plus its [layers * 4] table of LoraSiteDesc; a PARA adapter as its F32 generator
// weights. Each adapter is one device allocation made when a step first uses it (its promotion
// to the device tier); when the copies exceed the byte budget, those not used by the current
// step are freed, least recently used first. Owned by the backend; engine thread only.
#pragma once

#include <cstdint>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/cuda/device_memory.h"
#include "engine/cuda/kernel_math.h"
#include "engine/lora_adapter.h"
#include "engine/para_adapter.h"

namespace para::cuda {

// One PARA layer's generator weights on the device.
struct DeviceParaLayer {
  const float *down, *up, *bias;
};

class DeviceAdapters {
 public:
  explicit DeviceAdapters(int64_t budget_bytes) : budget_(budget_bytes) {}

  // Starts a step: copies used by the previous step become evictable.
  void BeginStep() { ++step_; }
  // The device site-descriptor table of a LoRA adapter, uploading it when absent.
  absl::StatusOr<const LoraSiteDesc*> Lora(const LoraAdapter& a);
  // Device pointers of a PARA adapter's layers (a host array), uploading it when absent.
  absl::StatusOr<const std::vector<DeviceParaLayer>*> Para(const ParaAdapter& a);
  int64_t bytes() const { return bytes_; }
  int64_t uploads() const { return uploads_; }
  size_t resident() const { return entries_.size(); }

 private:
  struct Entry {
    DeviceBuffer mem;
    const LoraSiteDesc* lora_table = nullptr;
    std::vector<DeviceParaLayer> para;
    int64_t last_step = 0;
  };
  // Frees least recently used entries not used this step until `incoming` more bytes fit.
  void MakeRoom(int64_t incoming);
  absl::StatusOr<Entry*> Insert(uint64_t uid, size_t bytes, const char* what);

  int64_t budget_;
  int64_t bytes_ = 0;
  int64_t step_ = 0;
  int64_t uploads_ = 0;
  std::unordered_map<uint64_t, std::unique_ptr<Entry>> entries_;
};

}  // namespace para::cuda
