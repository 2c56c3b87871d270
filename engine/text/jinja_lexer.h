// The Jinja lexer (internal to para_chat_template): template source to tokens, with jinja2's
// whitespace rules as transformers configures them (trim_blocks, lstrip_blocks, no
// keep_trailing_newline), `-`/`+` modifiers, comments and raw blocks.
//
// Newlines (\r\n, \r) are normalised to \n and one trailing newline is dropped, as jinja2 does.
// Tokenize throws jinja::Error (kSyntax) with the line of the problem. Pure; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace para::text::jinja {

enum class TokenType {
  kData,        // literal template text
  kVarBegin,    // {{
  kVarEnd,      // }}
  kBlockBegin,  // {%
  kBlockEnd,    // %}
  kName,
  kString,  // value: the unescaped string
  kInt,
  kFloat,
  kOp,  // value: the operator, e.g. "==", "(", "|"
  kEof,
};

struct Token {
  TokenType type;
  std::string value;
  int line = 1;
  int64_t int_value = 0;
  double float_value = 0;
};

std::vector<Token> Tokenize(std::string_view source);

// How a token is named in error messages ("end of print statement", "'('", "name 'x'").
std::string DescribeToken(const Token& token);

}  // namespace para::text::jinja
