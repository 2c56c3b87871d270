#include "server/tenants.h"

#include <map>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "nlohmann/json.hpp"

namespace para::server {
namespace {

using json = nlohmann::json;

// Compares without an early exit, so timing reveals nothing about where a guess differs.
bool ConstantTimeEquals(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

absl::Status Bad(const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("tenants config: ", what));
}

absl::StatusOr<std::vector<std::string>> Keys(const json& j, const std::string& where) {
  std::vector<std::string> keys;
  if (!j.is_array()) return Bad(absl::StrCat(where, " must be a list of strings"));
  for (const auto& k : j) {
    if (!k.is_string() || k.get<std::string>().size() < 8)
      return Bad(absl::StrCat(where, " holds a key that is not a string of at least 8 characters"));
    keys.push_back(k.get<std::string>());
  }
  return keys;
}

// Each key names one principal: a key shared by two tenants (or by a tenant and the admin)
// would let one act as the other, whichever the lookup finds first. The message names the owners
// and the key's place in their lists, never the key.
absl::Status CheckKeysDistinct(const std::vector<std::pair<std::string, std::string>>& keys) {
  std::map<std::string, std::string> owner;  // key -> "admin_api_keys" / "tenant 'x'"
  std::map<std::string, int> count;          // per owner, for the key's index
  for (const auto& [key, tenant] : keys) {
    const std::string who =
        tenant.empty() ? "admin_api_keys" : absl::StrCat("tenant '", tenant, "' api_keys");
    const int index = count[who]++;
    auto [it, fresh] = owner.emplace(key, who);
    if (fresh || it->second == who) continue;
    return Bad(absl::StrCat(who, "[", index, "] is also a key of ", it->second,
                            ": every API key must belong to one tenant (or to the admin) only"));
  }
  return absl::OkStatus();
}

// An optional count field of a tenant: absent = 0; else an integer in [0, 2^31).
absl::StatusOr<int32_t> Count(const json& t, const char* field, const std::string& tenant) {
  if (!t.contains(field)) return 0;
  const json& v = t[field];
  if (!v.is_number_integer() || v.get<int64_t>() < 0 ||
      (v.is_number_unsigned() && v.get<uint64_t>() > uint64_t{INT32_MAX}) ||
      v.get<int64_t>() > INT32_MAX)
    return Bad(absl::StrCat("tenant '", tenant, "' ", field, " must be an integer in [0, ",
                            INT32_MAX, "]"));
  return v.get<int32_t>();
}

}  // namespace

std::string BearerToken(const std::string& header) {
  constexpr std::string_view kPrefix = "Bearer ";
  if (header.size() <= kPrefix.size() || header.compare(0, kPrefix.size(), kPrefix) != 0) return "";
  return header.substr(kPrefix.size());
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Load(const std::string& path) {
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  return Parse(text);
}

absl::StatusOr<std::unique_ptr<TenantRegistry>> TenantRegistry::Parse(const std::string& text) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Bad("not a valid JSON object");
  auto reg = std::make_unique<TenantRegistry>();
  std::map<std::string, std::string> owner;  // adapter name -> tenant
  try {
    if (j.contains("admin_api_keys")) {
      ASSIGN_OR_RETURN(auto keys, Keys(j["admin_api_keys"], "admin_api_keys"));
      for (auto& k : keys) reg->keys_.push_back({k, ""});
    }
    if (!j.contains("tenants") || !j["tenants"].is_object()) return Bad("needs a 'tenants' object");
    for (const auto& [name, t] : j["tenants"].items()) {
      if (name.empty()) return Bad("a tenant has an empty name");
      if (!t.is_object()) return Bad(absl::StrCat("tenant '", name, "' is not an object"));
      TenantEntry e;
      e.name = name;
      ASSIGN_OR_RETURN(e.api_keys, Keys(t.value("api_keys", json::array()),
                                        absl::StrCat("tenant '", name, "' api_keys")));
      e.limits.weight = t.value("weight", 1.0);
      ASSIGN_OR_RETURN(e.limits.max_inflight, Count(t, "max_inflight", name));
      ASSIGN_OR_RETURN(e.limits.max_waiting, Count(t, "max_waiting", name));
      if (e.limits.weight <= 0)
        return Bad(absl::StrCat("tenant '", name, "' weight must be positive"));
      for (const auto& k : e.api_keys) reg->keys_.push_back({k, name});
      if (t.contains("adapters")) {
        if (!t["adapters"].is_object())
          return Bad(absl::StrCat("tenant '", name, "' adapters must map names to directories"));
        for (const auto& [aname, dir] : t["adapters"].items()) {
          if (!dir.is_string())
            return Bad(
                absl::StrCat("adapter '", aname, "' of tenant '", name, "' needs a directory"));
          if (owner.count(aname))
            return Bad(absl::StrCat("adapter name '", aname, "' is used by tenants '", owner[aname],
                                    "' and '", name, "'"));
          owner[aname] = name;
          store::LoadSpec spec;
          spec.name = aname;
          spec.tenant = name;
          spec.path = dir.get<std::string>();
          reg->adapters_.push_back(spec);
        }
      }
      reg->tenants_[name] = std::move(e);
    }
    RETURN_IF_ERROR(CheckKeysDistinct(reg->keys_));
  } catch (const json::exception& e) {
    return Bad(e.what());
  }
  return reg;
}

absl::StatusOr<Principal> TenantRegistry::Authenticate(const std::string& key) const {
  if (key.empty())
    return absl::UnauthenticatedError(
        "missing API key: send 'authorization: Bearer <key>' metadata");
  for (const auto& [k, tenant] : keys_) {
    if (ConstantTimeEquals(key, k)) return Principal{tenant, tenant.empty()};
  }
  return absl::UnauthenticatedError("unknown API key");
}

std::map<std::string, sched::TenantConfig> TenantRegistry::SchedulerTenants() const {
  std::map<std::string, sched::TenantConfig> out;
  for (const auto& [name, t] : tenants_) out[name] = t.limits;
  return out;
}

}  // namespace para::server
