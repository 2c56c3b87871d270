// libFuzzer target: the tenants file (TenantRegistry::Parse) on arbitrary text. It must return a
// registry or an error naming the problem, never crash; every key it lists must authenticate.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/tenants.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto registry = para::server::TenantRegistry::Parse(text);
  if (!registry.ok()) {
    if (registry.status().message().empty()) std::abort();
    return 0;
  }
  for (const auto& [unused, tenant] : (*registry)->tenants())
    for (const std::string& key : tenant.api_keys) {
      auto who = (*registry)->Authenticate(key);
      if (!who.ok()) std::abort();
    }
  (void)(*registry)->Authenticate("");
  (void)para::server::BearerToken(text);
  return 0;
}
