// The Jinja parser (internal to para_chat_template): tokens to a syntax tree, following jinja2's
// grammar and precedence (including its quirks: left-associative `**`, unary minus binding
// tighter than `**`, filters binding tighter than unary minus).
//
// Parse throws jinja::Error: kSyntax for malformed templates (with the line), kUnsupported for
// constructs this engine refuses (include, import, extends, block, ...), kLimit when nesting
// exceeds `max_nesting_depth` (so no template can overflow the stack). Pure; thread-safe.
#pragma once

#include <vector>

#include "engine/text/jinja_ast.h"
#include "engine/text/jinja_lexer.h"

namespace para::text::jinja {

Body Parse(const std::vector<Token>& tokens, int max_nesting_depth);

}  // namespace para::text::jinja
