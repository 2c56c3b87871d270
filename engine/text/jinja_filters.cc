#include "engine/text/jinja_filters.h"

#include <algorithm>

namespace para::text::jinja {
namespace {

const filters_internal::FilterTable& Table() {
  static const auto* table = [] {
    auto* t = new filters_internal::FilterTable();
    filters_internal::AddTextFilters(*t);
    filters_internal::AddSequenceFilters(*t);
    return t;
  }();
  return *table;
}

}  // namespace

FilterFn FindFilter(std::string_view name) {
  auto it = Table().find(name);
  return it == Table().end() ? nullptr : it->second;
}

bool IsUnsupportedFilter(std::string_view name) {
  static constexpr std::string_view kUnsupported[] = {"filesizeformat", "groupby",   "pprint",
                                                      "random",         "striptags", "urlencode",
                                                      "urlize",         "wordwrap",  "xmlattr"};
  return std::find(std::begin(kUnsupported), std::end(kUnsupported), name) !=
         std::end(kUnsupported);
}

}  // namespace para::text::jinja
