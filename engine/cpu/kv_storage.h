// The CPU backend's memory for the block pool: every block's keys and values (F32, F16 or BF16,
// laid out as KvLayout says) and, for blocks used as PARA vector pages, their F32 vectors. One
// anonymous mapping sized once at start; pages are committed lazily as blocks are first written.
// Owned by the CPU backend; written and read on the engine thread's step (its pool's workers
// touch disjoint rows).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "engine/kv_cache.h"

namespace para::cpu {

class KvStorage {
 public:
  // RESOURCE_EXHAUSTED when the mapping fails.
  static absl::StatusOr<std::unique_ptr<KvStorage>> Create(const KvLayout& layout,
                                                           int32_t num_blocks);
  ~KvStorage();
  KvStorage(const KvStorage&) = delete;
  KvStorage& operator=(const KvStorage&) = delete;

  const KvLayout& layout() const { return layout_; }
  // Start of the [block_size, head_dim] key (kv = 0) or value (kv = 1) rows of one head, in
  // elements of layout().dtype.
  void* Rows(int32_t block, int64_t layer, int kv, int64_t kv_head) {
    return Block(block) + layout_.RowsOffset(layer, kv, kv_head) * layout_.element_size();
  }
  // The block as a page of floats (PARA vectors).
  float* Page(int32_t block) { return reinterpret_cast<float*>(Block(block)); }
  void CopyBlock(int32_t src, int32_t dst);

 private:
  KvStorage(const KvLayout& layout, uint8_t* base, size_t bytes)
      : layout_(layout), base_(base), bytes_(bytes) {}
  uint8_t* Block(int32_t block) { return base_ + block * layout_.block_bytes(); }

  KvLayout layout_;
  uint8_t* base_;
  size_t bytes_;
};

}  // namespace para::cpu
