#include "adapters_store/adapter_store.h"

#include <openssl/sha.h>

#include <boost/asio/post.hpp>
#include <boost/asio/thread_pool.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace para::store {

namespace fs = std::filesystem;

// One loaded (or dropped-to-disk) version of an adapter.
struct Version {
  int64_t number = 0;
  AdapterType type = AdapterType::kAuto;
  std::string dir;
  std::string sha256;  // of adapter_model.safetensors as loaded
  int64_t bytes = 0;
  int64_t rank = 0;
  AdapterRef ref;  // empty while on the disk tier
  Tier tier = Tier::kDisk;
  uint64_t last_used = 0;
  std::atomic<int64_t> in_flight{0};
  bool retired = false;  // replaced or unloaded: serves only the requests that hold it
  int64_t load_time_us = 0;
  std::chrono::system_clock::time_point loaded_at;
};

struct AdapterStore::Entry {
  LoadSpec spec;    // as registered (path as given)
  std::string dir;  // canonical directory
  std::shared_ptr<Version> current;
  int64_t next_version = 1;
  bool reloading = false;  // weights coming back from disk
  std::string last_error;  // why the last reload failed (cleared by a good one)
  std::vector<std::weak_ptr<Version>> retired;  // replaced versions possibly still in use
  // Requests waiting for the reload: called with OK (acquire again) or the reason it failed.
  std::vector<std::function<void(const absl::Status&)>> waiters;
};

struct AdapterStore::Pool {
  explicit Pool(int threads) : pool(static_cast<size_t>(std::max(1, threads))) {}
  boost::asio::thread_pool pool;
};

namespace {

absl::StatusOr<std::string> Sha256Hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  SHA256_CTX ctx;
  SHA256_Init(&ctx);
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    SHA256_Update(&ctx, buf.data(), static_cast<size_t>(in.gcount()));
  }
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256_Final(digest, &ctx);
  std::string hex;
  for (unsigned char b : digest) absl::StrAppend(&hex, absl::Hex(b, absl::kZeroPad2));
  return hex;
}

uint64_t AdapterIdOf(const AdapterRef& ref) {
  return reinterpret_cast<uintptr_t>(ref.para ? static_cast<const void*>(ref.para.get())
                                              : static_cast<const void*>(ref.lora.get()));
}

// An adapter name, quoted, as error messages show it: names come from clients, so a long one is
// cut (adapter names are at most 128 bytes; anything longer names no adapter).
std::string Quoted(const std::string& name) {
  constexpr size_t kMax = 128;
  if (name.size() <= kMax) return absl::StrCat("'", name, "'");
  size_t cut = 64;
  while (cut > 0 && (static_cast<unsigned char>(name[cut]) & 0xC0) == 0x80) --cut;  // UTF-8
  return absl::StrCat("'", name.substr(0, cut), "...' (", name.size(), " bytes)");
}

absl::Status UnknownAdapter(const std::string& name) {
  return absl::NotFoundError(absl::StrCat("unknown adapter ", Quoted(name)));
}

void TrimHeap() {
#ifdef __GLIBC__
  malloc_trim(0);  // give freed adapter weights back to the OS now, not at the next large free
#endif
}

bool Within(const fs::path& root, const fs::path& p) {
  auto r = root.begin(), q = p.begin();
  for (; r != root.end(); ++r, ++q)
    if (q == p.end() || *r != *q) return false;
  return true;
}

}  // namespace

const char* TierName(Tier t) {
  switch (t) {
    case Tier::kDisk:
      return "disk";
    case Tier::kHost:
      return "host";
    case Tier::kDevice:
      return "device";
  }
  return "";
}

const AdapterRef& Lease::ref() const { return version_->ref; }
int64_t Lease::version() const { return version_->number; }

AdapterStore::AdapterStore(const Engine* engine, StoreOptions options)
    : AdapterStore(engine, std::move(options), engine->adapter_device_tier()) {}

AdapterStore::AdapterStore(const Engine* engine, StoreOptions options,
                           AdapterDeviceTier* device_tier)
    : engine_(engine),
      device_tier_(device_tier),
      options_(std::move(options)),
      pool_(std::make_unique<Pool>(options_.threads)),
      trimmer_(std::make_shared<Trimmer>()) {
  trimmer_->store = this;
  std::error_code ec;
  root_ =
      options_.adapter_root.empty() ? "" : fs::weakly_canonical(options_.adapter_root, ec).string();
}

AdapterStore::~AdapterStore() {
  {
    std::lock_guard<std::mutex> lock(trimmer_->mu);
    trimmer_->store = nullptr;  // leases that outlive the store trim nothing
  }
  pool_->pool.join();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, e] : entries_) LeaveDeviceLocked(*e->current);
}

absl::StatusOr<std::string> AdapterStore::ConfinedPath(const std::string& path) const {
  if (root_.empty())
    return absl::FailedPreconditionError(
        "no adapter root is configured; adapters cannot be loaded");
  if (path.empty()) return absl::InvalidArgumentError("adapter path is empty");
  // The file system would see only the part before it (one directory loaded, another recorded).
  if (const size_t nul = path.find('\0'); nul != std::string::npos)
    return absl::InvalidArgumentError(
        absl::StrCat("adapter path has a NUL byte (at byte ", nul, " of ", path.size(), ")"));
  fs::path p(path);
  if (p.is_relative()) p = fs::path(root_) / p;
  std::error_code ec;
  const fs::path canonical = fs::weakly_canonical(p, ec);  // resolves '..' and symlinks
  if (ec)
    return absl::InvalidArgumentError(
        absl::StrCat("cannot resolve adapter path '", path, "': ", ec.message()));
  if (!Within(fs::path(root_), canonical))
    return absl::PermissionDeniedError(
        absl::StrCat("adapter path '", path, "' resolves outside the adapter root ", root_));
  if (!fs::is_directory(canonical, ec))
    return absl::NotFoundError(absl::StrCat("adapter directory '", path, "' does not exist"));
  // The files must stay inside the root too (a symlinked file could point anywhere).
  for (const char* file : {"adapter_config.json", "adapter_model.safetensors"}) {
    const fs::path f = canonical / file;
    if (!fs::exists(f, ec)) continue;
    const fs::path resolved = fs::weakly_canonical(f, ec);
    if (ec || !Within(fs::path(root_), resolved))
      return absl::PermissionDeniedError(absl::StrCat(
          "adapter file '", path, "/", file, "' resolves outside the adapter root ", root_));
  }
  return canonical.string();
}

absl::StatusOr<std::shared_ptr<Version>> AdapterStore::LoadVersion(const LoadSpec& spec,
                                                                   const std::string& dir) const {
  std::error_code ec;
  const fs::path config = fs::path(dir) / "adapter_config.json";
  if (fs::exists(config, ec)) {
    if (!fs::is_regular_file(config, ec))
      return absl::InvalidArgumentError(absl::StrCat(config.string(), " is not a regular file"));
    if (fs::file_size(config, ec) > (1u << 20))
      return absl::InvalidArgumentError(
          absl::StrCat("adapter '", spec.name, "' has an adapter_config.json over 1 MiB"));
  }
  const fs::path weights = fs::path(dir) / "adapter_model.safetensors";
  if (!fs::exists(weights, ec)) {
    if (fs::exists(fs::path(dir) / "adapter_model.bin", ec))
      return absl::InvalidArgumentError(
          absl::StrCat("adapter '", spec.name,
                       "' has only adapter_model.bin: pickle checkpoints are not loaded; "
                       "save it as safetensors"));
    return absl::NotFoundError(
        absl::StrCat("adapter '", spec.name, "' has no adapter_model.safetensors in ", dir));
  }
  if (!fs::is_regular_file(weights, ec))
    return absl::InvalidArgumentError(absl::StrCat(weights.string(), " is not a regular file"));
  const auto size = static_cast<int64_t>(fs::file_size(weights, ec));
  if (size > options_.max_adapter_bytes)
    return absl::InvalidArgumentError(absl::StrCat("adapter '", spec.name, "' weights are ", size,
                                                   " bytes; the limit is ",
                                                   options_.max_adapter_bytes));
  // The digest is kept: a reload from disk must find the very file that was loaded.
  ASSIGN_OR_RETURN(std::string digest, Sha256Hex(weights.string()));
  if (!spec.sha256.empty() && digest != spec.sha256)
    return absl::InvalidArgumentError(
        absl::StrCat("adapter '", spec.name, "' sha256 is ", digest, ", expected ", spec.sha256));
  const auto t0 = std::chrono::steady_clock::now();
  auto v = std::make_shared<Version>();
  v->sha256 = digest;
  v->dir = dir;
  ASSIGN_OR_RETURN(v->ref, engine_->LoadAdapter(dir));
  v->type = v->ref.para ? AdapterType::kPara : AdapterType::kLora;
  if (spec.type != AdapterType::kAuto && spec.type != v->type)
    return absl::InvalidArgumentError(absl::StrCat("adapter '", spec.name, "' is ",
                                                   AdapterTypeName(v->type), ", not ",
                                                   AdapterTypeName(spec.type)));
  v->bytes = v->ref.para ? v->ref.para->bytes() : v->ref.lora->bytes();
  v->rank = v->ref.para ? v->ref.para->config().r : v->ref.lora->max_rank();
  for (auto [tier, budget] :
       {std::pair{"host", options_.host_budget_bytes}, {"device", options_.device_budget_bytes}})
    if (v->bytes > budget)
      return absl::ResourceExhaustedError(absl::StrCat("adapter '", spec.name, "' needs ", v->bytes,
                                                       " bytes in memory; the ", tier,
                                                       " tier budget is ", budget, " bytes"));
  v->load_time_us =
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  v->loaded_at = std::chrono::system_clock::now();
  return v;
}

void AdapterStore::TouchLocked(Entry& e) { e.current->last_used = ++clock_; }

Lease AdapterStore::LeaseLocked(Entry& e) {
  TouchLocked(e);
  Lease lease;
  lease.version_ = e.current;
  e.current->in_flight.fetch_add(1);
  std::shared_ptr<Version> v = e.current;
  lease.guard_ = std::shared_ptr<void>(nullptr, [v, t = trimmer_](void*) {
    if (v->in_flight.fetch_sub(1) == 1) t->LeaseEnded();
  });
  return lease;
}

// The host tier may overrun its budget while the adapters that would make room are in use; the
// last lease of a version to end brings it back within budget (on a pool thread, not the engine
// thread that releases leases).
void AdapterStore::Trimmer::LeaseEnded() {
  if (!over.load()) return;
  std::lock_guard<std::mutex> lock(mu);
  if (store != nullptr) boost::asio::post(store->pool_->pool, [s = store] { s->TrimToBudget(); });
}

void AdapterStore::TrimToBudget() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!trimmer_->over.load()) return;
    if (!MakeRoomLocked(0, Tier::kHost, nullptr, InFlight)) return;  // still in use
    trimmer_->over.store(false);
  }
  TrimHeap();
}

void AdapterStore::MakeHostRoomLocked(int64_t bytes, const Version* keep) {
  if (!MakeRoomLocked(bytes, Tier::kHost, keep, InFlight)) trimmer_->over.store(true);
}

// Frees room for `bytes` on `tier` by demoting (device) or dropping (host) least recently used
// current versions for which `busy` is false. Returns whether they fit now. Caller holds mu_.
bool AdapterStore::MakeRoomLocked(int64_t bytes, Tier tier, const Version* keep,
                                  const std::function<bool(const Version&)>& busy) {
  const int64_t budget =
      tier == Tier::kDevice ? options_.device_budget_bytes : options_.host_budget_bytes;
  auto used = [&] { return tier == Tier::kDevice ? device_bytes_ : host_bytes_ + device_bytes_; };
  while (used() + bytes > budget) {
    Version* victim = nullptr;
    for (auto& [name, e] : entries_) {
      Version* v = e->current.get();
      if (v == keep || (tier == Tier::kDevice ? v->tier != Tier::kDevice : v->tier == Tier::kDisk))
        continue;
      if (busy(*v)) continue;
      if (victim == nullptr || v->last_used < victim->last_used) victim = v;
    }
    if (victim == nullptr) return false;  // everything left is in use
    ++evictions_;
    LeaveDeviceLocked(*victim);
    if (tier == Tier::kDevice) {
      victim->tier = Tier::kHost;
      device_bytes_ -= victim->bytes;
      host_bytes_ += victim->bytes;
    } else {
      (victim->tier == Tier::kDevice ? device_bytes_ : host_bytes_) -= victim->bytes;
      victim->tier = Tier::kDisk;
      by_adapter_id_.erase(AdapterIdOf(victim->ref));
      victim->ref = AdapterRef();  // the weights go; the files stay registered
    }
  }
  return true;
}

bool AdapterStore::InFlight(const Version& v) { return v.in_flight.load() > 0; }

void AdapterStore::IndexLocked(const std::shared_ptr<Version>& v) {
  by_adapter_id_[AdapterIdOf(v->ref)] = v;
  if (by_adapter_id_.size() > 2 * entries_.size() + 64)  // drop versions that are gone
    for (auto it = by_adapter_id_.begin(); it != by_adapter_id_.end();)
      it = it->second.expired() ? by_adapter_id_.erase(it) : std::next(it);
}

void AdapterStore::LeaveDeviceLocked(const Version& v) {
  if (device_tier_ != nullptr && v.tier == Tier::kDevice) device_tier_->Demote(v.ref.uid());
}

void AdapterStore::RetireLocked(Version& v) {
  LeaveDeviceLocked(v);  // requests still on it run from a copy the backend makes on first use
  if (v.tier != Tier::kDisk) (v.tier == Tier::kDevice ? device_bytes_ : host_bytes_) -= v.bytes;
  v.retired = true;
}

absl::Status AdapterStore::Publish(const LoadSpec& spec, const std::string& dir,
                                   std::shared_ptr<Version> v) {
  std::shared_ptr<Version> old;  // released after the lock
  {
    std::lock_guard<std::mutex> lock(mu_);
    RETURN_IF_ERROR(CheckOwnerLocked(spec));  // another tenant may have claimed the name meanwhile
    kept_.erase(spec.name);
    auto& slot = entries_[spec.name];
    if (!slot) slot = std::make_unique<Entry>();
    Entry& e = *slot;
    v->number = e.next_version++;
    if (e.current) {
      RetireLocked(*e.current);
      e.retired.push_back(e.current);
    }
    e.last_error.clear();
    MakeHostRoomLocked(v->bytes, nullptr);  // in-flight adapters may overrun it until they end
    v->tier = Tier::kHost;
    host_bytes_ += v->bytes;
    old = std::move(e.current);
    e.spec = spec;
    e.dir = dir;
    e.current = std::move(v);
    TouchLocked(e);
    IndexLocked(e.current);
    ++manifest_generation_;
  }
  SaveManifest();
  return absl::OkStatus();
}

void AdapterStore::Load(LoadSpec spec, std::function<void(absl::StatusOr<AdapterInfo>)> done) {
  boost::asio::post(pool_->pool, [this, spec = std::move(spec), done = std::move(done)] {
    auto fail = [&](const absl::Status& s) {
      load_failures_.fetch_add(1);
      done(s);
    };
    if (spec.name.empty() || spec.name.size() > 128)
      return fail(absl::InvalidArgumentError("adapter name must be 1..128 bytes"));
    if (spec.tenant.empty()) return fail(absl::InvalidArgumentError("adapter tenant is empty"));
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (absl::Status s = CheckOwnerLocked(spec); !s.ok()) return fail(s);
    }
    absl::StatusOr<std::string> dir = ConfinedPath(spec.path);
    if (!dir.ok()) return fail(dir.status());
    absl::StatusOr<std::shared_ptr<Version>> v = LoadVersion(spec, *dir);
    if (!v.ok()) return fail(v.status());
    if (absl::Status s = Publish(spec, *dir, *std::move(v)); !s.ok()) return fail(s);
    loads_.fetch_add(1);
    done(Get(spec.name));
  });
}

absl::Status AdapterStore::CheckOwnerLocked(const LoadSpec& spec) const {
  const std::string* owner = nullptr;
  if (auto it = entries_.find(spec.name); it != entries_.end()) owner = &it->second->spec.tenant;
  if (auto it = kept_.find(spec.name); it != kept_.end()) owner = &it->second.spec.tenant;
  if (owner != nullptr && *owner != spec.tenant)
    return absl::PermissionDeniedError(
        absl::StrCat("adapter name '", spec.name, "' belongs to tenant '", *owner, "'"));
  return absl::OkStatus();
}

absl::StatusOr<AdapterInfo> AdapterStore::LoadAndWait(LoadSpec spec) {
  std::promise<absl::StatusOr<AdapterInfo>> p;
  auto f = p.get_future();
  Load(std::move(spec), [&p](absl::StatusOr<AdapterInfo> r) { p.set_value(std::move(r)); });
  return f.get();
}

absl::Status AdapterStore::Unload(const std::string& name) {
  std::unique_ptr<Entry> gone;  // destroyed after the lock (versions in flight live on in leases)
  {
    std::unique_lock<std::mutex> lock(mu_);
    auto it = entries_.find(name);
    if (it == entries_.end()) {
      if (kept_.erase(name) == 0) return UnknownAdapter(name);
      ++manifest_generation_;  // a manifest entry that did not load at start: forget it
      lock.unlock();
      SaveManifest();
      return absl::OkStatus();
    }
    RetireLocked(*it->second->current);
    gone = std::move(it->second);
    entries_.erase(it);
    ++manifest_generation_;
  }
  SaveManifest();
  const absl::Status unloaded =
      absl::NotFoundError(absl::StrCat("adapter ", Quoted(name), " was unloaded"));
  for (auto& w : gone->waiters) w(unloaded);
  gone.reset();
  TrimHeap();
  return absl::OkStatus();
}

AdapterInfo AdapterStore::KeptInfo(const Kept& k) {
  AdapterInfo i;
  i.name = k.spec.name;
  i.tenant = k.spec.tenant;
  i.path = k.spec.path;
  i.sha256 = k.spec.sha256;
  i.type = k.spec.type;
  i.state = State::kFailed;
  i.last_error = k.error;
  return i;
}

AdapterInfo AdapterStore::InfoLocked(Entry& e) const {
  AdapterInfo i;
  i.name = e.spec.name;
  i.tenant = e.spec.tenant;
  i.path = e.spec.path;
  i.sha256 = e.spec.sha256;
  const Version& v = *e.current;
  i.type = v.type;
  i.rank = v.rank;
  i.bytes = v.bytes;
  i.version = v.number;
  i.tier = v.tier;
  i.in_flight = v.in_flight.load();
  i.state = e.reloading             ? State::kReloading
            : !e.last_error.empty() ? State::kFailed
            : v.tier == Tier::kDisk ? State::kOnDisk
                                    : State::kReady;
  i.last_error = e.last_error;
  std::erase_if(e.retired, [](const std::weak_ptr<Version>& w) { return w.expired(); });
  for (const auto& w : e.retired)
    if (auto r = w.lock()) i.retired_in_flight += r->in_flight.load();
  i.load_time_us = v.load_time_us;
  i.loaded_at = v.loaded_at;
  return i;
}

std::vector<AdapterInfo> AdapterStore::List(const std::string& tenant) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<AdapterInfo> out;
  for (const auto& [name, e] : entries_)
    if (tenant.empty() || e->spec.tenant == tenant) out.push_back(InfoLocked(*e));
  for (const auto& [name, k] : kept_)
    if (tenant.empty() || k.spec.tenant == tenant) out.push_back(KeptInfo(k));
  std::sort(out.begin(), out.end(),
            [](const AdapterInfo& a, const AdapterInfo& b) { return a.name < b.name; });
  return out;
}

absl::StatusOr<AdapterInfo> AdapterStore::Get(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) return InfoLocked(*it->second);
  if (auto k = kept_.find(name); k != kept_.end()) return KeptInfo(k->second);
  return UnknownAdapter(name);
}

int64_t AdapterStore::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return static_cast<int64_t>(entries_.size());
}

AdapterStore::Counts AdapterStore::GetCounts() const {
  Counts c;
  c.loads = loads_.load();
  c.lazy_loads = lazy_loads_.load();
  c.load_failures = load_failures_.load();
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [name, e] : entries_) {
    const int t = static_cast<int>(e->current->tier);
    ++c.adapters[t];
    c.bytes[t] += e->current->bytes;
  }
  c.failed_entries = static_cast<int64_t>(kept_.size());
  c.evictions = evictions_;
  return c;
}

int64_t AdapterStore::bytes_in_memory() const {
  std::lock_guard<std::mutex> lock(mu_);
  return host_bytes_ + device_bytes_;
}

void AdapterStore::Acquire(const std::string& tenant, const std::string& name,
                           std::function<void(absl::StatusOr<Lease>)> done) {
  std::unique_lock<std::mutex> lock(mu_);
  auto it = entries_.find(name);
  if (it == entries_.end()) {
    absl::Status s = UnknownAdapter(name);
    const bool kept = kept_.count(name) > 0;
    if (auto k = kept_.find(name); k != kept_.end() && k->second.spec.tenant == tenant)
      s = absl::NotFoundError(
          absl::StrCat("adapter ", Quoted(name), " did not load at start: ", k->second.error));
    lock.unlock();
    if (!kept && AcquireLazily(tenant, name, done)) return;
    return done(s);
  }
  Entry& e = *it->second;
  if (e.spec.tenant != tenant) {  // answered as for a name that does not exist: names stay private
    lock.unlock();
    return done(UnknownAdapter(name));
  }
  if (e.current->tier != Tier::kDisk) {
    Lease lease = LeaseLocked(e);
    lock.unlock();
    return done(std::move(lease));
  }
  // On disk: bring the weights back on a pool thread, then acquire again (once: a failed reload
  // is reported to the waiters, and the next request tries again).
  e.waiters.push_back([this, tenant, name, done](const absl::Status& s) {
    if (s.ok()) return Acquire(tenant, name, done);
    done(s);
  });
  if (e.reloading) return;
  e.reloading = true;
  const LoadSpec spec = e.spec;
  const std::shared_ptr<Version> version = e.current;
  lock.unlock();
  boost::asio::post(pool_->pool, [this, spec, version] { Reload(spec, version); });
}

// Pool thread: reads a disk-tier version's weights again, then wakes its waiters.
void AdapterStore::Reload(const LoadSpec& spec, const std::shared_ptr<Version>& version) {
  const absl::StatusOr<std::string> dir = ConfinedPath(spec.path);
  absl::StatusOr<std::shared_ptr<Version>> fresh =
      dir.ok() ? LoadVersion(spec, *dir) : dir.status();
  absl::Status status = fresh.status();
  std::vector<std::function<void(const absl::Status&)>> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(spec.name);
    if (it == entries_.end()) return;  // unloaded meanwhile: Unload told the waiters
    Entry& e = *it->second;
    e.reloading = false;
    waiters.swap(e.waiters);
    if (fresh.ok() && ((*fresh)->bytes != version->bytes || (*fresh)->sha256 != version->sha256))
      status =
          absl::FailedPreconditionError("its files changed since it was loaded; load it again");
    e.last_error = status.ok() ? "" : std::string(status.message());
    if (status.ok() && e.current == version && version->tier == Tier::kDisk) {
      MakeHostRoomLocked(version->bytes, version.get());
      version->ref = (*fresh)->ref;
      version->tier = Tier::kHost;
      host_bytes_ += version->bytes;
      IndexLocked(version);
    }
  }
  (status.ok() ? loads_ : load_failures_).fetch_add(1);
  if (!status.ok())
    status = absl::Status(status.code(),
                          absl::StrCat("adapter '", spec.name,
                                       "' could not be reloaded from disk: ", status.message()));
  for (auto& w : waiters) w(status);
}

bool AdapterStore::IsResident(AdapterKind, uint64_t adapter_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_adapter_id_.find(adapter_id);
  if (it == by_adapter_id_.end()) return true;  // not a store adapter (tests, CLI)
  std::shared_ptr<Version> v = it->second.lock();
  if (!v || v->retired) return true;  // a replaced or unloaded version still serving its requests
  return v->tier == Tier::kDevice;
}

void AdapterStore::RequestResidency(AdapterKind, uint64_t adapter_id,
                                    const std::function<bool(uint64_t)>& is_running) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = by_adapter_id_.find(adapter_id);
  if (it == by_adapter_id_.end()) return;
  std::shared_ptr<Version> v = it->second.lock();
  if (!v || v->retired || v->tier != Tier::kHost) return;
  // Adapters of the running batch stay; any other may go back to host (its queued requests keep
  // their leases, and ask again when their turn comes).
  auto running = [&](const Version& d) { return is_running(AdapterIdOf(d.ref)); };
  if (!MakeRoomLocked(v->bytes, Tier::kDevice, v.get(), running)) return;
  v->tier = Tier::kDevice;
  host_bytes_ -= v->bytes;
  device_bytes_ += v->bytes;
  if (device_tier_ != nullptr) device_tier_->Promote(v->ref);
  v->last_used = ++clock_;
}

// Writes the registry to the manifest (tmp + rename) unless nothing changed since the last
// write; concurrent changes coalesce into one write.
void AdapterStore::SaveManifest() {
  if (options_.manifest_path.empty()) return;
  std::lock_guard<std::mutex> save_lock(manifest_mu_);
  nlohmann::ordered_json j;
  j["adapters"] = nlohmann::ordered_json::array();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (manifest_suspended_ || manifest_generation_ == manifest_saved_) return;
    manifest_saved_ = manifest_generation_;
    std::map<std::string, const LoadSpec*> all;  // name order, loaded or kept
    for (const auto& [name, e] : entries_) all[name] = &e->spec;
    for (const auto& [name, k] : kept_) all[name] = &k.spec;
    for (const auto& [name, spec] : all)
      j["adapters"].push_back({{"name", name},
                               {"tenant", spec->tenant},
                               {"path", spec->path},
                               {"type", AdapterTypeName(spec->type)},
                               {"sha256", spec->sha256}});
  }
  // A failed write (disk full, a file size limit) leaves the previous manifest whole: the new
  // one replaces it only once written. The failure is logged, and the next change tries again.
  const std::string tmp = options_.manifest_path + ".tmp";
  absl::Status written = WriteTextFile(tmp, j.dump(2) + "\n");
  if (written.ok() && std::rename(tmp.c_str(), options_.manifest_path.c_str()) != 0)
    written = absl::InternalError(absl::StrCat("cannot rename ", tmp, ": ", std::strerror(errno)));
  if (written.ok()) return;
  std::remove(tmp.c_str());
  {
    std::lock_guard<std::mutex> lock(mu_);
    manifest_saved_ = 0;  // not saved: the next change writes it again
  }
  std::fprintf(stderr,
               "para-server: cannot save the adapter manifest %s (%s); it keeps its previous "
               "content until the next change is saved\n",
               options_.manifest_path.c_str(), std::string(written.message()).c_str());
}

absl::Status AdapterStore::LoadManifest() {
  if (options_.manifest_path.empty() || !fs::exists(options_.manifest_path))
    return absl::OkStatus();
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(options_.manifest_path));
  ASSIGN_OR_RETURN(std::vector<LoadSpec> specs, ParseManifest(text, options_.manifest_path));
  // Loads in parallel on the pool; the manifest is written once, at the end.
  {
    std::lock_guard<std::mutex> lock(mu_);
    manifest_suspended_ = true;
  }
  std::vector<std::future<absl::StatusOr<AdapterInfo>>> results;
  for (const LoadSpec& spec : specs) {
    auto p = std::make_shared<std::promise<absl::StatusOr<AdapterInfo>>>();
    results.push_back(p->get_future());
    Load(spec, [p](absl::StatusOr<AdapterInfo> r) { p->set_value(std::move(r)); });
  }
  absl::Status first;
  int failed = 0;
  std::string errors;
  for (size_t i = 0; i < specs.size(); ++i) {
    absl::StatusOr<AdapterInfo> r = results[i].get();
    if (r.ok()) continue;
    if (first.ok()) first = r.status();
    ++failed;
    absl::StrAppend(&errors, "; '", specs[i].name, "': ", r.status().message());
    // Kept in the manifest (not served) so that fixing its files and restarting brings it back.
    std::lock_guard<std::mutex> lock(mu_);
    if (!entries_.count(specs[i].name))
      kept_.emplace(specs[i].name, Kept{specs[i], std::string(r.status().message())});
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    manifest_suspended_ = false;
    ++manifest_generation_;
  }
  SaveManifest();
  if (first.ok()) return first;
  return absl::Status(first.code(), absl::StrCat(failed, " of ", specs.size(),
                                                 " manifest adapters did not load", errors));
}

}  // namespace para::store
