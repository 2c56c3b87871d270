// The CUDA kernels' index arithmetic and tiling (engine/cuda/kernel_math.h) and the host-side
// step plan (engine/cuda/step_plan.h), checked on the CPU with the ordinary build: the same
// functions the kernels call on the device.
#include "engine/cuda/kernel_math.h"

#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "engine/cuda/kernels.h"
#include "engine/cuda/step_plan.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"

namespace para::cuda {
namespace {

TEST(CudaKernelMathTest, Bf16RoundingMatchesTheEngine) {
  std::mt19937 rng(1);
  std::uniform_real_distribution<float> d(-1e4f, 1e4f);
  for (int i = 0; i < 10000; ++i) {
    const float f = d(rng) * (i % 7 == 0 ? 1e-30f : 1.f);
    EXPECT_EQ(F32ToBf16Bits(f), F32ToBf16(f)) << f;
    EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(f)), Bf16ToF32(F32ToBf16(f)));
  }
  EXPECT_TRUE(std::isnan(Bf16BitsToF32(F32ToBf16Bits(NAN))));
  EXPECT_EQ(Bf16BitsToF32(F32ToBf16Bits(1.00390625f)), 1.0f);  // tie to even
}

TEST(CudaKernelMathTest, KvRowOffsetFollowsTheEnginesLayout) {
  KvLayout l;
  l.layers = 3;
  l.kv_heads = 2;
  l.head_dim = 8;
  l.block_size = 4;
  const KvGeometry g{3, 2, 8, 4};
  EXPECT_EQ(KvBlockElements(g), l.block_elements());
  const std::vector<int32_t> blocks = {7, 2, 5};
  for (int32_t pos = 0; pos < 12; ++pos)
    for (int32_t layer = 0; layer < 3; ++layer)
      for (int kv = 0; kv < 2; ++kv)
        for (int32_t head = 0; head < 2; ++head) {
          const int64_t want = blocks[pos / 4] * l.block_elements() +
                               l.RowsOffset(layer, kv, head) + (pos % 4) * l.head_dim;
          EXPECT_EQ(KvRowOffset(g, blocks.data(), pos, layer, kv, head), want);
        }
}

TEST(CudaKernelMathTest, SeqOfRowFindsTheOwningSequence) {
  const std::vector<int32_t> begin = {0, 5, 5, 6, 10, 11};  // a sequence with no rows at 1
  const int32_t seqs = 5;
  const int32_t want[] = {0, 0, 0, 0, 0, 2, 3, 3, 3, 3, 4};
  for (int32_t r = 0; r < 11; ++r) EXPECT_EQ(SeqOfRow(begin.data(), seqs, r), want[r]) << r;
}

TEST(CudaKernelMathTest, SplitsCoverEveryPositionOnceAndRespectLimits) {
  for (int64_t row_heads : {1, 7, 32, 1024, 100000})
    for (int32_t ctx : {1, 15, 16, 17, 100, 4096, 32768}) {
      const SplitPlan p = PlanSplits(row_heads, ctx, 132 * 32, 1 << 16, 64);
      ASSERT_GE(p.splits, 1);
      EXPECT_EQ(p.chunk % 16, 0);
      EXPECT_LE(row_heads * p.splits, std::max<int64_t>(row_heads, 1 << 16));
      // Every row of context ctx' <= ctx sees each position in exactly one split.
      for (int32_t c : {1, ctx / 2 + 1, ctx}) {
        std::vector<int> seen(c, 0);
        for (int32_t s = 0; s < p.splits; ++s) {
          int32_t b, e;
          SplitRange(p, s, c, &b, &e);
          for (int32_t j = b; j < e; ++j) ++seen[j];
        }
        for (int32_t j = 0; j < c; ++j) ASSERT_EQ(seen[j], 1) << "ctx " << c << " pos " << j;
      }
    }
  // Few rows and a long context are split; many rows are not; short contexts are not.
  EXPECT_GT(PlanSplits(32, 4096, 132 * 32, 1 << 16, 64).splits, 1);
  EXPECT_EQ(PlanSplits(8192, 4096, 132 * 32, 1 << 16, 64).splits, 1);
  EXPECT_EQ(PlanSplits(1, 40, 132 * 32, 1 << 16, 64).splits, 1);
}

TEST(CudaKernelMathTest, MergedSoftmaxStatesEqualTheWholeSoftmax) {
  std::mt19937 rng(3);
  std::normal_distribution<float> d(0.f, 4.f);
  for (int trial = 0; trial < 50; ++trial) {
    std::vector<float> s(1 + trial * 3);
    for (float& x : s) x = d(rng);
    const float m = *std::max_element(s.begin(), s.end());
    double l = 0;
    for (float x : s) l += std::exp(x - m);
    // Chunks of 4, merged left to right, with an empty chunk in the middle.
    SoftmaxState total{kNegInf, 0.f};
    for (size_t b = 0; b < s.size(); b += 4) {
      SoftmaxState part{kNegInf, 0.f};
      for (size_t j = b; j < std::min(s.size(), b + 4); ++j) {
        const float mn = std::max(part.m, s[j]);
        part.l = part.l * MergeWeight(part.m, mn) + std::exp(s[j] - mn);
        part.m = mn;
      }
      total = MergeSoftmax(total, part);
      total = MergeSoftmax(total, {kNegInf, 0.f});
    }
    EXPECT_EQ(total.m, m);
    EXPECT_NEAR(total.l, l, 1e-5 * l);
  }
}

TEST(CudaKernelMathTest, PrefillTilesHoldAtMostTheBlocksPairs) {
  for (int32_t group : {1, 2, 4, 8, 16}) {
    ASSERT_TRUE(PrefillTilesFit(group));
    const int32_t rows = PrefillTileRows(group);
    EXPECT_GE(rows, 1);
    EXPECT_LE(rows * group, kPrefillWarps * kPrefillPairs) << group;
    EXPECT_GT((rows + 1) * group, kPrefillWarps * kPrefillPairs) << group;  // as many as fit
  }
  EXPECT_FALSE(PrefillTilesFit(kPrefillWarps * kPrefillPairs + 1));
  EXPECT_EQ(PlanSplits(0, 100, 4096, 1 << 16, 64).splits, 1);  // no decode rows
}

TEST(CudaKernelMathTest, TilesCoverAGroupInOrder) {
  std::vector<LoraTile> tiles(4);
  EXPECT_EQ(TileGroup(3, 10, 19, 8, tiles.data()), 3);
  EXPECT_EQ(tiles[0].table, 3);
  EXPECT_EQ(tiles[0].first, 10);
  EXPECT_EQ(tiles[0].count, 8);
  EXPECT_EQ(tiles[1].first, 18);
  EXPECT_EQ(tiles[2].first, 26);
  EXPECT_EQ(tiles[2].count, 3);
  EXPECT_EQ(TileGroup(0, 0, 8, 8, tiles.data()), 1);
}

TEST(CudaKernelMathTest, ModuleOfColumnSkipsUntargetedColumns) {
  LoraSiteDesc s{};
  s.num_modules = 2;
  s.modules[0] = {nullptr, 4, 0, 0, 8};   // q: columns [0, 8)
  s.modules[1] = {nullptr, 4, 4, 12, 4};  // v: columns [12, 16); k's [8, 12) untargeted
  for (int32_t c = 0; c < 16; ++c)
    EXPECT_EQ(ModuleOfColumn(s, c), c < 8 ? 0 : c < 12 ? -1 : 1) << c;
}

TEST(CudaKernelMathTest, ParaOutputsMapToTheirSegmentsAndPages) {
  int64_t idx;
  EXPECT_EQ(ParaSegmentOf(0, 64, 32, &idx), 0);
  EXPECT_EQ(idx, 0);
  EXPECT_EQ(ParaSegmentOf(63, 64, 32, &idx), 0);
  EXPECT_EQ(ParaSegmentOf(64, 64, 32, &idx), 1);
  EXPECT_EQ(idx, 0);
  EXPECT_EQ(ParaSegmentOf(96, 64, 32, &idx), 2);
  EXPECT_EQ(idx, 0);
  EXPECT_EQ(ParaSegmentOf(100, 64, 32, &idx), 2);
  EXPECT_EQ(idx, 4);
  const std::vector<int32_t> pages = {9, 4};
  EXPECT_EQ(ParaVectorOffset(1000, pages.data(), 1, 17), 4017);
}

TEST(CudaKernelMathTest, LaneElementsPartitionAHead) {
  for (int32_t hd : {16, 32, 64, 80, 96, 128, 200, 256}) {
    int32_t total = 0;
    for (int32_t lane = 0; lane < 32; ++lane) {
      EXPECT_LE(LaneElements(hd, lane), kMaxPerLane);
      total += LaneElements(hd, lane);
    }
    EXPECT_EQ(total, hd);
  }
}

TEST(CudaKernelMathTest, RopePairRotates) {
  float a = 1.f, b = 0.f;
  RopePair(std::cos(0.5f), std::sin(0.5f), &a, &b);
  EXPECT_FLOAT_EQ(a, std::cos(0.5f));
  EXPECT_FLOAT_EQ(b, std::sin(0.5f));
}

TEST(CudaStepPlanTest, FlattensRowsSequencesLogitsAndLoraTiles) {
  const std::vector<int32_t> t0 = {5, 6, 7}, t1 = {8}, t2 = {9}, t3 = {1, 2};
  const std::vector<int32_t> b0 = {4}, b1 = {1, 2}, b2 = {3}, b3 = {0};
  const std::vector<int32_t> vp = {11, 12};
  ForwardSeq s[4];
  s[0].tokens = t0;
  s[0].blocks = b0;
  s[0].lora = reinterpret_cast<const LoraAdapter*>(0x10);
  s[1].tokens = t1;
  s[1].start_pos = 20;
  s[1].blocks = b1;
  s[1].lora = reinterpret_cast<const LoraAdapter*>(0x20);
  s[2].tokens = t2;
  s[2].start_pos = 3;
  s[2].blocks = b2;
  s[2].lora = reinterpret_cast<const LoraAdapter*>(0x10);
  s[3].tokens = t3;
  s[3].blocks = b3;
  s[3].all_logits = true;
  s[3].para = reinterpret_cast<const ParaAdapter*>(0x30);
  s[3].vector_pages = vp;
  s[3].generate_vectors = true;
  StepPlan p;
  ASSERT_TRUE(p.Build(s, 100, 16, /*tile_rows=*/2).ok());
  EXPECT_EQ(p.tokens, (std::vector<int32_t>{5, 6, 7, 8, 9, 1, 2}));
  EXPECT_EQ(p.pos, (std::vector<int32_t>{0, 1, 2, 20, 3, 0, 1}));
  EXPECT_EQ(p.row_seq, (std::vector<int32_t>{0, 0, 0, 1, 2, 3, 3}));
  EXPECT_EQ(p.seq_row_begin, (std::vector<int32_t>{0, 3, 4, 5, 7}));
  EXPECT_EQ(p.seq_blocks, (std::vector<int32_t>{0, 1, 3, 4}));
  EXPECT_EQ(p.blocks, (std::vector<int32_t>{4, 1, 2, 3, 0}));
  EXPECT_EQ(p.seq_vp, (std::vector<int32_t>{-1, -1, -1, 0}));
  EXPECT_EQ(p.vector_pages, vp);
  EXPECT_EQ(p.max_ctx, 21);
  EXPECT_EQ(p.decode_max_ctx, 21);
  // Single-row sequences attend through the split-K kernel, longer ones in tiles of 2 rows.
  EXPECT_EQ(p.decode_rows, (std::vector<int32_t>{3, 4}));
  ASSERT_EQ(p.prefill_tiles.size(), 3u);
  EXPECT_EQ(p.prefill_tiles[0].first_row, 0);
  EXPECT_EQ(p.prefill_tiles[0].count, 2);
  EXPECT_EQ(p.prefill_tiles[1].first_row, 2);
  EXPECT_EQ(p.prefill_tiles[1].count, 1);
  EXPECT_EQ(p.prefill_tiles[2].first_row, 5);
  EXPECT_EQ(p.prefill_tiles[2].count, 2);
  // Without tiles, every row goes through the split-K kernel.
  ASSERT_TRUE(p.Build(s, 100, 16, /*tile_rows=*/0).ok());
  EXPECT_EQ(p.decode_rows.size(), 7u);
  EXPECT_TRUE(p.prefill_tiles.empty());
  EXPECT_EQ(p.logit_rows, (std::vector<int32_t>{2, 3, 4, 5, 6}));
  EXPECT_EQ(p.generating, (std::vector<int32_t>{3}));
  // Adapter 0x10 has rows 0-2 and 4 (gathered into one group), 0x20 row 3.
  ASSERT_EQ(p.lora_adapters.size(), 2u);
  EXPECT_EQ(p.lora_rows, (std::vector<int32_t>{0, 1, 2, 4, 3}));
  ASSERT_EQ(p.lora_tiles.size(), 2u);
  EXPECT_EQ(p.lora_tiles[0].table, 0);
  EXPECT_EQ(p.lora_tiles[0].count, 4);
  EXPECT_EQ(p.lora_tiles[1].table, 1);
  EXPECT_EQ(p.lora_tiles[1].first, 4);
}

TEST(CudaStepPlanTest, RefusesBadTokensAndShortBlockTables) {
  const std::vector<int32_t> toks = {1, 200}, blocks = {0};
  ForwardSeq s;
  s.tokens = toks;
  s.blocks = blocks;
  StepPlan p;
  absl::Status st = p.Build({&s, 1}, 100, 16, 4);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("token id 200"), std::string::npos) << st;
  s.start_pos = 15;
  const std::vector<int32_t> ok = {1, 2};
  s.tokens = ok;
  st = p.Build({&s, 1}, 100, 16, 4);
  EXPECT_EQ(st.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(st.message().find("1 blocks for 17 positions"), std::string::npos) << st;
}

}  // namespace
}  // namespace para::cuda
