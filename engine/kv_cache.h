// Paged KV cache accounting: a pool of fixed-size blocks sized once at start, and per-sequence
// block tables. The engine owns this accounting; the backend owns the memory the blocks name
// (host or device), laid out as KvLayout says.
//
// Block b holds, for `block_size` consecutive token positions, the keys and values of every
// layer: layout [layer][K|V][kv_head][slot][head_dim], in the cache's element type (F32, F16 or
// BF16). A sequence's KvSequence lists its blocks in position order; position p lives in block
// blocks[p / block_size], slot p % block_size. The same pool is the unit of all per-sequence
// engine memory (PARA vector pages, always F32, are taken from it too), so its free count is the
// single number admission looks at. Blocks are reference-counted so a forked sequence can share
// its parent's full blocks. Not thread-safe: owned and used by the engine thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/block_pool.h"
#include "engine/dtype.h"
#include "engine/model_config.h"
#include "engine/para_vectors.h"
#include "engine/prefix_cache.h"

namespace para {

// The paged state of one sequence: its KV blocks and, with a PARA adapter, its vector pages.
struct KvSequence {
  std::vector<int32_t> blocks;
  int32_t num_cached = 0;             // positions [0, num_cached) hold valid K/V
  std::vector<int32_t> vector_pages;  // PARA vectors (see para_vectors.h); empty without an adapter
  bool vectors_ready = false;         // the vectors have been generated (once, at first prefill)
};

struct KvCacheOptions {
  int32_t block_size = 16;      // token positions per block
  int32_t num_blocks = 0;       // explicit block count; 0 = derive from `bytes`
  int64_t bytes = 1ll << 30;    // memory budget when num_blocks == 0
  DType dtype = DType::kF32;    // element type of keys and values: F32, F16 or BF16
  bool prefix_caching = false;  // keep full prompt blocks for reuse (prefix_cache.h)
};

// Where a block's keys and values live inside the block (what every backend's storage follows):
// [layer][K|V][kv_head][slot][head_dim] elements of `dtype`. A block is also a page of
// block_bytes() / 4 floats when it holds PARA vectors.
struct KvLayout {
  int64_t layers = 0, kv_heads = 0, head_dim = 0;
  int32_t block_size = 0;
  DType dtype = DType::kF32;

  int64_t element_size() const { return static_cast<int64_t>(DTypeSize(dtype)); }
  // Elements from one (layer, kind, head)'s rows to the next.
  int64_t head_stride() const { return static_cast<int64_t>(block_size) * head_dim; }
  int64_t block_elements() const { return layers * 2 * kv_heads * head_stride(); }
  int64_t block_bytes() const { return block_elements() * element_size(); }
  // Element offset, inside a block, of the rows of (layer, kv = 0 keys / 1 values, kv_head).
  int64_t RowsOffset(int64_t layer, int kv, int64_t kv_head) const {
    return ((layer * 2 + kv) * kv_heads + kv_head) * head_stride();
  }
};

class KvCache {
 public:
  // INVALID_ARGUMENT for a block size outside [1, 1024], a KV type other than F32/F16/BF16, or a
  // budget smaller than one block.
  static absl::StatusOr<std::unique_ptr<KvCache>> Create(const ModelConfig& config,
                                                         const KvCacheOptions& options);

  BlockPool& pool() { return pool_; }
  const BlockPool& pool() const { return pool_; }
  // Null when prefix caching is off.
  PrefixCache* prefix_cache() { return prefix_.get(); }
  const PrefixCache* prefix_cache() const { return prefix_.get(); }
  // Blocks a request could get now: free ones and idle cached ones (evicted on demand).
  int32_t available() const { return pool_.num_free() + (prefix_ ? prefix_->idle() : 0); }
  const KvLayout& layout() const { return layout_; }
  int32_t block_size() const { return layout_.block_size; }
  int64_t block_bytes() const { return layout_.block_bytes(); }
  // Blocks a sequence of `num_tokens` positions needs.
  int32_t BlocksFor(int64_t num_tokens) const {
    return static_cast<int32_t>((num_tokens + block_size() - 1) / block_size());
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
  // (reference-counted, not copied); the partially filled last block is copied into a new block
  // by `copy_block(src, dst)` (the backend's), since both sequences will write into it.
  // RESOURCE_EXHAUSTED if no block is free for that copy.
  absl::StatusOr<KvSequence> Fork(const KvSequence& parent,
                                  const std::function<void(int32_t, int32_t)>& copy_block);

  // Where PARA vectors live in a sequence's vector pages; an error when blocks are too small
  // to hold one vector (then requests with PARA adapters are refused).
  const absl::StatusOr<ParaVectorLayout>& para_layout() const { return para_layout_; }
  // Vector pages a sequence with a PARA adapter needs (0 when the layout is unusable).
  int32_t para_pages() const { return para_layout_.ok() ? para_layout_->pages() : 0; }

 private:
  explicit KvCache(int32_t num_blocks) : pool_(num_blocks) {}
  // Takes n blocks, evicting idle cached blocks first when too few are free.
  absl::Status Allocate(int32_t n, std::vector<int32_t>* out);
  BlockPool pool_;
  std::unique_ptr<PrefixCache> prefix_;
  KvLayout layout_;
  absl::StatusOr<ParaVectorLayout> para_layout_ = absl::UnknownError("unset");
};

}  // namespace para
