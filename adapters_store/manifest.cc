#include "adapters_store/manifest.h"

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace para::store {

const char* AdapterTypeName(AdapterType t) {
  switch (t) {
    case AdapterType::kAuto:
      return "auto";
    case AdapterType::kPara:
      return "para";
    case AdapterType::kLora:
      return "lora";
  }
  return "";
}

absl::StatusOr<AdapterType> ParseAdapterType(const std::string& text) {
  if (text == "auto" || text.empty()) return AdapterType::kAuto;
  if (text == "para") return AdapterType::kPara;
  if (text == "lora") return AdapterType::kLora;
  return absl::InvalidArgumentError(
      absl::StrCat("adapter type '", text, "' is not auto, para or lora"));
}

absl::StatusOr<std::vector<LoadSpec>> ParseManifest(const std::string& text,
                                                    const std::string& path) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("adapters") || !j["adapters"].is_array())
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": not a manifest ({\"adapters\": [...]})"));
  std::vector<LoadSpec> specs;
  for (const auto& a : j["adapters"]) {
    LoadSpec spec;
    try {
      spec.name = a.at("name").get<std::string>();
      spec.tenant = a.at("tenant").get<std::string>();
      spec.path = a.at("path").get<std::string>();
      spec.sha256 = a.value("sha256", "");
      absl::StatusOr<AdapterType> type = ParseAdapterType(a.value("type", "auto"));
      if (!type.ok())
        return absl::InvalidArgumentError(
            absl::StrCat(path, ": adapter '", spec.name, "': ", type.status().message()));
      spec.type = *type;
    } catch (const nlohmann::json::exception& e) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": ", e.what()));
    }
    specs.push_back(std::move(spec));
  }
  return specs;
}

}  // namespace para::store
