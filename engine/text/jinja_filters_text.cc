// Filters on strings and numbers: trim, upper, lower, title, capitalize, replace, indent, center,
// truncate, wordcount, format, escape, safe, string, int, float, abs, round, default, attr,
// tojson (transformers' version).
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_args.h"
#include "engine/text/jinja_builtins.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_filters.h"
#include "engine/text/jinja_json.h"
#include "engine/text/jinja_pyformat.h"
#include "engine/text/jinja_renderer.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

// str(value), as jinja2's soft_str; printing is bounded by the output limit.
std::string Text(Renderer& r, const Value& v) { return ToStr(v, r.limits().max_output_bytes); }

// Calls the str method `name` on str(value) with the filter's arguments.
Value StrMethod(Renderer& r, const Value& v, const char* name, CallArgs& args) {
  const Value s = v.is_string() ? v : Value::String(Text(r, v));
  return r.CallValue(*FindMethod(s, name), args);
}

Value Trim(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "trim", {"chars"});
  CallArgs strip;
  if (args.has(0)) strip.pos.push_back(args.get(0, Value::None()));
  return StrMethod(r, v, "strip", strip);
}

Value Replace(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "replace", {"old", "new", "count"});
  CallArgs rep;
  rep.pos.push_back(Value::String(Text(r, args.required(0, "replace", "old"))));
  rep.pos.push_back(Value::String(Text(r, args.required(1, "replace", "new"))));
  const Value count = args.get(2, Value::None());
  if (!count.is_none()) rep.pos.push_back(count);
  return StrMethod(r, v, "replace", rep);
}

Value Center(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "center", {"width"});
  CallArgs c;
  c.pos.push_back(args.get(0, Value::Int(80)));
  return StrMethod(r, v, "center", c);
}

// jinja2's title: upper-case the first character of each run between -, whitespace, (, {, [, <.
Value Title(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "title", {});
  const std::string s = Text(r, v);
  std::string out;
  bool at_start = true;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    const bool sep = IsPySpace(cp) || cp == '-' || cp == '(' || cp == '{' || cp == '[' || cp == '<';
    if (sep) {
      AppendUtf8(out, cp);
      at_start = true;
    } else if (at_start) {
      if (cp == 0xDF) {
        out += "Ss";
      } else {
        AppendUtf8(out, ToUpperChar(cp));
      }
      at_start = false;
    } else {
      AppendUtf8(out, ToLowerChar(cp));
    }
  }
  return r.MakeString(std::move(out));
}

Value Indent(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "indent", {"width", "first", "blank"});
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (!v.is_string()) {  // jinja2 appends "\n" to the value, then splits its lines
    if (v.is_list() && v.list().flavor == ListFlavor::kTuple) {
      ThrowRuntime("can only concatenate tuple (not \"str\") to tuple");
    }
    if (v.is_list()) ThrowRuntime("'list' object has no attribute 'splitlines'");
    ThrowRuntime(absl::StrCat("unsupported operand type(s) for +=: '", TypeName(v), "' and 'str'"));
  }
  const Value width = args.get(0, Value::Int(4));
  std::string indention;
  if (width.is_string()) {
    indention = width.str();
  } else if (width.is_int() || width.is_bool()) {
    if (width.as_int() > 10000) ThrowLimit("indent width too large");
    indention.assign(std::max<int64_t>(0, width.as_int()), ' ');
  } else {
    ThrowRuntime(
        absl::StrCat("can't multiply sequence by non-int of type '", TypeName(width), "'"));
  }
  std::vector<std::string> lines = PySplitLines(absl::StrCat(v.str(), "\n"));
  std::string out;
  const bool blank = Truthy(args.get(2, Value::Bool(false)));
  for (size_t i = 0; i < lines.size(); ++i) {
    if (i > 0) {
      out += '\n';
      if (blank || !lines[i].empty()) out += indention;
    }
    out += lines[i];
    if (out.size() > r.limits().max_output_bytes) break;
  }
  if (Truthy(args.get(1, Value::Bool(false)))) out.insert(0, indention);
  return r.MakeString(std::move(out));
}

Value Truncate(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "truncate", {"length", "killwords", "end", "leeway"});
  const int64_t length = args.get(0, Value::Int(255)).as_int();
  const bool killwords = Truthy(args.get(1, Value::Bool(false)));
  const std::u32string end = ToU32(Text(r, args.get(2, Value::String("..."))));
  const Value leeway_v = args.get(3, Value::None());
  const int64_t leeway = leeway_v.is_none() ? 5 : leeway_v.as_int();
  if (length < static_cast<int64_t>(end.size())) {
    ThrowRuntime(absl::StrCat("expected length >= ", end.size(), ", got ", length));
  }
  if (leeway < 0) ThrowRuntime(absl::StrCat("expected leeway >= 0, got ", leeway));
  if (!v.is_string()) {  // jinja2 measures the value itself, not its text
    CallArgs none;
    const int64_t n = FindFilter("length")(r, v, none).as_int();
    if (n <= length + leeway) return v;
    ThrowUnsupported(absl::StrCat("truncate of a long '", TypeName(v), "' value"));
  }
  const std::u32string s = ToU32(v.str());
  if (static_cast<int64_t>(s.size()) <= length + leeway) return v;
  std::u32string head = s.substr(0, length - end.size());
  if (!killwords) {
    const size_t space = head.rfind(U' ');
    if (space != std::u32string::npos) head = head.substr(0, space);
  }
  head += end;
  return r.MakeString(FromU32(head));
}

Value WordCount(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "wordcount", {});
  const std::string s = Text(r, v);
  int64_t words = 0;
  bool in_word = false;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    const bool w = IsWordChar(cp);
    if (w && !in_word) ++words;
    in_word = w;
  }
  return Value::Int(words);
}

Value Format(Renderer& r, const Value& v, CallArgs& call) {
  if (!call.pos.empty() && !call.kw.empty()) {
    ThrowRuntime("can't handle positional and keyword arguments at the same time");
  }
  if (!call.kw.empty()) ThrowUnsupported("the format filter with keyword arguments");
  return r.MakeString(PercentFormat(Text(r, v), call.pos));
}

Value Escape(Renderer& r, const Value& v, CallArgs& call) {
  Args(call, "escape", {});
  const std::string s = Text(r, v);
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&#34;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return r.MakeString(std::move(out));
}

// Python's int(str, base): optional whitespace and sign, digits with single underscores between
// them, a 0x/0o/0b prefix when base is 0 or matches.
bool ParsePyInt(std::string_view text, int base, int64_t* out) {
  std::string s(PyStrip(text, true, true, nullptr));
  bool neg = false;
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) neg = s[i++] == '-';
  auto prefix_base = [&](char c) { return c == 'x' ? 16 : c == 'o' ? 8 : c == 'b' ? 2 : 0; };
  if (i + 1 < s.size() && s[i] == '0') {
    const int pb = prefix_base(static_cast<char>(s[i + 1] | 0x20));
    if (pb && (base == 0 || base == pb)) {
      base = pb;
      i += 2;
      if (i < s.size() && s[i] == '_') ++i;
    }
  }
  if (base == 0) base = 10;
  std::string digits;
  for (; i < s.size(); ++i) {
    if (s[i] == '_' && !digits.empty() && i + 1 < s.size() && s[i + 1] != '_') continue;
    digits += s[i];
  }
  if (digits.empty()) return false;
  errno = 0;
  char* end = nullptr;
  const unsigned long long mag = std::strtoull(digits.c_str(), &end, base);
  if (*end != '\0' || digits[0] == '-' || digits[0] == '+' || digits[0] == ' ') return false;
  if (errno == ERANGE || mag > static_cast<unsigned long long>(INT64_MAX) + (neg ? 1 : 0)) {
    ThrowUnsupported("integer overflow (integers beyond 64 bits are not supported)");
  }
  *out = neg ? static_cast<int64_t>(0 - mag) : static_cast<int64_t>(mag);
  return true;
}

// Python's float(str).
bool ParsePyFloat(std::string_view text, double* out) {
  std::string s(PyStrip(text, true, true, nullptr));
  std::string clean;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '_') {
      if (i == 0 || i + 1 >= s.size() || !std::isdigit(static_cast<unsigned char>(s[i - 1])) ||
          !std::isdigit(static_cast<unsigned char>(s[i + 1]))) {
        return false;
      }
      continue;
    }
    if (c == 'x' || c == 'X' || c == 'p' || c == 'P' || c == ' ') return false;
    clean += c;
  }
  if (clean.empty()) return false;
  const std::string lower = PyLower(clean);
  const std::string body = (lower[0] == '+' || lower[0] == '-') ? lower.substr(1) : lower;
  if (body.find_first_of("0123456789") == std::string::npos && body != "inf" &&
      body != "infinity" && body != "nan") {
    return false;
  }
  char* end = nullptr;
  *out = std::strtod(clean.c_str(), &end);
  return *end == '\0';
}

Value Int(Renderer&, const Value& v, CallArgs& call) {
  const Args args(call, "int", {"default", "base"});
  const Value dflt = args.get(0, Value::Int(0));
  const Value base = args.get(1, Value::Int(10));
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (v.is_int() || v.is_bool()) return Value::Int(v.as_int());
  auto from_float = [&](double f) {
    if (std::isnan(f)) return dflt;
    if (std::isinf(f)) ThrowRuntime("cannot convert float infinity to integer");
    if (std::fabs(f) >= 9.2e18) ThrowUnsupported("integer overflow (beyond 64 bits)");
    return Value::Int(static_cast<int64_t>(f));
  };
  if (v.is_float()) return from_float(v.as_float());
  if (v.is_string()) {
    int64_t i;
    if (ParsePyInt(v.str(), static_cast<int>(base.as_int()), &i)) return Value::Int(i);
    double f;
    if (ParsePyFloat(v.str(), &f)) return from_float(f);
  }
  return dflt;
}

Value Float(Renderer&, const Value& v, CallArgs& call) {
  const Args args(call, "float", {"default"});
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (v.is_number()) return Value::Float(v.as_float());
  double f;
  if (v.is_string() && ParsePyFloat(v.str(), &f)) return Value::Float(f);
  return args.get(0, Value::Float(0.0));
}

Value Abs(Renderer&, const Value& v, CallArgs& call) {
  Args(call, "abs", {});
  if (v.is_float()) return Value::Float(std::fabs(v.as_float()));
  if (v.is_int() || v.is_bool()) {
    if (v.as_int() == INT64_MIN) ThrowUnsupported("integer overflow (beyond 64 bits)");
    return Value::Int(v.as_int() < 0 ? -v.as_int() : v.as_int());
  }
  ThrowRuntime(absl::StrCat("bad operand type for abs(): '", TypeName(v), "'"));
}

// Python's round(x, n): correctly rounded, ties to even on the exact binary value.
double PyRound(double x, int64_t n) {
  if (!std::isfinite(x)) return x;
  if (n >= 0) {
    if (n > 330 || std::fabs(x) >= 1e17) return x;  // already exact at that precision
    return std::strtod(CFormat(absl::StrCat("%.", n, "f"), x).c_str(), nullptr);
  }
  if (n < -308) return 0.0 * x;
  const double scale = std::pow(10.0, static_cast<double>(-n));
  return std::nearbyint(x / scale) * scale;
}

Value Round(Renderer&, const Value& v, CallArgs& call) {
  const Args args(call, "round", {"precision", "method"});
  const Value precision = args.get(0, Value::Int(0));
  const std::string method = ToStr(args.get(1, Value::String("common")));
  if (method != "common" && method != "ceil" && method != "floor") {
    ThrowRuntime("method must be common, ceil or floor");
  }
  if (!v.is_number()) {
    ThrowRuntime(absl::StrCat("type ", TypeName(v), " doesn't define __round__ method"));
  }
  if (!precision.is_int() && !precision.is_bool()) {
    ThrowRuntime(
        absl::StrCat("'", TypeName(precision), "' object cannot be interpreted as an integer"));
  }
  const int64_t n = precision.as_int();
  if (method == "common") {
    if (!v.is_float()) {
      if (n >= 0) return Value::Int(v.as_int());
      return Value::Int(static_cast<int64_t>(PyRound(static_cast<double>(v.as_int()), n)));
    }
    return Value::Float(PyRound(v.as_float(), n));
  }
  const double scale = std::pow(10.0, static_cast<double>(n));
  const double x = v.as_float() * scale;
  return Value::Float((method == "ceil" ? std::ceil(x) : std::floor(x)) / scale);
}

Value Default(Renderer&, const Value& v, CallArgs& call) {
  const Args args(call, "default", {"default_value", "boolean"});
  const bool boolean = Truthy(args.get(1, Value::Bool(false)));
  if (v.is_undefined() || (boolean && !Truthy(v))) return args.get(0, Value::String(""));
  return v;
}

Value Attr(Renderer&, const Value& v, CallArgs& call) {
  const Args args(call, "attr", {"name"});
  const std::string name = ToStr(args.required(0, "attr", "name"));
  if (v.is_undefined()) ThrowRuntime(v.undefined_message());
  if (auto method = FindMethod(v, name)) return *method;
  if (v.is_namespace()) {
    if (const Value* a = v.ns().attrs.Find(Value::String(name))) return *a;
  }
  return Value::Undefined(absl::StrCat("'", ObjectTypeRepr(v), "' has no attribute '", name, "'"));
}

Value ToJsonFilter(Renderer& r, const Value& v, CallArgs& call) {
  const Args args(call, "tojson", {"ensure_ascii", "indent", "separators", "sort_keys"});
  JsonOptions opt;
  opt.ensure_ascii = Truthy(args.get(0, Value::Bool(false)));
  const Value indent = args.get(1, Value::None());
  if (indent.is_string()) {
    opt.indent = indent.str();
  } else if (indent.is_int() || indent.is_bool()) {
    if (indent.as_int() > 10000) ThrowLimit("tojson indent too large");
    opt.indent = std::string(std::max<int64_t>(0, indent.as_int()), ' ');
  } else if (!indent.is_none()) {
    ThrowRuntime(absl::StrCat("indent must be None, an int or a str, not ", TypeName(indent)));
  }
  if (opt.indent) opt.item_separator.assign(1, ',');
  const Value separators = args.get(2, Value::None());
  if (!separators.is_none()) {
    const std::vector<Value> parts = r.Iterate(separators);
    if (parts.size() != 2 || !parts[0].is_string() || !parts[1].is_string()) {
      ThrowRuntime("separators must be a (item_separator, key_separator) pair of strings");
    }
    opt.item_separator = parts[0].str();
    opt.key_separator = parts[1].str();
  }
  opt.sort_keys = Truthy(args.get(3, Value::Bool(false)));
  return r.MakeString(ToJson(v, opt, r.limits().max_output_bytes));
}

#define PARA_STR_FILTER(fn_name, expr)                       \
  [](Renderer& r, const Value& v, CallArgs& call) -> Value { \
    Args(call, fn_name, {});                                 \
    const std::string s = Text(r, v);                        \
    return r.MakeString(expr);                               \
  }

}  // namespace

namespace filters_internal {

void AddTextFilters(FilterTable& t) {
  t["trim"] = Trim;
  t["replace"] = Replace;
  t["center"] = Center;
  t["title"] = Title;
  t["indent"] = Indent;
  t["truncate"] = Truncate;
  t["wordcount"] = WordCount;
  t["format"] = Format;
  t["escape"] = Escape;
  t["e"] = Escape;
  t["forceescape"] = Escape;
  t["int"] = Int;
  t["float"] = Float;
  t["abs"] = Abs;
  t["round"] = Round;
  t["default"] = Default;
  t["d"] = Default;
  t["attr"] = Attr;
  t["tojson"] = ToJsonFilter;
  t["upper"] = PARA_STR_FILTER("upper", PyUpper(s));
  t["lower"] = PARA_STR_FILTER("lower", PyLower(s));
  t["capitalize"] = PARA_STR_FILTER("capitalize", PyCapitalize(s));
  t["string"] = PARA_STR_FILTER("string", s);
  t["safe"] = PARA_STR_FILTER("safe", s);
}

}  // namespace filters_internal
}  // namespace para::text::jinja
