// UTF-8 and Python `str` helpers for the Jinja engine (internal to para_chat_template).
//
// Strings are stored as UTF-8; Python indexes, slices and measures them by code point, and its
// whitespace, case and line-break rules are Unicode-aware. These free functions reproduce what
// chat templates need of that: decoding, code point counts, Python's `str.isspace` set, strip,
// splitlines, simple case mapping (ASCII, Latin-1, Latin Extended-A, Greek, Cyrillic; other
// scripts are left unchanged) and `str.isprintable` for repr. Invalid UTF-8 bytes decode as one
// code point each (their byte value), so nothing here fails. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace para::text::jinja {

// Decodes the code point at `pos` into *cp and returns its length in bytes (>= 1).
size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp);
void AppendUtf8(std::string& out, char32_t cp);
std::u32string ToU32(std::string_view s);
std::string FromU32(std::u32string_view s);
bool IsAscii(std::string_view s);
size_t CodePointCount(std::string_view s);

// Python's str.isspace() set (the set `\s` matches in a str regex).
bool IsPySpace(char32_t c);
bool IsLineBreak(char32_t c);  // str.splitlines() separators
bool IsPrintable(char32_t c);  // an approximation of str.isprintable() (see the .cc)
bool IsDigitChar(char32_t c);
bool IsAlphaChar(char32_t c);
bool IsWordChar(char32_t c);  // regex \w
char32_t ToUpperChar(char32_t c);
char32_t ToLowerChar(char32_t c);
bool IsUpperChar(char32_t c);
bool IsLowerChar(char32_t c);

std::string PyUpper(std::string_view s);  // str.upper() ('ß' becomes "SS")
std::string PyLower(std::string_view s);
std::string PyCapitalize(std::string_view s);
bool PyIsUpper(std::string_view s);
bool PyIsLower(std::string_view s);

// str.strip/lstrip/rstrip; `chars` == nullptr strips whitespace.
std::string_view PyStrip(std::string_view s, bool left, bool right, const std::string* chars);
// str.splitlines(keepends=False).
std::vector<std::string> PySplitLines(std::string_view s);
// str.split(sep, maxsplit) and str.split() (sep == nullptr: runs of whitespace).
std::vector<std::string> PySplit(std::string_view s, const std::string* sep, long maxsplit);
std::vector<std::string> PyRSplit(std::string_view s, const std::string* sep, long maxsplit);

}  // namespace para::text::jinja
