// The block pool and KV cache: all-or-nothing allocation, reference counts, and every block
// back in the pool after release.
#include "engine/kv_cache.h"

#include <gtest/gtest.h>

#include <set>

namespace para {
namespace {

TEST(BlockPoolTest, AllocatesDistinctBlocksAndRefusesWhenExhausted) {
  BlockPool pool(8);
  std::vector<int32_t> a, b;
  ASSERT_TRUE(pool.Allocate(5, &a).ok());
  EXPECT_EQ(pool.num_free(), 3);
  absl::Status s = pool.Allocate(4, &b);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(b.empty());  // nothing taken on failure
  EXPECT_EQ(pool.num_free(), 3);
  ASSERT_TRUE(pool.Allocate(3, &b).ok());
  std::set<int32_t> all(a.begin(), a.end());
  all.insert(b.begin(), b.end());
  EXPECT_EQ(all.size(), 8u);
  pool.Release(a);
  pool.Release(b);
  EXPECT_EQ(pool.num_free(), 8);
}

TEST(BlockPoolTest, SharedBlocksAreFreedByTheLastOwner) {
  BlockPool pool(2);
  std::vector<int32_t> a;
  ASSERT_TRUE(pool.Allocate(1, &a).ok());
  pool.Retain(a[0]);
  EXPECT_EQ(pool.refcount(a[0]), 2);
  pool.Release(a);
  EXPECT_EQ(pool.num_free(), 1);
  pool.Release(a);
  EXPECT_EQ(pool.num_free(), 2);
}

ModelConfig SmallConfig() {
  ModelConfig c;
  c.hidden_size = 32;
  c.num_hidden_layers = 3;
  c.num_attention_heads = 4;
  c.num_key_value_heads = 2;
  c.head_dim = 8;
  return c;
}

TEST(KvCacheTest, SizesFromBytesOrBlocks) {
  KvCacheOptions o;
  o.block_size = 4;
  o.bytes = 10 * (3 * 2 * 2 * 4 * 8 * 4);  // ten blocks' worth
  auto c = KvCache::Create(SmallConfig(), o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->pool().num_blocks(), 10);
  EXPECT_EQ((*c)->block_bytes(), 3 * 2 * 2 * 4 * 8 * 4);
  o.num_blocks = 3;
  EXPECT_EQ((*KvCache::Create(SmallConfig(), o))->pool().num_blocks(), 3);
  o.num_blocks = 0;
  o.bytes = 10;
  EXPECT_EQ(KvCache::Create(SmallConfig(), o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, ReserveGrowsByWholeBlocksAndReleaseReturnsThem) {
  KvCacheOptions o;
  o.block_size = 4;
  o.num_blocks = 5;
  auto c = *KvCache::Create(SmallConfig(), o);
  KvSequence seq;
  ASSERT_TRUE(c->Reserve(&seq, 1).ok());
  EXPECT_EQ(seq.blocks.size(), 1u);
  ASSERT_TRUE(c->Reserve(&seq, 4).ok());
  EXPECT_EQ(seq.blocks.size(), 1u);
  ASSERT_TRUE(c->Reserve(&seq, 9).ok());
  EXPECT_EQ(seq.blocks.size(), 3u);
  EXPECT_EQ(c->Reserve(&seq, 40).code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(seq.blocks.size(), 3u);
  c->Release(&seq);
  EXPECT_TRUE(seq.blocks.empty());
  EXPECT_EQ(c->pool().num_free(), 5);
}

TEST(KvCacheTest, SixteenBitCachesHaveHalfSizedBlocksAndPageFloatsForParaVectors) {
  KvCacheOptions o;
  o.block_size = 4;
  o.bytes = 10 * (3 * 2 * 2 * 4 * 8 * 2);  // ten 16-bit blocks' worth
  for (DType t : {DType::kF16, DType::kBF16}) {
    o.dtype = t;
    auto c = KvCache::Create(SmallConfig(), o);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ((*c)->pool().num_blocks(), 10);
    EXPECT_EQ((*c)->block_bytes(), 3 * 2 * 2 * 4 * 8 * 2);
    EXPECT_EQ((*c)->layout().element_size(), 2);
  }
  o.dtype = DType::kI8;
  EXPECT_EQ(KvCache::Create(SmallConfig(), o).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(KvCacheTest, HeadRowsOfDifferentLayersAndHeadsDoNotOverlap) {
  KvLayout l;
  l.layers = 3;
  l.kv_heads = 2;
  l.head_dim = 8;
  l.block_size = 4;
  for (DType t : {DType::kF32, DType::kBF16}) {
    l.dtype = t;
    std::set<int64_t> starts;
    for (int64_t layer = 0; layer < 3; ++layer)
      for (int kv = 0; kv < 2; ++kv)
        for (int64_t h = 0; h < 2; ++h) {
          const int64_t at = l.RowsOffset(layer, kv, h);
          EXPECT_EQ(at % l.head_stride(), 0);
          EXPECT_LE(at + l.head_stride(), l.block_elements());
          starts.insert(at);
        }
    EXPECT_EQ(starts.size(), 3u * 2 * 2);  // distinct, each head_stride long, all inside
    EXPECT_EQ(l.block_bytes(), l.block_elements() * static_cast<int64_t>(DTypeSize(t)));
  }
}

}  // namespace
}  // namespace para
