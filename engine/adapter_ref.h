// AdapterRef: a loaded adapter of either kind, shared by whoever uses it (the adapter store's
// versions, requests' leases, a backend's device tier while it uploads). The adapter objects are
// immutable once loaded, so a copy may be read from any thread.
#pragma once

#include <cstdint>
#include <memory>

#include "engine/lora_adapter.h"
#include "engine/para_adapter.h"

namespace para {

// A loaded adapter of either kind (at most one is set).
struct AdapterRef {
  std::shared_ptr<const ParaAdapter> para;
  std::shared_ptr<const LoraAdapter> lora;
  // The adapter object's uid (adapter_uid.h); 0 when empty.
  uint64_t uid() const { return para ? para->uid() : lora ? lora->uid() : 0; }
};

}  // namespace para
