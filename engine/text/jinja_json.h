// Python's json.dumps over template values (internal to para_chat_template): what transformers'
// `tojson` filter produces (ensure_ascii=False by default, optional indent, separators and
// sort_keys). Throws jinja::Error for values JSON cannot hold (Undefined, namespaces, ...), for
// unsortable keys, and when the text would pass `max_bytes`. Pure; thread-safe.
#pragma once

#include <optional>
#include <string>

#include "engine/text/jinja_value.h"

namespace para::text::jinja {

struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::string item_separator = ", ";
  std::string key_separator = ": ";
  bool sort_keys = false;
};

std::string ToJson(const Value& v, const JsonOptions& options, size_t max_bytes);

}  // namespace para::text::jinja
