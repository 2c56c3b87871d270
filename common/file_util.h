// Small file helpers shared by the loaders and tools, with absl::Status errors that name the
// path. Stateless; safe from any thread.
#pragma once

#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace para {

// The whole file. NOT_FOUND when it cannot be opened.
absl::StatusOr<std::string> ReadTextFile(const std::string& path);
// Replaces the file's contents. PERMISSION_DENIED / DATA_LOSS on failure.
absl::Status WriteTextFile(const std::string& path, const std::string& text);
// mkdir -p.
absl::Status MakeDirectories(const std::string& dir);

}  // namespace para
