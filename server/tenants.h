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
// Relative adapter paths are resolved against the file's directory. Adapter names are global: a
// name belongs to one tenant. Keys are compared in constant time and never logged.
// TenantRegistry is immutable after Load; safe to read from any thread.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "scheduler/scheduler.h"

namespace para::server {

struct AdapterEntry {
  std::string name;
  std::string tenant;
  std::string dir;
  AdapterRef ref;  // loaded and validated against the served model
};

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
  // Parses the configuration and loads every adapter through `engine` (errors name the tenant,
  // adapter and file).
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Load(const std::string& path,
                                                              const Engine& engine);
  // Same from JSON text; relative adapter paths resolve against `base_dir`.
  static absl::StatusOr<std::unique_ptr<TenantRegistry>> Parse(const std::string& json_text,
                                                               const std::string& base_dir,
                                                               const Engine& engine);

  // UNAUTHENTICATED when the key is missing or unknown.
  absl::StatusOr<Principal> Authenticate(const std::string& api_key) const;
  // The adapter `name` for `tenant`: NOT_FOUND when no adapter has that name, PERMISSION_DENIED
  // when it belongs to another tenant.
  absl::StatusOr<const AdapterEntry*> AdapterFor(const std::string& tenant,
                                                 const std::string& name) const;
  std::vector<const AdapterEntry*> AdaptersOf(const std::string& tenant) const;
  // Scheduler settings for every tenant (weights and limits).
  std::map<std::string, sched::TenantConfig> SchedulerTenants() const;
  const std::map<std::string, TenantEntry>& tenants() const { return tenants_; }

 private:
  std::map<std::string, TenantEntry> tenants_;
  std::map<std::string, AdapterEntry> adapters_;
  std::vector<std::pair<std::string, std::string>> keys_;  // key -> tenant ("" = admin)
};

// Extracts the key from an "authorization: Bearer <key>" header value; empty when malformed.
std::string BearerToken(const std::string& header);

}  // namespace para::server
