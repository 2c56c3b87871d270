// UTF-8 and Unicode character helpers for the tokenizer.json implementation (engine/text).
//
// Character properties follow what the Rust `tokenizers` library uses (Rust's char methods and
// its regex crate's classes), answered by ICU. Stateless free functions; safe from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/string_view.h"

namespace para::text {

// Debian's abseil has its own absl::string_view: hash-map lookups need one.
inline absl::string_view AbslView(std::string_view s) {
  return absl::string_view(s.data(), s.size());
}

inline constexpr std::string_view kReplacementChar = "\xEF\xBF\xBD";  // U+FFFD

// Length of the UTF-8 sequence a lead byte starts, 0 if it cannot start one.
int Utf8SequenceLength(unsigned char lead);
// Whether `b` may follow `lead` as its first continuation byte (no overlong forms, surrogates or
// code points above U+10FFFF).
bool Utf8ValidSecond(unsigned char lead, unsigned char b);

// Length in bytes of the UTF-8 character that starts with byte `lead` of valid UTF-8.
inline size_t Utf8CharLen(unsigned char lead) {
  return lead < 0x80 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4;
}

// Decodes the character at `pos` of valid UTF-8 `s`.
char32_t DecodeUtf8At(std::string_view s, size_t pos);
void AppendUtf8(char32_t c, std::string* out);
std::string EncodeUtf8(char32_t c);
// Decodes valid UTF-8 into code points.
std::vector<char32_t> DecodeUtf8(std::string_view s);
size_t CountChars(std::string_view s);

// Whether `s` is well-formed UTF-8.
bool IsValidUtf8(std::string_view s);
// Rust's String::from_utf8_lossy: every maximal ill-formed subsequence (a byte that cannot start a
// character, or a valid but incomplete prefix of one) becomes one U+FFFD.
std::string Utf8Lossy(std::string_view bytes);

// Rust's char::is_whitespace (the White_Space property).
bool IsWhitespace(char32_t c);
// Rust's char::is_numeric (general categories Nd, Nl, No).
bool IsNumeric(char32_t c);
// Rust's char::is_alphanumeric (Alphabetic or Numeric).
bool IsAlphanumeric(char32_t c);
// A \w character of Rust's regex crate (Alphabetic, Mark, Nd, Pc, Join_Control).
bool IsRegexWordChar(char32_t c);
// The `tokenizers` punctuation test: ASCII punctuation or a general category P*.
bool IsPunctuation(char32_t c);
// Rust's char::to_lowercase, appended as UTF-8 (unconditional full mapping, no context).
void AppendLowercase(char32_t c, std::string* out);

}  // namespace para::text
