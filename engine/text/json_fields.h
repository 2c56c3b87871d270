// Typed access to the fields of a tokenizer.json document, with errors that name the JSON path of
// the offending value ("pre_tokenizer.pretokenizers[1].pattern: ..."). The loader prefixes the
// file name. Stateless helpers; safe from any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace para::text {

using Json = nlohmann::json;

// "path.key", or "key" at the root.
std::string JsonChild(absl::string_view path, absl::string_view key);
// "path[index]".
std::string JsonIndex(absl::string_view path, size_t index);
// INVALID_ARGUMENT "path: message".
absl::Status JsonError(absl::string_view path, absl::string_view message);
// The JSON type of `j` in words ("string", "object", ...), for messages.
std::string JsonTypeName(const Json& j);

// `obj` (at `path`) must be an object; its "type" must be a string.
absl::StatusOr<std::string> GetType(const Json& obj, absl::string_view path);
// The field, or nullptr when it is absent or null.
const Json* FindField(const Json& obj, absl::string_view key);
// A required string field.
absl::StatusOr<std::string> GetString(const Json& obj, absl::string_view key,
                                      absl::string_view path);
// A string field; nullopt when absent or null.
absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, absl::string_view key,
                                                             absl::string_view path);
// A boolean field; `fallback` when absent or null, an error then if there is none.
absl::StatusOr<bool> GetBool(const Json& obj, absl::string_view key, absl::string_view path,
                             std::optional<bool> fallback);
// A non-negative integer field that fits int32; `fallback` when absent or null.
absl::StatusOr<int64_t> GetIndex(const Json& obj, absl::string_view key, absl::string_view path,
                                 std::optional<int64_t> fallback);
// A required array field.
absl::StatusOr<const Json*> GetArray(const Json& obj, absl::string_view key,
                                     absl::string_view path);
// A string field that must hold exactly one character; returns it as UTF-8.
absl::StatusOr<std::string> GetChar(const Json& obj, absl::string_view key, absl::string_view path,
                                    std::optional<std::string> fallback);

}  // namespace para::text
