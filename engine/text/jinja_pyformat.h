// Python's text forms of numbers and strings, and json.dumps (internal to para_chat_template).
//
// FloatRepr is float.__repr__ (shortest round trip: 1.0, 0.1, 1e-05, 1e+16, inf, nan);
// StrRepr is str.__repr__ (quote choice and escapes); JsonString/JsonFloat are json.dumps'
// encodings. PercentFormat is `str % args` and FormatMethod is str.format for the conversions
// chat templates use. Pure functions; thread-safe. Errors are thrown as jinja::Error.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/text/jinja_value.h"

namespace para::text::jinja {

std::string FloatRepr(double f);
// C's snprintf with one number, into a string of whatever length the result needs.
std::string CFormat(const std::string& format, double value);
std::string CFormat(const std::string& format, long long value);
std::string StrRepr(std::string_view s);
void AppendJsonString(std::string& out, std::string_view s, bool ensure_ascii);
std::string JsonFloat(double f);

// `fmt % args` (args: a tuple's items, or one value).
std::string PercentFormat(std::string_view fmt, const std::vector<Value>& args);
// fmt.format(*pos, **kw) with {}, {0}, {name} and an optional !s/!r and simple format spec.
std::string FormatMethod(std::string_view fmt, const CallArgs& args);

}  // namespace para::text::jinja
