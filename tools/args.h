// A small command-line parser for the tools' GNU-style flags (--name value, --name=value,
// repeatable flags, boolean switches), with precise errors for unknown or malformed flags.
// Value type; not thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace para::tools {

class Args {
 public:
  // `value_flags` take a value; `switches` do not. Names are given without the leading "--".
  static absl::StatusOr<Args> Parse(int argc, char** argv, int first,
                                    const std::set<std::string>& value_flags,
                                    const std::set<std::string>& switches);

  bool Has(const std::string& name) const { return values_.count(name) > 0; }
  // The last value given for a flag.
  std::optional<std::string> Get(const std::string& name) const;
  std::vector<std::string> GetAll(const std::string& name) const;
  std::string GetOr(const std::string& name, const std::string& fallback) const;
  absl::StatusOr<int64_t> Int(const std::string& name, int64_t fallback) const;
  absl::StatusOr<double> Double(const std::string& name, double fallback) const;
  const std::vector<std::string>& positional() const { return positional_; }

 private:
  std::map<std::string, std::vector<std::string>> values_;
  std::vector<std::string> positional_;
};

// One flag of a tool, as its --help shows it and its parser accepts it: a table of these is the
// single source of both, so no flag is accepted without being listed with its default.
struct FlagSpec {
  const char* name;           // without the leading "--"
  const char* value;          // the value's placeholder ("N", "DIR"); nullptr for a switch
  const char* default_value;  // as shown after "default: "
  const char* help;
};

// "  --name VALUE   help (default: D)\n" for every flag, aligned.
std::string FlagHelp(const std::vector<FlagSpec>& flags);
// The names of the flags that take a value / of the switches.
std::set<std::string> ValueFlagNames(const std::vector<FlagSpec>& flags);
std::set<std::string> SwitchNames(const std::vector<FlagSpec>& flags);
// Whether argv[first..] asks for help (--help or -h).
bool WantsHelp(int argc, char** argv, int first);

// Parses "1,2,3" into integers.
absl::StatusOr<std::vector<int32_t>> ParseIdList(const std::string& text, const std::string& what);

}  // namespace para::tools
