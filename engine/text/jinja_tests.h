// jinja2's built-in tests (`x is defined`, `n is divisibleby 3`, ...), internal to
// para_chat_template. FindTest resolves a name (including the operator aliases ==, <, ...) to
// its implementation, or nullptr. Tests are stateless; they throw jinja::Error.
#pragma once

#include <string_view>

#include "engine/text/jinja_ast.h"

namespace para::text::jinja {

TestFn FindTest(std::string_view name);

}  // namespace para::text::jinja
