// The error type of the Jinja engine's internals (internal to para_chat_template).
//
// The lexer, parser and renderer throw jinja::Error; ChatTemplate::Compile and Render catch it
// (and anything else) and return absl::InvalidArgumentError, so no exception leaves the library.
// `kind` says what failed: a syntax error, a runtime error, a sandbox limit, a construct this
// engine refuses, or the template's own raise_exception(), whose message is kept verbatim.
#pragma once

#include <exception>
#include <string>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"

namespace para::text::jinja {

// This abseil's string_view is its own type: StrCat and friends need the conversion.
inline absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

enum class ErrorKind { kSyntax, kRuntime, kLimit, kUnsupported, kRaised };

class Error : public std::exception {
 public:
  Error(ErrorKind kind, std::string message, int line = 0)
      : kind_(kind), message_(std::move(message)), line_(line) {}
  const char* what() const noexcept override { return message_.c_str(); }
  ErrorKind kind() const { return kind_; }
  const std::string& message() const { return message_; }
  int line() const { return line_; }
  void set_line(int line) { line_ = line; }

 private:
  ErrorKind kind_;
  std::string message_;
  int line_;
};

[[noreturn]] inline void ThrowRuntime(std::string message) {
  throw Error(ErrorKind::kRuntime, std::move(message));
}
[[noreturn]] inline void ThrowLimit(std::string message) {
  throw Error(ErrorKind::kLimit, std::move(message));
}
[[noreturn]] inline void ThrowUnsupported(std::string message) {
  throw Error(ErrorKind::kUnsupported, std::move(message));
}

}  // namespace para::text::jinja
