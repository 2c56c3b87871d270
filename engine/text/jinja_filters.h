// jinja2's built-in filters and transformers' `tojson` (internal to para_chat_template).
//
// FindFilter resolves a name to its implementation, or nullptr. Filters that jinja2 has but this
// engine does not implement (wordwrap, urlize, random, ...) are named by IsUnsupportedFilter so
// that compiling a template that uses one fails with "not supported" rather than "unknown".
// Filters are stateless functions of the renderer (for limits and nested calls), the input and
// the call's arguments; they throw jinja::Error.
#pragma once

#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "engine/text/jinja_ast.h"

namespace para::text::jinja {

FilterFn FindFilter(std::string_view name);
bool IsUnsupportedFilter(std::string_view name);

namespace filters_internal {
using FilterTable = absl::flat_hash_map<std::string_view, FilterFn>;
void AddTextFilters(FilterTable& table);      // jinja_filters_text.cc
void AddSequenceFilters(FilterTable& table);  // jinja_filters_seq.cc
}  // namespace filters_internal

}  // namespace para::text::jinja
