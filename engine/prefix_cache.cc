#include "engine/prefix_cache.h"

#include <algorithm>

namespace para {
namespace {

// splitmix64's finalizer: a well-mixed 64-bit step.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t HashTokens(uint64_t h, std::span<const int32_t> tokens) {
  for (int32_t t : tokens) h = Mix(h ^ static_cast<uint32_t>(t));
  return Mix(h ^ tokens.size());
}

constexpr uint64_t kVectorsTag = 0x5EC7025ull;  // distinguishes the vector-pages entry

}  // namespace

uint64_t PrefixCache::BlockKey(uint64_t parent, std::span<const int32_t> tokens) const {
  return HashTokens(parent, tokens);
}

uint64_t PrefixCache::Seed(std::span<const int32_t> prompt, uint64_t salt, bool para) const {
  const uint64_t seed = Mix(salt + 1);
  return para ? HashTokens(seed, prompt) : seed;
}

bool PrefixCache::Idle(const Entry& e) const {
  for (int32_t b : e.blocks)
    if (pool_->refcount(b) != 1) return false;
  return true;
}

const PrefixCache::Entry* PrefixCache::Find(uint64_t key, uint64_t parent,
                                            std::span<const int32_t> tokens) {
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  const Entry& e = it->second;
  if (e.parent != parent ||
      !std::equal(e.tokens.begin(), e.tokens.end(), tokens.begin(), tokens.end()))
    return nullptr;                      // a hash collision: not the same prefix
  lru_.splice(lru_.end(), lru_, e.lru);  // most recently used
  return &e;
}

PrefixCache::Hit PrefixCache::Lookup(std::span<const int32_t> prompt, uint64_t salt,
                                     int32_t para_pages) {
  Hit hit;
  ++stats_.queries;
  stats_.query_tokens += static_cast<int64_t>(prompt.size());
  const bool para = para_pages > 0;
  const uint64_t seed = Seed(prompt, salt, para);
  if (para) {  // only the whole prompt, with its vectors
    const Entry* v = Find(Mix(seed ^ kVectorsTag), seed, prompt);
    if (v == nullptr || static_cast<int32_t>(v->blocks.size()) != para_pages) return hit;
    hit.vector_pages = v->blocks;
  }
  const int64_t usable = (static_cast<int64_t>(prompt.size()) - 1) / block_size_;
  uint64_t parent = seed;
  for (int64_t i = 0; i < usable; ++i) {
    const auto tokens = prompt.subspan(i * block_size_, block_size_);
    const uint64_t key = BlockKey(parent, tokens);
    const Entry* e = Find(key, parent, tokens);
    if (e == nullptr) break;
    hit.blocks.push_back(e->blocks[0]);
    parent = key;
  }
  if (para && hit.blocks.empty()) hit.vector_pages.clear();  // nothing to reuse the vectors with
  for (int32_t b : hit.blocks) pool_->Retain(b);
  for (int32_t p : hit.vector_pages) pool_->Retain(p);
  hit.num_tokens = static_cast<int32_t>(hit.blocks.size()) * block_size_;
  stats_.hit_tokens += hit.num_tokens;
  return hit;
}

void PrefixCache::Add(uint64_t key, uint64_t parent, std::span<const int32_t> tokens,
                      std::span<const int32_t> blocks) {
  if (entries_.count(key)) return;
  Entry e;
  e.tokens.assign(tokens.begin(), tokens.end());
  e.parent = parent;
  e.blocks.assign(blocks.begin(), blocks.end());
  for (int32_t b : e.blocks) {
    pool_->Retain(b);  // the cache's own reference
    members_.insert(b);
  }
  e.lru = lru_.insert(lru_.end(), key);
  entries_.emplace(key, std::move(e));
}

void PrefixCache::Insert(std::span<const int32_t> prompt, uint64_t salt,
                         std::span<const int32_t> blocks, std::span<const int32_t> vector_pages) {
  const bool para = !vector_pages.empty();
  const uint64_t seed = Seed(prompt, salt, para);
  if (para) Add(Mix(seed ^ kVectorsTag), seed, prompt, vector_pages);
  const int64_t full = std::min<int64_t>(static_cast<int64_t>(prompt.size()) / block_size_,
                                         static_cast<int64_t>(blocks.size()));
  uint64_t parent = seed;
  for (int64_t i = 0; i < full; ++i) {
    const auto tokens = prompt.subspan(i * block_size_, block_size_);
    const uint64_t key = BlockKey(parent, tokens);
    Add(key, parent, tokens, blocks.subspan(i, 1));
    parent = key;
  }
}

int32_t PrefixCache::Evict(int32_t n) {
  int32_t freed = 0;
  for (auto it = lru_.begin(); it != lru_.end() && freed < n;) {
    auto e = entries_.find(*it);
    if (!Idle(e->second)) {
      ++it;
      continue;
    }
    pool_->Release(e->second.blocks);
    for (int32_t b : e->second.blocks) members_.erase(b);
    freed += static_cast<int32_t>(e->second.blocks.size());
    stats_.evictions += static_cast<int64_t>(e->second.blocks.size());
    entries_.erase(e);
    it = lru_.erase(it);
  }
  return freed;
}

int32_t PrefixCache::idle() const {
  int32_t n = 0;
  for (const auto& [key, e] : entries_)
    if (Idle(e)) n += static_cast<int32_t>(e.blocks.size());
  return n;
}

void PrefixCache::Clear() { Evict(static_cast<int32_t>(entries_.size()) * 1024 + 1); }

}  // namespace para
