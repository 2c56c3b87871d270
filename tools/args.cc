#include "tools/args.h"

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace para::tools {

absl::StatusOr<Args> Args::Parse(int argc, char** argv, int first,
                                 const std::set<std::string>& value_flags,
                                 const std::set<std::string>& switches) {
  Args a;
  for (int i = first; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg.rfind("--", 0) != 0 || arg == "--") {
      a.positional_.push_back(arg);
      continue;
    }
    std::string name = arg.substr(2);
    std::optional<std::string> value;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    }
    if (switches.count(name)) {
      if (value && *value != "true" && *value != "false")
        return absl::InvalidArgumentError(
            absl::StrCat("--", name, " takes no value (or =true/=false)"));
      if (!value || *value == "true") a.values_[name].push_back("true");
      continue;
    }
    if (!value_flags.count(name))
      return absl::InvalidArgumentError(absl::StrCat("unknown flag --", name));
    if (!value) {
      if (i + 1 >= argc)
        return absl::InvalidArgumentError(absl::StrCat("--", name, " needs a value"));
      value = argv[++i];
    }
    a.values_[name].push_back(*value);
  }
  return a;
}

std::optional<std::string> Args::Get(const std::string& name) const {
  auto it = values_.find(name);
  if (it == values_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Args::GetAll(const std::string& name) const {
  auto it = values_.find(name);
  return it == values_.end() ? std::vector<std::string>() : it->second;
}

std::string Args::GetOr(const std::string& name, const std::string& fallback) const {
  auto v = Get(name);
  return v ? *v : fallback;
}

absl::StatusOr<int64_t> Args::Int(const std::string& name, int64_t fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  int64_t out;
  if (!absl::SimpleAtoi(*v, &out))
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " expects an integer, got '", *v, "'"));
  return out;
}

absl::StatusOr<double> Args::Double(const std::string& name, double fallback) const {
  auto v = Get(name);
  if (!v) return fallback;
  double out;
  if (!absl::SimpleAtod(*v, &out))
    return absl::InvalidArgumentError(
        absl::StrCat("--", name, " expects a number, got '", *v, "'"));
  return out;
}

std::string FlagHelp(const std::vector<FlagSpec>& flags) {
  constexpr size_t kColumn = 30;
  std::string out;
  for (const FlagSpec& f : flags) {
    std::string left = absl::StrCat("  --", f.name);
    if (f.value != nullptr) absl::StrAppend(&left, " ", f.value);
    if (left.size() + 1 > kColumn) {
      absl::StrAppend(&out, left, "\n");
      left.clear();
    }
    left.resize(kColumn, ' ');
    absl::StrAppend(&out, left, f.help, " (default: ", f.default_value, ")\n");
  }
  return out;
}

std::set<std::string> ValueFlagNames(const std::vector<FlagSpec>& flags) {
  std::set<std::string> out;
  for (const FlagSpec& f : flags)
    if (f.value != nullptr) out.insert(f.name);
  return out;
}

std::set<std::string> SwitchNames(const std::vector<FlagSpec>& flags) {
  std::set<std::string> out;
  for (const FlagSpec& f : flags)
    if (f.value == nullptr) out.insert(f.name);
  return out;
}

bool WantsHelp(int argc, char** argv, int first) {
  for (int i = first; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") return true;
  }
  return false;
}

absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text, const std::string& what) {
  std::vector<int32_t> ids;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    int32_t id;
    if (!absl::SimpleAtoi(part, &id))
      return absl::InvalidArgumentError(absl::StrCat(what, ": '", part, "' is not an integer"));
    ids.push_back(id);
  }
  return ids;
}

}  // namespace para::tools
