// Paged KV cache: a pool of fixed-size blocks allocated once at start, and per-sequence block
// tables.
//
// Block b holds, for `block_size` consecutive token positions, the keys and values of every
// layer: layout [layer][K|V][kv_head][slot][head_dim] (float32). A sequence's KvSequence lists
// its blocks in position order; position p lives in block blocks[p / block_size], slot
// p % block_size. The same pool is the unit of all per-sequence engine memory (PARA vector pages
// are taken from it too), so its free count is the single number admission looks at.
// Blocks are reference-counted so a forked sequence can share its parent's full blocks.
// Not thread-safe: owned and used by the engine thread.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/para_vectors.h"

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

// The paged state of one sequence: its KV blocks and, with a PARA adapter, its vector pages.
struct KvSequence {
  std::vector<int32_t> blocks;
  int32_t num_cached = 0;             // positions [0, num_cached) hold valid K/V
  std::vector<int32_t> vector_pages;  // PARA vectors (see para_vectors.h); empty without an adapter
  bool vectors_ready = false;         // the vectors have been generated (once, at first prefill)
};

struct KvCacheOptions {
  int32_t block_size = 16;    // token positions per block
  int32_t num_blocks = 0;     // explicit block count; 0 = derive from `bytes`
  int64_t bytes = 1ll << 30;  // memory budget when num_blocks == 0
};

class KvCache {
 public:
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                         const KvCacheOptions& options);
  ~KvCache();

  BlockPool& pool() { return pool_; }
  const BlockPool& pool() const { return pool_; }
  int32_t block_size() const { return block_size_; }
  int64_t block_bytes() const { return block_floats_ * static_cast<int64_t>(sizeof(float)); }
  int64_t block_floats() const { return block_floats_; }
  // Blocks a sequence of `num_tokens` positions needs.
  int32_t BlocksFor(int64_t num_tokens) const {
    return static_cast<int32_t>((num_tokens + block_size_ - 1) / block_size_);
  }

  // Grows `seq` so that positions [0, num_tokens) have blocks. RESOURCE_EXHAUSTED if the pool
  // cannot supply them (then `seq` is unchanged).
  absl::Status Reserve(KvSequence* seq, int64_t num_tokens);
  // Gives `seq` at least `pages` vector pages. RESOURCE_EXHAUSTED (and no change) if the pool
  // cannot.
  absl::Status ReserveVectorPages(KvSequence* seq, int32_t pages);
  // Returns all of `seq`'s blocks and vector pages to the pool and resets it.
  void Release(KvSequence* seq);
  // Returns `seq`'s KV blocks (not its PARA vector pages, which keep their vectors) and marks
  // nothing cached: preemption by recompute.
  void ReleaseKv(KvSequence* seq);
  // A copy of `parent` for a forked continuation: full KV blocks and the vector pages are shared
  // (reference-counted, not copied); the partially filled last block is copied, since both
  // sequences will write into it. RESOURCE_EXHAUSTED if no block is free for that copy.
  absl::StatusOr<KvSequence> Fork(const KvSequence& parent);

  // Start of the [block_size, head_dim] key (kv = 0) or value (kv = 1) rows of one head.
  float* Rows(int32_t block, int64_t layer, int kv, int64_t kv_head) {
    return base_ + block * block_floats_ + ((layer * 2 + kv) * kv_heads_ + kv_head) * head_stride_;
  }
  // Raw page of the block (for storage other than K/V, such as PARA vectors).
  float* Page(int32_t block) { return base_ + block * block_floats_; }
  // Where PARA vectors live in a sequence's vector pages; an error when blocks are too small
  // to hold one vector (then requests with PARA adapters are refused).
  const absl::StatusOr<ParaVectorLayout>& para_layout() const { return para_layout_; }
  // Vector pages a sequence with a PARA adapter needs (0 when the layout is unusable).
  int32_t para_pages() const { return para_layout_.ok() ? para_layout_->pages() : 0; }

 private:
  KvCache(int32_t num_blocks) : pool_(num_blocks) {}
  BlockPool pool_;
  absl::StatusOr<ParaVectorLayout> para_layout_ = absl::UnknownError("unset");
  int32_t block_size_ = 0;
  int64_t kv_heads_ = 0;
  int64_t head_stride_ = 0;  // block_size * head_dim
  int64_t block_floats_ = 0;
  float* base_ = nullptr;
  size_t mapped_bytes_ = 0;
};

}  // namespace para
