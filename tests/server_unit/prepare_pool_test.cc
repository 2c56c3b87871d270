// The prepare pool: long prompts of several tenants are taken round-robin (one tenant's backlog
// does not hold another's), each tenant's in order, and a tenant's backlog is bounded.
#include "server/prepare_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>
#include <mutex>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"

namespace para::server {
namespace {

TEST(PreparePoolTest, TenantsTakeTurnsAndEachKeepsItsOrder) {
  std::vector<std::string> order;
  std::mutex mu;
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  {
    PreparePool pool(1, 64, 1 << 30);
    // The first job holds the only thread until every other job is queued.
    ASSERT_TRUE(pool.Post("a", 1, [gate] { gate.wait(); }).ok());
    for (int i = 0; i < 3; ++i)
      ASSERT_TRUE(pool.Post("a", 1,
                            [&, i] {
                              std::lock_guard<std::mutex> lock(mu);
                              order.push_back(absl::StrCat("a", i));
                            })
                      .ok());
    ASSERT_TRUE(pool.Post("b", 1,
                          [&] {
                            std::lock_guard<std::mutex> lock(mu);
                            order.push_back("b0");
                          })
                    .ok());
    release.set_value();
  }  // the destructor runs what is queued, then joins
  EXPECT_THAT(order, ::testing::ElementsAre("b0", "a0", "a1", "a2"));
}

TEST(PreparePoolTest, ATenantsBacklogIsBounded) {
  std::promise<void> release;
  std::shared_future<void> gate = release.get_future().share();
  PreparePool pool(1, 2, 1 << 30);
  ASSERT_TRUE(pool.Post("a", 1, [gate] { gate.wait(); }).ok());
  // (The first job may or may not have left the queue yet: fill it to the bound either way.)
  absl::Status s;
  int queued = 0;
  while ((s = pool.Post("a", 1, [] {})).ok()) ++queued;
  EXPECT_LE(queued, 2);
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(s.message()),
              ::testing::HasSubstr("tenant 'a' already has 2 long prompts"));
  EXPECT_TRUE(pool.Post("b", 1, [] {}).ok());  // other tenants are not held back
  release.set_value();
}

}  // namespace
}  // namespace para::server
