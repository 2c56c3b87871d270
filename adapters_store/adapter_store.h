// The adapter store: named tenant adapters (PARA or LoRA), their versions, and where their
// weights live.
//
// * Registry: Load(name, tenant, path, type, sha256) validates and loads an adapter off the
//   caller's thread (a Boost.Asio pool) and publishes it atomically. Loading a name that exists
//   makes a new version: new requests get it, requests in flight finish on the version they
//   started with, which is freed when its last lease goes. A failed load changes nothing.
//   Unload removes the name (new requests: NOT_FOUND); in-flight requests still finish.
// * Sources: directories under a configured adapter root only. Paths are canonicalised (symlinks
//   resolved) and refused when they leave the root; only safetensors weights are read (a pickle
//   adapter_model.bin is refused); files over the size limit are refused before reading.
// * Tiers: disk (registered, weights not in memory), host (in memory), device (in memory and
//   schedulable). Host and device have byte budgets; least recently used adapters with no request
//   in flight are demoted (device -> host) or dropped to disk to make room; an adapter with a
//   request in flight is never demoted or freed. On the CPU backend host and device are the same
//   RAM, so the device tier is the set the scheduler may batch and its budget bounds it. A backend
//   with memory of its own (CUDA) is told through its AdapterDeviceTier (adapter_device_tier.h):
//   Promote when an adapter enters the device tier, Demote when it leaves it (demoted to host,
//   dropped to disk, unloaded, replaced, or the store destroyed), so that it holds exactly the
//   device tier's adapters.
// * Manifest: the registry can be written to a JSON manifest (after every change) and read back
//   at start, so a restart serves the same adapters. An adapter too large for the host or device
//   budget is refused at load (RESOURCE_EXHAUSTED). The device tier never demotes an adapter
//   of the running batch; the scheduler stops admitting other adapters while one waits for room.
// * Disk reloads re-check confinement; a failed reload fails the requests waiting for it (with
//   the reason) and the next request tries again.
// * Lazy loading (options.lazy_dir): Acquire of a name that is not registered loads
//   <lazy_dir>/<tenant>/<name> when that directory exists, on a pool thread, and the request
//   waits for it off the engine thread; concurrent first uses of one adapter load it once.
// Thread-safety: every public method is thread-safe; callbacks run on the store's pool threads.
// The store borrows the Engine (validation) and its device tier, which must outlive it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters_store/manifest.h"
#include "engine/adapter_residency.h"
#include "engine/engine.h"

namespace para::store {

enum class Tier { kDisk, kHost, kDevice };
enum class State { kReady, kOnDisk, kReloading, kFailed };  // see admin.proto AdapterState
const char* TierName(Tier t);

struct StoreOptions {
  std::string adapter_root;   // every adapter path must resolve inside it
  std::string manifest_path;  // empty = no persistence
  int64_t host_budget_bytes = int64_t{8} << 30;
  int64_t device_budget_bytes = int64_t{4} << 30;
  int64_t max_adapter_bytes = int64_t{1} << 30;  // largest adapter_model.safetensors accepted
  int threads = 2;                               // loader threads
  // Adapters found on first use: a request for an unknown name N from tenant T loads
  // <lazy_dir>/T/N (which must lie inside adapter_root) and waits for it; empty = off.
  std::string lazy_dir;
};

struct AdapterInfo {
  std::string name, tenant, path, sha256;
  AdapterType type = AdapterType::kAuto;
  int64_t rank = 0;
  int64_t bytes = 0;
  int64_t version = 0;
  Tier tier = Tier::kDisk;
  int64_t in_flight = 0;
  State state = State::kReady;
  std::string last_error;         // state kFailed: why
  int64_t retired_in_flight = 0;  // requests still on replaced versions
  int64_t load_time_us = 0;       // wall time of the last load
  std::chrono::system_clock::time_point loaded_at;
};

// Keeps one version of an adapter alive and counted as in flight while a request uses it.
class Lease {
 public:
  Lease() = default;
  const AdapterRef& ref() const;
  int64_t version() const;
  explicit operator bool() const { return version_ != nullptr; }

 private:
  friend class AdapterStore;
  std::shared_ptr<struct Version> version_;
  std::shared_ptr<void> guard_;  // decrements the in-flight count when the last copy goes
};

class AdapterStore final : public AdapterResidency {
 public:
  // The device tier is the engine's (null on the CPU backend).
  AdapterStore(const Engine* engine, StoreOptions options);
  // With another device tier (tests; null = none).
  AdapterStore(const Engine* engine, StoreOptions options, AdapterDeviceTier* device_tier);
  ~AdapterStore() override;

  // Starts a load; `done` gets the published adapter's info or the reason it was refused.
  void Load(LoadSpec spec, std::function<void(absl::StatusOr<AdapterInfo>)> done);
  // Synchronous convenience (start-up, tests): waits for Load.
  absl::StatusOr<AdapterInfo> LoadAndWait(LoadSpec spec);
  absl::Status Unload(const std::string& name);
  std::vector<AdapterInfo> List(const std::string& tenant_filter = "") const;
  absl::StatusOr<AdapterInfo> Get(const std::string& name) const;
  int64_t size() const;

  // The adapter `name` for `tenant`: NOT_FOUND for unknown names and for another tenant's (the
  // same answer, so that a tenant cannot learn which names others use). When the weights are on
  // disk they are loaded first (on a pool thread); `done` runs when the lease is ready (possibly at
  // once, on the calling thread).
  void Acquire(const std::string& tenant, const std::string& name,
               std::function<void(absl::StatusOr<Lease>)> done);

  // Reads the manifest (if any) and loads every adapter in it (in parallel). Returns an error
  // naming every entry that did not load; those stay in the manifest (not served) until loaded
  // again or unloaded by name, so a restart after fixing their files brings them back.
  absl::Status LoadManifest();

  // AdapterResidency (engine thread): an adapter is resident when on the device tier;
  // RequestResidency promotes it there, demoting idle adapters if the budget needs it.
  bool IsResident(AdapterKind kind, uint64_t adapter_id) override;
  void RequestResidency(AdapterKind kind, uint64_t adapter_id,
                        const std::function<bool(uint64_t)>& is_running) override;

  // Bytes of adapter weights in memory (host + device tiers).
  int64_t bytes_in_memory() const;

  // Counts for metrics: adapters (current versions) and bytes per tier, and load outcomes since
  // start (loads include reloads from disk; a failure is a refused load or a failed reload).
  struct Counts {
    int64_t adapters[3] = {0, 0, 0};  // indexed by Tier
    int64_t bytes[3] = {0, 0, 0};
    int64_t failed_entries = 0;  // manifest entries that did not load (state FAILED)
    int64_t loads = 0, load_failures = 0, evictions = 0;
    int64_t lazy_loads = 0;  // loads started by a first use (counted in `loads` too)
  };
  Counts GetCounts() const;

 private:
  struct Entry;
  struct Kept {  // a manifest entry that did not load at start
    LoadSpec spec;
    std::string error;
  };
  absl::StatusOr<std::string> ConfinedPath(const std::string& path) const;
  absl::StatusOr<std::shared_ptr<Version>> LoadVersion(const LoadSpec& spec,
                                                       const std::string& dir) const;
  absl::Status Publish(const LoadSpec& spec, const std::string& dir, std::shared_ptr<Version> v);
  absl::Status CheckOwnerLocked(const LoadSpec& spec) const;
  void Reload(const LoadSpec& spec, const std::shared_ptr<Version>& version);
  // Lazy loading (lazy_load.cc): starts or joins the load of <lazy_dir>/<tenant>/<name>;
  // false when there is nothing to load there (the caller answers NOT_FOUND).
  bool AcquireLazily(const std::string& tenant, const std::string& name,
                     const std::function<void(absl::StatusOr<Lease>)>& done);
  void FinishLazyLoad(const std::string& tenant, const std::string& name,
                      const absl::Status& status);
  bool MakeRoomLocked(int64_t bytes, Tier tier, const Version* keep,
                      const std::function<bool(const Version&)>& busy);
  // MakeRoomLocked on the host tier; when in-flight adapters keep it over budget, the last of
  // their leases to end trims it (TrimToBudget).
  void MakeHostRoomLocked(int64_t bytes, const Version* keep);
  void TrimToBudget();
  static bool InFlight(const Version& v);
  void IndexLocked(const std::shared_ptr<Version>& v);
  void RetireLocked(Version& v);
  // Tells the device tier that `v`, on the device tier until now, leaves it.
  void LeaveDeviceLocked(const Version& v);
  void TouchLocked(Entry& e);
  Lease LeaseLocked(Entry& e);
  AdapterInfo InfoLocked(Entry& e) const;
  static AdapterInfo KeptInfo(const Kept& k);
  void SaveManifest();

  const Engine* engine_;
  AdapterDeviceTier* device_tier_;  // null: none (CPU)
  StoreOptions options_;
  std::string root_;  // canonical adapter root
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<Entry>> entries_;
  std::map<uint64_t, std::weak_ptr<Version>> by_adapter_id_;  // adapter object -> version
  std::map<std::string, Kept> kept_;  // manifest entries that did not load at start
  uint64_t manifest_generation_ = 0, manifest_saved_ = 0;
  bool manifest_suspended_ = false;
  std::mutex manifest_mu_;  // serialises manifest writes (taken before mu_)
  int64_t host_bytes_ = 0, device_bytes_ = 0;
  int64_t evictions_ = 0;  // guarded by mu_
  std::atomic<int64_t> loads_{0}, load_failures_{0}, lazy_loads_{0};
  // Requests waiting for a lazy load, by (tenant, name); guarded by mu_.
  std::map<std::pair<std::string, std::string>,
           std::vector<std::function<void(const absl::Status&)>>>
      lazy_waiters_;
  uint64_t clock_ = 0;  // LRU counter
  struct Pool;
  std::unique_ptr<Pool> pool_;
  // Shared with the leases: the last lease of a version to end, while the host tier is over its
  // budget, asks the store (if it still exists) to trim.
  struct Trimmer {
    std::mutex mu;
    AdapterStore* store = nullptr;  // guarded by mu; null once the store is gone
    std::atomic<bool> over{false};  // the host tier is over budget
    void LeaseEnded();
  };
  std::shared_ptr<Trimmer> trimmer_;
};

}  // namespace para::store
