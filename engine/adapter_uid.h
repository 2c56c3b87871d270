// Identities of loaded adapters: every ParaAdapter and LoraAdapter object gets a number no other
// adapter of the process ever gets (a replaced version is a new object, so a new number). The
// prefix cache keys KV blocks by it, so a replaced or unloaded adapter's blocks are never reused.
// Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>

namespace para {

inline uint64_t NextAdapterUid() {
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1);
}

}  // namespace para
