// Adapter residency: how the scheduler asks whoever holds the adapters (the adapter store)
// whether an adapter can be batched now, and asks for one to be brought in. An interface only,
// so that the scheduler and the store depend on it and not on each other.
// Implementations are called from the engine thread; they must not block it.
#pragma once

#include <cstdint>
#include <functional>

namespace para {

enum class AdapterKind { kNone, kPara, kLora };

// Answers whether an adapter can be batched now; a sequence whose adapter is not resident waits
// (without holding up other tenants) and the residency is asked to bring it in. `is_running`
// tells which adapters have sequences in the running batch: those must stay resident; others
// may be made room for.
class AdapterResidency {
 public:
  virtual ~AdapterResidency() = default;
  virtual bool IsResident(AdapterKind kind, uint64_t adapter_id) = 0;
  virtual void RequestResidency(AdapterKind kind, uint64_t adapter_id,
                                const std::function<bool(uint64_t adapter_id)>& is_running) = 0;
};

}  // namespace para
