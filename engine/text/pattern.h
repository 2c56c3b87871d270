// Pattern: what Split, Replace and the ByteLevel pre-tokenizer search for, with the match
// semantics of the Rust `tokenizers` library (its Oniguruma regexes and escaped string patterns).
//
// Regex patterns are written in Oniguruma's syntax and compiled with ICU's regex engine after a
// translation of the few constructs whose meaning differs (\s, \S, \w, \W; '.', '^' and '$' see
// only "\n" as a line end, as in Oniguruma). An immutable Pattern is safe to use from any thread:
// every search makes its own matcher.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_fields.h"
#include "engine/text/normalized_string.h"

namespace para::text {

class Pattern {
 public:
  // A regex in Oniguruma syntax. The error names the pattern and ICU's reason.
  static absl::StatusOr<Pattern> Regex(std::string_view pattern);
  // A regex already in ICU's syntax (the library's own fixed patterns).
  static absl::StatusOr<Pattern> IcuRegex(std::string_view icu_pattern);
  // A string matched literally (the empty string matches at every character boundary).
  static Pattern Literal(std::string_view literal);

  // The spans of `text` in order, matches and the text between them, covering all of it; one
  // non-match span (0, 0) for an empty text. Empty matches right after a match are skipped.
  std::vector<Span> FindMatches(std::string_view text) const;

  // The ICU pattern a regex was translated to (for tests and error messages).
  const std::string& icu_pattern() const { return icu_pattern_; }

 private:
  Pattern() = default;
  void FindRegex(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;
  void FindLiteral(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const;

  struct Compiled;                         // an icu::RegexPattern (pattern.cc)
  std::shared_ptr<const Compiled> regex_;  // null for a literal
  std::string literal_;
  std::string icu_pattern_;
};

// A pattern of Split, Replace (normalizer and decoder): {"String": "..."} or {"Regex": "..."}.
absl::StatusOr<Pattern> ParsePattern(const Json& j, const std::string& path);

// Oniguruma pattern syntax -> ICU pattern syntax (see the class comment). Exposed for tests.
std::string TranslateOnigurumaToIcu(std::string_view pattern);

}  // namespace para::text
