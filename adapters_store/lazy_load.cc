// Lazy adapter loading: AdapterStore::AcquireLazily and its completion (see adapter_store.h).
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "adapters_store/adapter_store.h"

namespace para::store {
namespace {

// A name that is one plain path component (no separators, not "." or "..").
bool IsPlainComponent(const std::string& s) {
  return !s.empty() && s != "." && s != ".." && s.find('/') == std::string::npos &&
         s.find('\\') == std::string::npos && s.find('\0') == std::string::npos;
}

}  // namespace

bool AdapterStore::AcquireLazily(const std::string& tenant, const std::string& name,
                                 const std::function<void(absl::StatusOr<Lease>)>& done) {
  if (options_.lazy_dir.empty() || !IsPlainComponent(tenant) || !IsPlainComponent(name))
    return false;
  const std::filesystem::path dir = std::filesystem::path(options_.lazy_dir) / tenant / name;
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) return false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto& waiters = lazy_waiters_[{tenant, name}];
    waiters.push_back([this, tenant, name, done](const absl::Status& s) {
      if (s.ok()) return Acquire(tenant, name, done);
      done(s);
    });
    if (waiters.size() > 1) return true;  // a load is on its way: wait for it
  }
  LoadSpec spec;
  spec.name = name;
  spec.tenant = tenant;
  spec.path = dir.string();
  Load(spec, [this, tenant, name](absl::StatusOr<AdapterInfo> info) {
    if (info.ok()) lazy_loads_.fetch_add(1);
    FinishLazyLoad(tenant, name, info.status());
  });
  return true;
}

void AdapterStore::FinishLazyLoad(const std::string& tenant, const std::string& name,
                                  const absl::Status& status) {
  std::vector<std::function<void(const absl::Status&)>> waiters;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lazy_waiters_.find({tenant, name});
    if (it == lazy_waiters_.end()) return;
    waiters.swap(it->second);
    lazy_waiters_.erase(it);
  }
  const absl::Status reported =
      status.ok() ? status
                  : absl::Status(status.code(),
                                 absl::StrCat("adapter '", name, "' of tenant '", tenant,
                                              "' did not load on first use: ", status.message()));
  for (auto& w : waiters) w(reported);
}

}  // namespace para::store
