// The global functions and the methods a sandboxed chat template may call (internal to
// para_chat_template).
//
// Globals: range (at most 100000 items, as jinja2's sandbox), dict, namespace, joiner,
// raise_exception and strftime_now (transformers' additions); cycler and lipsum are refused.
// Methods: the non-mutating methods of str, dict and list; the mutating ones (list.append,
// dict.update, ...) are unsafe in jinja2's immutable sandbox and come back as an Undefined that
// fails with jinja2's SecurityError message when used.
#pragma once

#include <optional>
#include <string>

#include "engine/text/jinja_value.h"

namespace para::text::jinja {

// The global of that name, or nullopt.
std::optional<Value> FindGlobal(const std::string& name);
// `self.name` for a str, dict or list: a bound method, an unsafe-method Undefined, or nullopt.
std::optional<Value> FindMethod(const Value& self, const std::string& name);

}  // namespace para::text::jinja
