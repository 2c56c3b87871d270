// The CUDA backend's device-tier bookkeeping (engine/cuda/device_tier_book.h), on the CPU: which
// adapters are uploaded and freed at the start of a step, which use makes the main stream wait
// for an upload, and that a copy whose upload no step waited for is freed only after waiting.
#include "engine/cuda/device_tier_book.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <thread>
#include <vector>

namespace para::cuda {
namespace {

using Use = DeviceTierBook::Use;

AdapterRef Lora() { return AdapterRef{nullptr, std::make_shared<LoraAdapter>()}; }
AdapterRef Para() { return AdapterRef{std::make_shared<ParaAdapter>(), nullptr}; }

std::vector<uint64_t> UploadUids(const DeviceTierBook::Changes& c) {
  std::vector<uint64_t> uids;
  for (const AdapterRef& a : c.uploads) uids.push_back(a.uid());
  std::sort(uids.begin(), uids.end());
  return uids;
}

TEST(DeviceTierBookTest, APromotionUploadsAtTheNextStepAndItsFirstUseWaitsForIt) {
  DeviceTierBook book;
  const AdapterRef a = Lora(), p = Para();
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kNotPromoted) << "nothing promoted: upload on first use";
  book.Promote(a);
  book.Promote(p);
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kNotPromoted) << "queued until the step starts";
  DeviceTierBook::Changes c = book.TakeChanges();
  EXPECT_TRUE(c.frees.empty());
  std::vector<uint64_t> want = {a.uid(), p.uid()};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(UploadUids(c), want);
  EXPECT_EQ(c.uploads[0].uid() == a.uid() ? c.uploads[0].lora : c.uploads[1].lora, a.lora)
      << "the upload gets the weights to read";
  EXPECT_TRUE(book.uploading(a.uid()));
  EXPECT_EQ(book.promoted(), 2u);
  // The first step that uses it waits for the upload; later uses (same step or later) do not.
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kWaitForUpload);
  EXPECT_FALSE(book.uploading(a.uid()));
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kReady);
  EXPECT_TRUE(book.TakeChanges().uploads.empty()) << "nothing new to do";
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kReady);
  EXPECT_EQ(book.UseInStep(p.uid()), Use::kWaitForUpload);
}

TEST(DeviceTierBookTest, ADemotionFreesAtTheNextStepAndWaitsForAnUploadNoStepWaitedFor) {
  DeviceTierBook book;
  const AdapterRef used = Lora(), unused = Para();
  book.Promote(used);
  book.Promote(unused);
  ASSERT_EQ(book.TakeChanges().uploads.size(), 2u);
  ASSERT_EQ(book.UseInStep(used.uid()), Use::kWaitForUpload);
  book.Demote(used.uid());
  book.Demote(unused.uid());
  EXPECT_EQ(book.promoted(), 2u) << "frees wait for the next step";
  DeviceTierBook::Changes c = book.TakeChanges();
  EXPECT_TRUE(c.uploads.empty());
  ASSERT_EQ(c.frees.size(), 2u);
  for (const DeviceTierBook::Free& f : c.frees) {
    EXPECT_TRUE(f.uid == used.uid() || f.uid == unused.uid());
    EXPECT_EQ(f.wait_for_upload, f.uid == unused.uid())
        << "only the copy the main stream never waited for needs the wait before its free";
  }
  EXPECT_EQ(book.promoted(), 0u);
  EXPECT_EQ(book.UseInStep(used.uid()), Use::kNotPromoted) << "a later use uploads on first use";
  EXPECT_TRUE(book.TakeChanges().frees.empty()) << "freed once";
}

TEST(DeviceTierBookTest, TheLastRequestPerAdapterBeforeAStepWins) {
  DeviceTierBook book;
  const AdapterRef a = Lora(), b = Lora(), c = Para();
  // Promoted and demoted before any step: nothing to upload or free.
  book.Promote(a);
  book.Demote(a.uid());
  // Demoted and promoted again: uploaded once.
  book.Promote(b);
  book.Demote(b.uid());
  book.Promote(b);
  // Demoting what was never promoted does nothing.
  book.Demote(c.uid());
  DeviceTierBook::Changes changes = book.TakeChanges();
  EXPECT_TRUE(changes.frees.empty());
  EXPECT_EQ(UploadUids(changes), std::vector<uint64_t>{b.uid()});
  // A copy already held and promoted again stays as it is (not uploaded twice); demoted and
  // promoted again between two steps, it is kept too.
  book.Promote(b);
  EXPECT_TRUE(book.TakeChanges().uploads.empty());
  book.Demote(b.uid());
  book.Promote(b);
  changes = book.TakeChanges();
  EXPECT_TRUE(changes.uploads.empty());
  EXPECT_TRUE(changes.frees.empty());
  EXPECT_TRUE(book.uploading(b.uid()));
}

TEST(DeviceTierBookTest, AQueuedPromotionKeepsTheWeightsOnlyUntilItIsDemoted) {
  DeviceTierBook book;
  std::weak_ptr<const LoraAdapter> weights;
  {
    AdapterRef a = Lora();
    weights = a.lora;
    book.Promote(a);
  }
  EXPECT_FALSE(weights.expired()) << "the upload has not read them yet";
  book.Demote(weights.lock()->uid());
  EXPECT_TRUE(weights.expired()) << "a demotion drops the queued promotion's reference";
  book.Promote(AdapterRef{});  // an empty reference is ignored
  EXPECT_TRUE(book.TakeChanges().uploads.empty());
}

TEST(DeviceTierBookTest, AFailedUploadFallsBackToUploadOnFirstUse) {
  DeviceTierBook book;
  const AdapterRef a = Para();
  book.Promote(a);
  ASSERT_EQ(book.TakeChanges().uploads.size(), 1u);
  book.UploadFailed(a.uid());
  EXPECT_EQ(book.upload_failures(), 1);
  EXPECT_EQ(book.UseInStep(a.uid()), Use::kNotPromoted);
  book.Demote(a.uid());
  EXPECT_TRUE(book.TakeChanges().frees.empty()) << "nothing was allocated, nothing to free";
  book.Promote(a);
  EXPECT_EQ(book.TakeChanges().uploads.size(), 1u) << "a later promotion tries again";
}

TEST(DeviceTierBookTest, RequestsFromManyThreadsAreAllApplied) {
  DeviceTierBook book;
  std::vector<AdapterRef> adapters;
  for (int i = 0; i < 64; ++i) adapters.push_back(i % 2 ? Lora() : Para());
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = t; i < 64; i += 4) {
        book.Promote(adapters[i]);
        if (i % 8 == 0) book.Demote(adapters[i].uid());
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(book.TakeChanges().uploads.size(), 56u);  // 64, less the 8 demoted after promotion
  EXPECT_EQ(book.promoted(), 56u);
}

}  // namespace
}  // namespace para::cuda
