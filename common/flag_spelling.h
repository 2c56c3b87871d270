// Lets abseil-flags programs take --foo-bar as well as --foo_bar (the spelling para-cli and
// para-tool use). Header-only; pure.
#pragma once

#include <algorithm>
#include <string>
#include <vector>

namespace para {

// argv with every "--name" (before any '=') spelled with underscores. `storage` owns the strings
// the returned pointers point into and must outlive them.
inline std::vector<char*> UnderscoreFlags(int argc, char** argv,
                                          std::vector<std::string>* storage) {
  storage->clear();
  storage->reserve(argc);
  for (int i = 0; i < argc; ++i) {
    std::string a = argv[i];
    if (i > 0 && a.rfind("--", 0) == 0) {
      const size_t end = std::min(a.find('='), a.size());
      std::replace(a.begin() + 2, a.begin() + static_cast<std::ptrdiff_t>(end), '-', '_');
    }
    storage->push_back(std::move(a));
  }
  std::vector<char*> out;
  for (std::string& s : *storage) out.push_back(s.data());
  return out;
}

}  // namespace para
