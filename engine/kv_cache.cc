#include "engine/kv_cache.h"

#include <cstring>

#include "absl/strings/str_cat.h"

namespace para {

BlockPool::BlockPool(int32_t num_blocks) : refcount_(num_blocks, 0) {
  free_.reserve(num_blocks);
  for (int32_t b = num_blocks - 1; b >= 0; --b) free_.push_back(b);
}

absl::Status BlockPool::Allocate(int32_t n, std::vector<int32_t>* out) {
  if (n > num_free())
    return absl::ResourceExhaustedError(absl::StrCat("KV block pool exhausted: need ", n,
                                                     " blocks, ", num_free(), " of ", num_blocks(),
                                                     " free"));
  for (int32_t i = 0; i < n; ++i) {
    int32_t b = free_.back();
    free_.pop_back();
    refcount_[b] = 1;
    out->push_back(b);
  }
  return absl::OkStatus();
}

void BlockPool::Retain(int32_t block) { ++refcount_[block]; }

void BlockPool::Release(std::span<const int32_t> blocks) {
  for (int32_t b : blocks) {
    if (--refcount_[b] == 0) free_.push_back(b);
  }
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const ModelConfig& config,
                                                         const KvCacheOptions& options) {
  if (options.block_size <= 0 || options.block_size > 1024)
    return absl::InvalidArgumentError(
        absl::StrCat("block size ", options.block_size, " is outside [1, 1024]"));
  if (!IsFloatWeightType(options.dtype))
    return absl::InvalidArgumentError(absl::StrCat("KV cache type ", DTypeName(options.dtype),
                                                   " is not supported (f32, f16, bf16)"));
  KvLayout layout;
  layout.layers = config.num_hidden_layers;
  layout.kv_heads = config.num_key_value_heads;
  layout.head_dim = config.head_dim;
  layout.block_size = options.block_size;
  layout.dtype = options.dtype;
  int64_t num_blocks = options.num_blocks;
  if (num_blocks <= 0) num_blocks = options.bytes / layout.block_bytes();
  if (num_blocks <= 0)
    return absl::InvalidArgumentError(absl::StrCat("KV cache budget of ", options.bytes,
                                                   " bytes is smaller than one block (",
                                                   layout.block_bytes(), " bytes)"));
  if (num_blocks > (1 << 30)) return absl::InvalidArgumentError("too many KV blocks");
  auto cache = std::unique_ptr<KvCache>(new KvCache(static_cast<int32_t>(num_blocks)));
  cache->layout_ = layout;
  if (options.prefix_caching)
    cache->prefix_ = std::make_unique<PrefixCache>(&cache->pool_, layout.block_size);
  cache->para_layout_ = ParaVectorLayout::Create(config, layout.block_bytes() / sizeof(float));
  return cache;
}

absl::Status KvCache::Allocate(int32_t n, std::vector<int32_t>* out) {
  if (prefix_ && n > pool_.num_free()) prefix_->Evict(n - pool_.num_free());
  return pool_.Allocate(n, out);
}

absl::Status KvCache::Reserve(KvSequence* seq, int64_t num_tokens) {
  const int32_t need = BlocksFor(num_tokens) - static_cast<int32_t>(seq->blocks.size());
  if (need <= 0) return absl::OkStatus();
  return Allocate(need, &seq->blocks);
}

absl::Status KvCache::ReserveVectorPages(KvSequence* seq, int32_t pages) {
  const int32_t need = pages - static_cast<int32_t>(seq->vector_pages.size());
  if (need <= 0) return absl::OkStatus();
  return Allocate(need, &seq->vector_pages);
}

void KvCache::Release(KvSequence* seq) {
  pool_.Release(seq->blocks);
  pool_.Release(seq->vector_pages);
  seq->blocks.clear();
  seq->vector_pages.clear();
  seq->num_cached = 0;
  seq->vectors_ready = false;
}

void KvCache::ReleaseKv(KvSequence* seq) {
  pool_.Release(seq->blocks);
  seq->blocks.clear();
  seq->num_cached = 0;
}

absl::StatusOr<KvSequence> KvCache::Fork(const KvSequence& parent,
                                         const std::function<void(int32_t, int32_t)>& copy_block) {
  KvSequence child;
  child.num_cached = parent.num_cached;
  child.vectors_ready = parent.vectors_ready;
  const int32_t full = parent.num_cached / block_size();
  const bool partial = parent.num_cached % block_size() != 0;
  if (partial) {
    std::vector<int32_t> copy;
    absl::Status s = Allocate(1, &copy);
    if (!s.ok()) return s;
    copy_block(parent.blocks[full], copy[0]);
    child.blocks.assign(parent.blocks.begin(), parent.blocks.begin() + full);
    child.blocks.push_back(copy[0]);
  } else {
    child.blocks.assign(parent.blocks.begin(), parent.blocks.begin() + full);
  }
  for (int32_t i = 0; i < full; ++i) pool_.Retain(child.blocks[i]);
  child.vector_pages = parent.vector_pages;
  for (int32_t p : child.vector_pages) pool_.Retain(p);
  return child;
}

}  // namespace para
