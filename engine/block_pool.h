// The block pool: a fixed number of same-sized blocks handed out by id, with reference counts so
// that sequences (and the prefix cache) can share blocks; a block is free again when its last
// reference is dropped. Accounting only: the memory behind the ids belongs to the backend.
// Not thread-safe: owned and used by the engine thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace para {

class BlockPool {
 public:
  explicit BlockPool(int32_t num_blocks);
  int32_t num_blocks() const { return static_cast<int32_t>(refcount_.size()); }
  int32_t num_free() const { return static_cast<int32_t>(free_.size()); }
  int32_t num_used() const { return num_blocks() - num_free(); }
  // Takes `n` blocks (all or nothing). RESOURCE_EXHAUSTED when fewer are free.
  absl::Status Allocate(int32_t n, std::vector<int32_t>* out);
  // Adds a reference to an allocated block (sharing).
  void Retain(int32_t block);
  // Drops one reference to each block; blocks whose count reaches zero become free.
  void Release(std::span<const int32_t> blocks);
  int32_t refcount(int32_t block) const { return refcount_[block]; }

 private:
  std::vector<int32_t> free_;      // stack of free block ids
  std::vector<int32_t> refcount_;  // per block
};

}  // namespace para
