#include "engine/text/json_fields.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/text/unicode.h"

namespace para::text {

std::string JsonChild(absl::string_view path, absl::string_view key) {
  return path.empty() ? std::string(key) : absl::StrCat(path, ".", key);
}

std::string JsonIndex(absl::string_view path, size_t index) {
  return absl::StrCat(path, "[", index, "]");
}

absl::Status JsonError(absl::string_view path, absl::string_view message) {
  return absl::InvalidArgumentError(
      absl::StrCat(path.empty() ? absl::string_view("(root)") : path, ": ", message));
}

std::string JsonTypeName(const Json& j) { return j.type_name(); }

absl::StatusOr<std::string> GetType(const Json& obj, absl::string_view path) {
  if (!obj.is_object()) {
    return JsonError(path, absl::StrCat("expected an object, got ", JsonTypeName(obj)));
  }
  return GetString(obj, "type", path);
}

const Json* FindField(const Json& obj, absl::string_view key) {
  if (!obj.is_object()) return nullptr;
  auto it = obj.find(std::string(key));
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

absl::StatusOr<std::string> GetString(const Json& obj, absl::string_view key,
                                      absl::string_view path) {
  const Json* f = FindField(obj, key);
  if (f == nullptr) return JsonError(JsonChild(path, key), "missing (a string is required)");
  if (!f->is_string()) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected a string, got ", JsonTypeName(*f)));
  }
  return f->get<std::string>();
}

absl::StatusOr<std::optional<std::string>> GetOptionalString(const Json& obj, absl::string_view key,
                                                             absl::string_view path) {
  const Json* f = FindField(obj, key);
  if (f == nullptr) return std::optional<std::string>();
  if (!f->is_string()) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected a string, got ", JsonTypeName(*f)));
  }
  return std::optional<std::string>(f->get<std::string>());
}

absl::StatusOr<bool> GetBool(const Json& obj, absl::string_view key, absl::string_view path,
                             std::optional<bool> fallback) {
  const Json* f = FindField(obj, key);
  if (f == nullptr) {
    if (fallback) return *fallback;
    return JsonError(JsonChild(path, key), "missing (a boolean is required)");
  }
  if (!f->is_boolean()) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected a boolean, got ", JsonTypeName(*f)));
  }
  return f->get<bool>();
}

absl::StatusOr<int64_t> GetIndex(const Json& obj, absl::string_view key, absl::string_view path,
                                 std::optional<int64_t> fallback) {
  const Json* f = FindField(obj, key);
  if (f == nullptr) {
    if (fallback) return *fallback;
    return JsonError(JsonChild(path, key), "missing (an integer is required)");
  }
  if (!f->is_number_integer() ||
      (f->is_number_integer() && !f->is_number_unsigned() && f->get<int64_t>() < 0)) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected a non-negative integer, got ", f->dump()));
  }
  const uint64_t v = f->get<uint64_t>();
  if (v > 0x7FFFFFFF) {
    return JsonError(JsonChild(path, key), absl::StrCat("integer ", v, " is out of range"));
  }
  return static_cast<int64_t>(v);
}

absl::StatusOr<const Json*> GetArray(const Json& obj, absl::string_view key,
                                     absl::string_view path) {
  const Json* f = FindField(obj, key);
  if (f == nullptr) return JsonError(JsonChild(path, key), "missing (an array is required)");
  if (!f->is_array()) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected an array, got ", JsonTypeName(*f)));
  }
  return f;
}

absl::StatusOr<std::string> GetChar(const Json& obj, absl::string_view key, absl::string_view path,
                                    std::optional<std::string> fallback) {
  const Json* f = FindField(obj, key);
  if (f == nullptr && fallback) return *fallback;
  auto s = GetString(obj, key, path);
  if (!s.ok()) return s.status();
  if (!IsValidUtf8(*s) || CountChars(*s) != 1) {
    return JsonError(JsonChild(path, key),
                     absl::StrCat("expected exactly one character, got '", *s, "'"));
  }
  return *s;
}

}  // namespace para::text
