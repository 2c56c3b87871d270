// The adapter manifest's format: what one entry names (LoadSpec), the adapter type names, and
// ParseManifest, which reads a manifest's text into entries without touching any file. The
// AdapterStore writes and reads manifests with these; the fuzzer drives ParseManifest alone.
// Pure functions and plain values; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace para::store {

enum class AdapterType { kAuto, kPara, kLora };
const char* AdapterTypeName(AdapterType t);
// Parses "auto" (or "") / "para" / "lora".
absl::StatusOr<AdapterType> ParseAdapterType(const std::string& text);

struct LoadSpec {
  std::string name;
  std::string tenant;
  std::string path;  // relative to the adapter root, or absolute inside it
  AdapterType type = AdapterType::kAuto;
  std::string sha256;  // optional: hex digest adapter_model.safetensors must have
};

// {"adapters": [{"name", "tenant", "path", "type"?, "sha256"?}, ...]}: INVALID_ARGUMENT starting
// with `path` for anything else (not JSON, wrong shape, a missing or mistyped field, an unknown
// type).
absl::StatusOr<std::vector<LoadSpec>> ParseManifest(const std::string& text,
                                                    const std::string& path);

}  // namespace para::store
