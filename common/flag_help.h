// --help for the abseil-flags programs (para-server, para-bench): every flag defined in the
// program's own source file, spelled with dashes, with its help text and default. (abseil's own
// --help lists only flags of a file named after the binary, which none of ours is.)
// Header-only; call from main before parsing. Not thread-safe (reads the flag registry).
#pragma once

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/reflection.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"

namespace para {

// The help text: `usage`, then "  --flag-name\n      help (default: value)" for every flag
// defined in a file whose path ends with `file_suffix`, sorted by name.
inline std::string FlagHelpFor(const std::string& usage, const std::string& file_suffix) {
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags())
    if (absl::EndsWith(flag->Filename(), file_suffix)) flags.push_back(flag);
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  std::string out =
      absl::StrCat("usage: ", usage,
                   "\nflags (--foo-bar and --foo_bar are the same flag; --name=value or "
                   "--name value):\n");
  for (const absl::CommandLineFlag* f : flags) {
    const std::string def = f->DefaultValue();
    absl::StrAppend(&out, "  --", absl::StrReplaceAll(f->Name(), {{"_", "-"}}), "\n      ",
                    f->Help(), " (default: ", def.empty() ? "\"\"" : def, ")\n");
  }
  return out;
}

// True (after printing the help to stdout) when argv asks for --help or -h.
inline bool MaybePrintFlagHelp(int argc, char** argv, const std::string& usage,
                               const std::string& file_suffix) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(FlagHelpFor(usage, file_suffix).c_str(), stdout);
      return true;
    }
  }
  return false;
}

}  // namespace para
