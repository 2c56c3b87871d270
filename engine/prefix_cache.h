// Prefix caching: full blocks of prompt KV kept after their request ends, reused by later
// requests whose prompts start with the same tokens under the same adapter version.
//
// A block's key chains the keys of the blocks before it with its own tokens and a salt: the
// adapter's identity (adapter_uid.h; 0 for the base model). KV of a base-model or LoRA request
// depends only on its tokens and the adapter, so any common prefix of full blocks is shared. A
// PARA request's KV depends on vectors computed from its whole prompt, so its chain is also seeded
// with a hash of the whole prompt: it reuses only identical whole prompts, and then also their
// cached vector pages (which it needs: the vectors cannot be recomputed from a partial prefill).
// A replaced or unloaded adapter has a new identity, so its blocks are never hit again and age
// out. Keys are verified against the stored tokens on every hit (no hash collision is trusted).
//
// The cache holds one pool reference per cached block (and vector page). A cached block no
// request uses is idle: it counts as available, and Evict() frees idle blocks, least recently
// used first, when the pool runs short.
// Owned by the engine; used on the engine thread only. Not thread-safe.
#pragma once

#include <cstdint>
#include <list>
#include <span>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "engine/block_pool.h"

namespace para {

struct PrefixCacheStats {
  int64_t queries = 0;       // prompts looked up
  int64_t query_tokens = 0;  // their tokens
  int64_t hit_tokens = 0;    // tokens whose KV came from the cache
  int64_t evictions = 0;     // blocks evicted
};

class PrefixCache {
 public:
  PrefixCache(BlockPool* pool, int32_t block_size) : pool_(pool), block_size_(block_size) {}

  // What a prompt may reuse.
  struct Hit {
    std::vector<int32_t> blocks;        // cached full blocks of its first tokens, in order
    std::vector<int32_t> vector_pages;  // PARA: the whole prompt's cached vectors (else empty)
    int32_t num_tokens = 0;             // tokens the blocks cover
  };
  // The longest reusable prefix of `prompt` for `salt` (the adapter's uid, 0 for none). With
  // `para_pages` > 0 only the whole prompt qualifies, and only with its vector pages cached. At
  // most (prompt size - 1) tokens: the last prompt token is always computed (its logits are
  // needed). The returned blocks and pages are retained for the caller (released with its
  // sequence as usual).
  Hit Lookup(std::span<const int32_t> prompt, uint64_t salt, int32_t para_pages);
  // Caches the full blocks covering `prompt` (and, for PARA, its vector pages) of a sequence
  // that has computed them. Blocks already cached are left as they are.
  void Insert(std::span<const int32_t> prompt, uint64_t salt, std::span<const int32_t> blocks,
              std::span<const int32_t> vector_pages);
  // Frees up to `n` idle blocks (least recently used first). Returns how many were freed.
  int32_t Evict(int32_t n);
  // Cached blocks and pages no request uses now (evictable).
  int32_t idle() const;
  // Cached blocks and pages some request uses now (pinned: not evictable).
  int32_t pinned() const { return members() - idle(); }
  int32_t members() const { return static_cast<int32_t>(members_.size()); }
  bool Contains(int32_t block) const { return members_.count(block) > 0; }
  int32_t size() const { return static_cast<int32_t>(entries_.size()); }
  const PrefixCacheStats& stats() const { return stats_; }
  // Drops every idle entry (tests, shutdown).
  void Clear();

 private:
  struct Entry {
    std::vector<int32_t> tokens;  // the block's tokens (or, for vector pages, the whole prompt)
    uint64_t parent = 0;          // key of the block before it
    std::vector<int32_t> blocks;  // one block, or the vector pages of a whole PARA prompt
    std::list<uint64_t>::iterator lru;
  };

  uint64_t BlockKey(uint64_t parent, std::span<const int32_t> tokens) const;
  uint64_t Seed(std::span<const int32_t> prompt, uint64_t salt, bool para) const;
  const Entry* Find(uint64_t key, uint64_t parent, std::span<const int32_t> tokens);
  void Add(uint64_t key, uint64_t parent, std::span<const int32_t> tokens,
           std::span<const int32_t> blocks);
  bool Idle(const Entry& e) const;

  BlockPool* pool_;
  int32_t block_size_;
  std::unordered_map<uint64_t, Entry> entries_;
  std::list<uint64_t> lru_;              // front = least recently used
  std::unordered_set<int32_t> members_;  // every cached block and page
  PrefixCacheStats stats_;
};

}  // namespace para
