// libFuzzer target: the adapter manifest parser (store::ParseManifest) on arbitrary text. It
// must return entries or an INVALID_ARGUMENT naming the file, never crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "adapters_store/manifest.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  auto specs = para::store::ParseManifest(text, "manifest.json");
  if (!specs.ok() && (specs.status().code() != absl::StatusCode::kInvalidArgument ||
                      specs.status().message().find("manifest.json") != 0))
    std::abort();
  return 0;
}
