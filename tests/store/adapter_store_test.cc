// The adapter store: versions and leases, failed loads, unload, tenants, path confinement,
// tiers and LRU, sha256, the manifest, and registering 1000 adapters.
#include "adapters_store/adapter_store.h"

#include "absl/strings/str_cat.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>

#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::store {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

struct Env {
  std::unique_ptr<Engine> engine;
  std::string root;
  Env()
      : engine(para::testing::MakeEngine(para::testing::DefaultTinyModelDir())),
        root(para::testing::MakeTempDir("root_")) {}
  // A PARA adapter (seed s) under the root; returns its path relative to the root.
  std::string Para(const std::string& name, uint64_t seed) {
    tools::TinyParaOptions o;
    o.seed = seed;
    EXPECT_TRUE(
        tools::MakeTinyParaAdapter(root + "/" + name, para::testing::DefaultTinyModelDir(), o)
            .ok());
    return name;
  }
  StoreOptions Options() const {
    StoreOptions o;
    o.adapter_root = root;
    return o;
  }
};

LoadSpec Spec(const std::string& name, const std::string& tenant, const std::string& path) {
  LoadSpec s;
  s.name = name;
  s.tenant = tenant;
  s.path = path;
  return s;
}

// Bytes in memory of one tiny PARA adapter (to size budgets in adapters).
int64_t OneAdapterBytes(Env& env) {
  return AdapterStore(env.engine.get(), env.Options())
      .LoadAndWait(Spec("x", "t", env.Para("x", 9)))
      ->bytes;
}

absl::StatusOr<Lease> AcquireNow(AdapterStore& s, const std::string& tenant,
                                 const std::string& name) {
  std::promise<absl::StatusOr<Lease>> p;
  auto f = p.get_future();
  s.Acquire(tenant, name, [&p](absl::StatusOr<Lease> l) { p.set_value(std::move(l)); });
  return f.get();
}

TEST(AdapterStoreTest, ReplacingMakesANewVersionWhileLeasesKeepTheOldOne) {
  Env env;
  AdapterStore store(env.engine.get(), env.Options());
  auto v1 = store.LoadAndWait(Spec("a", "acme", env.Para("a1", 1)));
  ASSERT_TRUE(v1.ok()) << v1.status();
  EXPECT_EQ(v1->version, 1);
  EXPECT_EQ(v1->type, AdapterType::kPara);
  EXPECT_EQ(v1->tier, Tier::kHost);
  auto old_lease = AcquireNow(store, "acme", "a");
  ASSERT_TRUE(old_lease.ok());
  std::weak_ptr<const ParaAdapter> old_weights = old_lease->ref().para;
  EXPECT_EQ(store.Get("a")->in_flight, 1);

  auto v2 = store.LoadAndWait(Spec("a", "acme", env.Para("a2", 2)));
  ASSERT_TRUE(v2.ok());
  EXPECT_EQ(v2->version, 2);
  auto new_lease = AcquireNow(store, "acme", "a");
  EXPECT_EQ(new_lease->version(), 2);
  EXPECT_EQ(old_lease->version(), 1);
  EXPECT_NE(new_lease->ref().para, old_lease->ref().para);
  EXPECT_FALSE(old_weights.expired()) << "in-flight requests keep the old version";
  EXPECT_EQ(store.Get("a")->retired_in_flight, 1);
  EXPECT_EQ(store.Get("a")->in_flight, 1);
  *old_lease = Lease();
  EXPECT_TRUE(old_weights.expired()) << "the old version is freed after its last request";
  EXPECT_EQ(store.Get("a")->retired_in_flight, 0);
}

TEST(AdapterStoreTest, FailedLoadLeavesThePreviousVersionServing) {
  Env env;
  AdapterStore store(env.engine.get(), env.Options());
  ASSERT_TRUE(store.LoadAndWait(Spec("a", "acme", env.Para("good", 1))).ok());
  fs::create_directories(env.root + "/bad");
  std::ofstream(env.root + "/bad/adapter_config.json") << R"({"peft_type":"PARA","r":8})";
  std::ofstream(env.root + "/bad/adapter_model.safetensors") << "garbage";
  auto r = store.LoadAndWait(Spec("a", "acme", "bad"));
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("corrupt safetensors file"));
  EXPECT_EQ(store.Get("a")->version, 1);
  EXPECT_TRUE(AcquireNow(store, "acme", "a").ok());
}

TEST(AdapterStoreTest, UnloadRefusesNewRequestsButInFlightOnesFinish) {
  Env env;
  AdapterStore store(env.engine.get(), env.Options());
  ASSERT_TRUE(store.LoadAndWait(Spec("a", "acme", env.Para("a", 1))).ok());
  auto lease = AcquireNow(store, "acme", "a");
  ASSERT_TRUE(store.Unload("a").ok());
  EXPECT_EQ(AcquireNow(store, "acme", "a").status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(lease->ref().para != nullptr);
  EXPECT_EQ(store.Unload("a").code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.size(), 0);
}

TEST(AdapterStoreTest, NamesBelongToOneTenant) {
  Env env;
  AdapterStore store(env.engine.get(), env.Options());
  ASSERT_TRUE(store.LoadAndWait(Spec("a", "acme", env.Para("a", 1))).ok());
  auto other = store.LoadAndWait(Spec("a", "globex", "a"));
  EXPECT_EQ(other.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(other.status().message()), HasSubstr("belongs to tenant 'acme'"));
  // Another tenant's adapter is answered as a name that does not exist (names stay private).
  auto acquired = AcquireNow(store, "globex", "a");
  EXPECT_EQ(acquired.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(acquired.status().message(), "unknown adapter 'a'");
  EXPECT_EQ(AcquireNow(store, "globex", "zz").status().message(), "unknown adapter 'zz'");
  EXPECT_EQ(store.List("acme").size(), 1u);
  EXPECT_TRUE(store.List("globex").empty());
}

TEST(AdapterStoreTest, PathsMustStayInsideTheRoot) {
  Env env;
  AdapterStore store(env.engine.get(), env.Options());
  const std::string outside = para::testing::MakeTempDir("outside_");
  tools::TinyParaOptions o;
  ASSERT_TRUE(
      tools::MakeTinyParaAdapter(outside + "/x", para::testing::DefaultTinyModelDir(), o).ok());
  auto code = [&](const std::string& path) {
    return store.LoadAndWait(Spec("n", "acme", path)).status();
  };
  EXPECT_EQ(code("../" + fs::path(outside).filename().string() + "/x").code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(code(outside + "/x").code(), absl::StatusCode::kPermissionDenied);
  fs::create_symlink(outside + "/x", env.root + "/escape");
  absl::Status s = code("escape");
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("resolves outside the adapter root"));
  fs::create_directories(env.root + "/half");
  fs::copy_file(outside + "/x/adapter_config.json", env.root + "/half/adapter_config.json");
  fs::create_symlink(outside + "/x/adapter_model.safetensors",
                     env.root + "/half/adapter_model.safetensors");
  EXPECT_THAT(std::string(code("half").message()),
              HasSubstr("adapter_model.safetensors' resolves outside"));
  EXPECT_EQ(code("missing").code(), absl::StatusCode::kNotFound);
  // A symlink that stays inside the root is fine.
  env.Para("real", 3);
  fs::create_symlink(env.root + "/real", env.root + "/alias");
  EXPECT_TRUE(store.LoadAndWait(Spec("alias", "acme", "alias")).ok());
  AdapterStore rootless(env.engine.get(), StoreOptions());
  EXPECT_EQ(rootless.LoadAndWait(Spec("n", "acme", "x")).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(AdapterStoreTest, PickleSizeAndChecksumAreChecked) {
  Env env;
  StoreOptions o = env.Options();
  o.max_adapter_bytes = 1000;
  AdapterStore small(env.engine.get(), o);
  const std::string p = env.Para("p", 1);
  EXPECT_THAT(std::string(small.LoadAndWait(Spec("p", "acme", p)).status().message()),
              HasSubstr("the limit is 1000"));
  AdapterStore store(env.engine.get(), env.Options());
  LoadSpec spec = Spec("p", "acme", p);
  spec.sha256 = std::string(64, '0');
  EXPECT_THAT(std::string(store.LoadAndWait(spec).status().message()), HasSubstr("sha256 is "));
  fs::create_directories(env.root + "/pickle");
  fs::copy_file(env.root + "/p/adapter_config.json", env.root + "/pickle/adapter_config.json");
  std::ofstream(env.root + "/pickle/adapter_model.bin") << "PK\x03\x04";
  EXPECT_THAT(std::string(store.LoadAndWait(Spec("k", "acme", "pickle")).status().message()),
              HasSubstr("pickle checkpoints are not loaded"));
  spec.type = AdapterType::kLora;
  spec.sha256.clear();
  EXPECT_THAT(std::string(store.LoadAndWait(spec).status().message()),
              HasSubstr("is para, not lora"));
}

TEST(AdapterStoreTest, HostBudgetDropsIdleAdaptersToDiskAndReloadsThemOnUse) {
  Env env;
  const int64_t one = OneAdapterBytes(env);
  StoreOptions o = env.Options();
  o.host_budget_bytes = 2 * one + one / 2;  // room for two
  AdapterStore store(env.engine.get(), o);
  for (int i = 0; i < 3; ++i)
    ASSERT_TRUE(
        store.LoadAndWait(Spec(absl::StrCat("a", i), "t", env.Para(absl::StrCat("a", i), i))).ok());
  EXPECT_EQ(store.Get("a0")->tier, Tier::kDisk)
      << "the least recently used idle adapter went to disk";
  EXPECT_EQ(store.Get("a0")->state, State::kOnDisk);
  EXPECT_EQ(store.Get("a1")->state, State::kReady);
  EXPECT_LE(store.bytes_in_memory(), o.host_budget_bytes);
  // Using it brings it back (and drops another idle one).
  auto lease = AcquireNow(store, "t", "a0");
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_TRUE(lease->ref().para != nullptr);
  EXPECT_NE(store.Get("a0")->tier, Tier::kDisk);
  EXPECT_LE(store.bytes_in_memory(), o.host_budget_bytes);
  // An adapter in use is never dropped, even when that leaves the budget exceeded.
  auto l1 = AcquireNow(store, "t", "a1");
  auto l2 = AcquireNow(store, "t", "a2");
  ASSERT_TRUE(l1.ok() && l2.ok());
  EXPECT_NE(store.Get("a0")->tier, Tier::kDisk);
  EXPECT_NE(store.Get("a1")->tier, Tier::kDisk);
  EXPECT_NE(store.Get("a2")->tier, Tier::kDisk);
}

TEST(AdapterStoreTest, AFailedReloadFailsItsWaitersOnceAndStaysConfined) {
  Env env;
  const int64_t one = OneAdapterBytes(env);
  StoreOptions o = env.Options();
  o.host_budget_bytes = one + one / 2;  // room for one
  AdapterStore store(env.engine.get(), o);
  ASSERT_TRUE(store.LoadAndWait(Spec("gone", "t", env.Para("gone", 1))).ok());
  ASSERT_TRUE(store.LoadAndWait(Spec("moved", "t", env.Para("moved", 2))).ok());
  ASSERT_TRUE(store.LoadAndWait(Spec("other", "t", env.Para("other", 3))).ok());
  ASSERT_EQ(store.Get("gone")->tier, Tier::kDisk);
  ASSERT_EQ(store.Get("moved")->tier, Tier::kDisk);
  // Files removed: the request gets the reload error naming the adapter (not a retry loop).
  fs::remove_all(env.root + "/gone");
  auto lost = AcquireNow(store, "t", "gone");
  EXPECT_EQ(lost.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(lost.status().message(), HasSubstr("adapter 'gone' could not be reloaded from disk"));
  EXPECT_EQ(store.Get("gone")->tier, Tier::kDisk)
      << "still registered; the next request tries again";
  EXPECT_EQ(store.Get("gone")->state, State::kFailed);
  EXPECT_THAT(store.Get("gone")->last_error, HasSubstr("'gone' does not exist"));
  EXPECT_EQ(store.Get("moved")->state, State::kOnDisk);
  // Weights replaced by a symlink leaving the root: the reload is refused.
  const std::string outside = para::testing::MakeTempDir("outside_");
  tools::TinyParaOptions po;
  ASSERT_TRUE(
      tools::MakeTinyParaAdapter(outside + "/a", para::testing::DefaultTinyModelDir(), po).ok());
  fs::remove(env.root + "/moved/adapter_model.safetensors");
  fs::create_symlink(outside + "/a/adapter_model.safetensors",
                     env.root + "/moved/adapter_model.safetensors");
  auto escaped = AcquireNow(store, "t", "moved");
  EXPECT_EQ(escaped.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(escaped.status().message(), HasSubstr("outside the adapter root"));
  EXPECT_TRUE(AcquireNow(store, "t", "other").ok()) << "other adapters keep working";
}

TEST(AdapterStoreTest, AnAdapterLargerThanATierBudgetIsRefusedAtLoad) {
  Env env;
  const int64_t one = OneAdapterBytes(env);
  for (bool device : {false, true}) {
    StoreOptions o = env.Options();
    (device ? o.device_budget_bytes : o.host_budget_bytes) = one / 2;
    AdapterStore store(env.engine.get(), o);
    auto r = store.LoadAndWait(Spec("big", "t", "x"));
    EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted);
    EXPECT_THAT(r.status().message(),
                HasSubstr(absl::StrCat("adapter 'big' needs ", one, " bytes")));
    EXPECT_THAT(r.status().message(),
                HasSubstr(device ? "device tier budget" : "host tier budget"));
    EXPECT_EQ(store.size(), 0);
  }
}

TEST(AdapterStoreTest, ConcurrentClaimsOfANewNameGiveItToOneTenant) {
  Env env;
  env.Para("p", 1);
  AdapterStore store(env.engine.get(), env.Options());
  for (int round = 0; round < 20; ++round) {
    const std::string name = absl::StrCat("n", round);
    std::promise<absl::StatusOr<AdapterInfo>> a, b;
    store.Load(Spec(name, "acme", "p"),
               [&a](absl::StatusOr<AdapterInfo> r) { a.set_value(std::move(r)); });
    store.Load(Spec(name, "globex", "p"),
               [&b](absl::StatusOr<AdapterInfo> r) { b.set_value(std::move(r)); });
    auto ra = a.get_future().get(), rb = b.get_future().get();
    ASSERT_NE(ra.ok(), rb.ok()) << name << ": " << ra.status() << " / " << rb.status();
    const auto& lost = ra.ok() ? rb : ra;
    EXPECT_EQ(lost.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_EQ(store.Get(name)->tenant, ra.ok() ? "acme" : "globex");
  }
}

TEST(AdapterStoreTest, DeviceTierFollowsUseWithinItsBudget) {
  Env env;
  StoreOptions o = env.Options();
  const int64_t one = OneAdapterBytes(env);
  o.device_budget_bytes = one + one / 2;  // room for one
  AdapterStore store(env.engine.get(), o);
  ASSERT_TRUE(store.LoadAndWait(Spec("a", "t", env.Para("a", 1))).ok());
  ASSERT_TRUE(store.LoadAndWait(Spec("b", "t", env.Para("b", 2))).ok());
  auto a = AcquireNow(store, "t", "a");
  auto b = AcquireNow(store, "t", "b");
  const uint64_t id_a = reinterpret_cast<uintptr_t>(a->ref().para.get());
  const uint64_t id_b = reinterpret_cast<uintptr_t>(b->ref().para.get());
  auto running = [&](uint64_t id) { return id == id_a; };  // a is in the running batch
  auto none = [](uint64_t) { return false; };
  EXPECT_FALSE(store.IsResident(sched::AdapterKind::kPara, id_a));
  store.RequestResidency(sched::AdapterKind::kPara, id_a, none);
  EXPECT_TRUE(store.IsResident(sched::AdapterKind::kPara, id_a));
  store.RequestResidency(sched::AdapterKind::kPara, id_b, running);
  EXPECT_FALSE(store.IsResident(sched::AdapterKind::kPara, id_b))
      << "a is running: it keeps the device budget";
  // Leases alone (queued requests) do not pin the device tier: once a leaves the batch, b goes in.
  store.RequestResidency(sched::AdapterKind::kPara, id_b, none);
  EXPECT_TRUE(store.IsResident(sched::AdapterKind::kPara, id_b));
  EXPECT_FALSE(store.IsResident(sched::AdapterKind::kPara, id_a));
  EXPECT_EQ(store.Get("a")->tier, Tier::kHost);
}

// Records the store's calls to a backend's device tier, in order: "+<uid>" for a promotion,
// "-<uid>" for a demotion.
class RecordingTier final : public AdapterDeviceTier {
 public:
  void Promote(AdapterRef adapter) override { Add(absl::StrCat("+", adapter.uid())); }
  void Demote(uint64_t adapter_uid) override { Add(absl::StrCat("-", adapter_uid)); }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(calls_, {});
  }

 private:
  void Add(std::string call) {
    std::lock_guard<std::mutex> lock(mu_);
    calls_.push_back(std::move(call));
  }
  std::mutex mu_;
  std::vector<std::string> calls_;
};

std::string Up(uint64_t uid) { return absl::StrCat("+", uid); }
std::string Down(uint64_t uid) { return absl::StrCat("-", uid); }
uint64_t ResidencyId(const Lease& l) { return reinterpret_cast<uintptr_t>(l.ref().para.get()); }

TEST(AdapterStoreTest, TheDeviceTierIsToldOfPromotionsAndOfDemotionsToMakeRoom) {
  Env env;
  EXPECT_EQ(env.engine->adapter_device_tier(), nullptr)
      << "on the CPU backend host and device are the same RAM: no tier to tell";
  StoreOptions o = env.Options();
  const int64_t one = OneAdapterBytes(env);
  o.device_budget_bytes = one + one / 2;  // room for one
  RecordingTier tier;
  AdapterStore store(env.engine.get(), o, &tier);
  ASSERT_TRUE(store.LoadAndWait(Spec("a", "t", env.Para("a", 1))).ok());
  ASSERT_TRUE(store.LoadAndWait(Spec("b", "t", env.Para("b", 2))).ok());
  EXPECT_THAT(tier.Take(), ::testing::IsEmpty()) << "loaded adapters start on the host tier";
  auto a = AcquireNow(store, "t", "a");
  auto b = AcquireNow(store, "t", "b");
  ASSERT_TRUE(a.ok() && b.ok());
  const uint64_t a_uid = a->ref().uid(), b_uid = b->ref().uid();
  auto none = [](uint64_t) { return false; };
  auto a_runs = [&](uint64_t id) { return id == ResidencyId(*a); };
  store.RequestResidency(AdapterKind::kPara, ResidencyId(*a), none);
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Up(a_uid)));
  store.RequestResidency(AdapterKind::kPara, ResidencyId(*a), none);
  EXPECT_THAT(tier.Take(), ::testing::IsEmpty()) << "already on the device tier";
  store.RequestResidency(AdapterKind::kPara, ResidencyId(*b), a_runs);
  EXPECT_THAT(tier.Take(), ::testing::IsEmpty()) << "a runs: nothing moves";
  store.RequestResidency(AdapterKind::kPara, ResidencyId(*b), none);
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Down(a_uid), Up(b_uid)))
      << "a leaves the device before b enters it";
  EXPECT_EQ(store.Get("a")->tier, Tier::kHost);
  EXPECT_EQ(store.Get("b")->tier, Tier::kDevice);
}

TEST(AdapterStoreTest, TheDeviceTierIsToldWhenAnAdapterIsDroppedUnloadedOrReplaced) {
  Env env;
  StoreOptions o = env.Options();
  const int64_t one = OneAdapterBytes(env);
  o.host_budget_bytes = 2 * one + one / 2;  // room for two, host and device together
  RecordingTier tier;
  auto none = [](uint64_t) { return false; };
  // Dropped to disk from the device tier to make host room: demoted.
  {
    AdapterStore store(env.engine.get(), o, &tier);
    ASSERT_TRUE(store.LoadAndWait(Spec("a", "t", env.Para("a", 1))).ok());
    uint64_t a_uid = 0;
    {
      auto a = AcquireNow(store, "t", "a");  // released at once: a is idle
      ASSERT_TRUE(a.ok());
      a_uid = a->ref().uid();
      store.RequestResidency(AdapterKind::kPara, ResidencyId(*a), none);
    }
    ASSERT_THAT(tier.Take(), ::testing::ElementsAre(Up(a_uid)));
    ASSERT_TRUE(store.LoadAndWait(Spec("b", "t", env.Para("b", 2))).ok());
    EXPECT_THAT(tier.Take(), ::testing::IsEmpty());
    ASSERT_TRUE(store.LoadAndWait(Spec("c", "t", env.Para("c", 3))).ok());
    EXPECT_EQ(store.Get("a")->tier, Tier::kDisk) << "the least recently used adapter went to disk";
    EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Down(a_uid)));
  }
  EXPECT_THAT(tier.Take(), ::testing::IsEmpty()) << "nothing else was on the device tier";
  // Unloaded and replaced (even with requests still in flight on them), and the store's end.
  auto store = std::make_unique<AdapterStore>(env.engine.get(), o, &tier);
  ASSERT_TRUE(store->LoadAndWait(Spec("u", "t", env.Para("u", 4))).ok());
  ASSERT_TRUE(store->LoadAndWait(Spec("r", "t", env.Para("r", 5))).ok());
  auto u = AcquireNow(*store, "t", "u");
  auto r1 = AcquireNow(*store, "t", "r");
  ASSERT_TRUE(u.ok() && r1.ok());
  store->RequestResidency(AdapterKind::kPara, ResidencyId(*u), none);
  store->RequestResidency(AdapterKind::kPara, ResidencyId(*r1), none);
  ASSERT_THAT(tier.Take(), ::testing::ElementsAre(Up(u->ref().uid()), Up(r1->ref().uid())));
  ASSERT_TRUE(store->Unload("u").ok());
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Down(u->ref().uid())));
  ASSERT_TRUE(store->LoadAndWait(Spec("r", "t", env.Para("r2", 6))).ok());
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Down(r1->ref().uid())))
      << "the replaced version leaves the device tier; the new one starts on the host";
  auto r2 = AcquireNow(*store, "t", "r");
  ASSERT_TRUE(r2.ok());
  ASSERT_NE(r2->ref().uid(), r1->ref().uid());
  store->RequestResidency(AdapterKind::kPara, ResidencyId(*r2), none);
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Up(r2->ref().uid())));
  store.reset();  // the leases outlive it
  EXPECT_THAT(tier.Take(), ::testing::ElementsAre(Down(r2->ref().uid())))
      << "a store that goes leaves nothing on the device tier";
}

TEST(AdapterStoreTest, ManifestBringsBackTheSameAdapters) {
  Env env;
  StoreOptions o = env.Options();
  o.manifest_path = env.root + "/manifest.json";
  {
    AdapterStore store(env.engine.get(), o);
    ASSERT_TRUE(store.LoadAndWait(Spec("p", "acme", env.Para("p", 1))).ok());
    tools::TinyLoraOptions lo;
    ASSERT_TRUE(
        tools::MakeTinyLoraAdapter(env.root + "/l", para::testing::DefaultTinyModelDir(), lo).ok());
    ASSERT_TRUE(store.LoadAndWait(Spec("l", "globex", "l")).ok());
    ASSERT_TRUE(store.LoadAndWait(Spec("gone", "acme", env.Para("gone", 2))).ok());
    ASSERT_TRUE(store.Unload("gone").ok());
  }
  AdapterStore again(env.engine.get(), o);
  ASSERT_TRUE(again.LoadManifest().ok());
  auto all = again.List();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0].name, "l");
  EXPECT_EQ(all[0].tenant, "globex");
  EXPECT_EQ(all[0].type, AdapterType::kLora);
  EXPECT_EQ(all[1].name, "p");
  // An entry that no longer loads is reported, kept in the manifest (not served), and forgotten
  // only when unloaded by name.
  {
    fs::remove_all(env.root + "/l");
    AdapterStore store(env.engine.get(), o);
    const absl::Status s = store.LoadManifest();
    EXPECT_THAT(s.message(), HasSubstr("1 of 2 manifest adapters did not load; 'l':"));
    EXPECT_EQ(store.size(), 1);
    EXPECT_EQ(store.Get("l")->state, State::kFailed) << "listed, with the reason";
    EXPECT_THAT(store.Get("l")->last_error, HasSubstr("does not exist"));
    EXPECT_EQ(store.List().size(), 2u);
    auto lease = AcquireNow(store, "globex", "l");
    EXPECT_EQ(lease.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(lease.status().message(), HasSubstr("adapter 'l' did not load at start"));
    ASSERT_TRUE(
        store.LoadAndWait(Spec("q", "acme", env.Para("q", 3))).ok());  // rewrites the manifest
    std::ifstream in(o.manifest_path);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    EXPECT_THAT(text, HasSubstr("\"name\": \"l\""));
    EXPECT_EQ(store.LoadAndWait(Spec("l", "acme", "p")).status().code(),
              absl::StatusCode::kPermissionDenied)
        << "the kept name still belongs to globex";
    EXPECT_TRUE(store.Unload("l").ok());
    EXPECT_EQ(store.Unload("l").code(), absl::StatusCode::kNotFound);
  }
  EXPECT_EQ(AdapterStore(env.engine.get(), o).LoadManifest().code(), absl::StatusCode::kOk);
  std::ofstream(o.manifest_path, std::ios::trunc) << "{oops";
  EXPECT_EQ(AdapterStore(env.engine.get(), o).LoadManifest().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AdapterStoreTest, AThousandAdaptersRegisterAndListQuickly) {
  Env env;
  env.Para("src", 1);
  for (int i = 0; i < 1000; ++i)
    fs::create_directory_symlink(env.root + "/src", absl::StrCat(env.root, "/t", i));
  AdapterStore store(env.engine.get(), env.Options());
  auto t0 = std::chrono::steady_clock::now();
  std::vector<std::promise<absl::StatusOr<AdapterInfo>>> done(1000);
  for (int i = 0; i < 1000; ++i)
    store.Load(Spec(absl::StrCat("a", i), absl::StrCat("t", i % 50), absl::StrCat("t", i)),
               [&done, i](absl::StatusOr<AdapterInfo> r) { done[i].set_value(std::move(r)); });
  for (auto& d : done) ASSERT_TRUE(d.get_future().get().ok());
  const double load_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  const auto all = store.List();
  const double list_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i)
    ASSERT_TRUE(AcquireNow(store, absl::StrCat("t", i % 50), absl::StrCat("a", i)).ok());
  const double acquire_us =
      std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() /
      1000;
  std::printf(
      "1000 PARA adapters: load %.2f s (%.2f ms each), list %.2f ms, acquire %.1f us each\n",
      load_s, load_s, list_ms, acquire_us);
  EXPECT_EQ(all.size(), 1000u);
  EXPECT_LT(list_ms, 500.0);
}

}  // namespace
}  // namespace para::store
