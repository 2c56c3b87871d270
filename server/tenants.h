// Tenants, their API keys and adapters, read from the server's JSON configuration file:
//
//   {
//     "admin_api_keys": ["<key>", ...],
//     "tenants": {
//       "acme": {
//         "api_keys": ["<key>", ...],
//         "weight": 2, "max_inflight": 16, "max_waiting": 200,       (all optional)
//         "adapters": {"acme-support": "adapters/acme-support", ...}  (name -> directory)
//       }, ...
//     }
//   }
//
// The adapters listed here are loaded into the adapter store at start-up (paths relative to the
// store's adapter root). Adapter names are global: a name belongs to one tenant. Keys are compared
// in constant time and never logged. TenantRegistry is immutable after Load; safe to read from any
// thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "adapters_store/adapter_store.h"
#include "scheduler/scheduler.h"

namespace para::server {

struct TenantEntry {
  std::string name;
  std::vector<std::string> api_keys;
  sched::TenantConfig limits;
};

// Who a caller is.
struct Principal {
  std::string tenant;  // empty for an admin key
  bool admin = false;
};

class TenantRegistry {
 public:
  // Parses the configuration file (errors name the tenant and field).
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(const std::string& path);
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Parse(const std::string& json_text);

  // UNAUTHENTICATED when the key is missing or unknown.
  absl::StatusOr<Principal> Authenticate(const std::string& api_key) const;
  bool HasTenant(const std::string& name) const { return tenants_.count(name) > 0; }
  // The adapters the file lists, to load into the adapter store at start-up.
  const std::vector<store::LoadSpec>& adapters() const { return adapters_; }
  // Scheduler settings for every tenant (weights and limits).
  std::map<std::string, sched::TenantConfig> SchedulerTenants() const;
  const std::map<std::string, TenantEntry>& tenants() const { return tenants_; }

 private:
  std::map<std::string, TenantEntry> tenants_;
  std::vector<store::LoadSpec> adapters_;
  std::vector<std::pair<std::string, std::string>> keys_;  // key -> tenant ("" = admin)
};

// Extracts the key from an "authorization: Bearer <key>" header value; empty when malformed.
std::string BearerToken(const std::string& header);

}  // namespace para::server
