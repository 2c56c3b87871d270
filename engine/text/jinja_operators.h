// Python's operators on template values (internal to para_chat_template): arithmetic, string
// and list concatenation and repetition, `~`, comparisons and `in`, with Python's results and
// error messages. Values built here are charged to the renderer's limits.
#pragma once

#include <string_view>

#include "engine/text/jinja_value.h"

namespace para::text::jinja {

class Renderer;

// op: + - * / // % ** ~
Value BinaryOp(Renderer& r, std::string_view op, const Value& a, const Value& b);
// op: == != < <= > >= in notin
bool CompareOp(std::string_view op, const Value& a, const Value& b);
bool Contains(const Value& container, const Value& item);
// Unary minus (negate) or plus.
Value UnaryOp(const Value& v, bool negate);

}  // namespace para::text::jinja
