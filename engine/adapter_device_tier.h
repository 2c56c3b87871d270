// AdapterDeviceTier: how the adapter store tells a backend which adapters are on its device tier,
// so that a backend with memory of its own (CUDA) holds exactly those there: an adapter is
// uploaded when the store promotes it and its device copy freed when the store demotes it
// (demotion to host, drop to disk, unload, replacement). A backend without device memory of its
// own (CPU) has none (Backend::adapter_device_tier() is null).
//
// The store calls it while holding its own lock, from the engine thread (promotion) or any other
// (loader threads, admin calls): implementations are thread-safe, never block, and never call
// back into the store; the work itself happens later, on the backend's thread. Adapters a step
// uses that were never promoted (tools, tests without a store) still run: the backend brings
// them in on first use as before. Owned by the backend; borrowed by the store, which must not
// outlive the engine.
#pragma once

#include <cstdint>

#include "engine/adapter_ref.h"

namespace para {

class AdapterDeviceTier {
 public:
  virtual ~AdapterDeviceTier() = default;
  // The adapter entered the device tier: start bringing it in. `adapter` keeps the weights alive
  // until the upload has read them.
  virtual void Promote(AdapterRef adapter) = 0;
  // The adapter (by uid) left the device tier: free its copy once no queued work reads it.
  // Demoting an adapter that is not promoted does nothing.
  virtual void Demote(uint64_t adapter_uid) = 0;
};

}  // namespace para
