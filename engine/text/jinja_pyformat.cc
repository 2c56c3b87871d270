#include "engine/text/jinja_pyformat.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {

std::string FloatRepr(double f) {
  if (std::isnan(f)) return "nan";
  if (std::isinf(f)) return f > 0 ? "inf" : "-inf";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof(buf), f, std::chars_format::scientific);
  std::string_view sci(buf, res.ptr - buf);
  std::string sign;
  if (sci.front() == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  const size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e)) {
    if (c != '.') digits += c;
  }
  const int exp10 = std::atoi(std::string(sci.substr(e + 1)).c_str());
  const int decpt = exp10 + 1;
  const int n = static_cast<int>(digits.size());
  if (decpt > -4 && decpt <= 16) {
    if (decpt <= 0) return absl::StrCat(sign, "0.", std::string(-decpt, '0'), digits);
    if (decpt >= n) return absl::StrCat(sign, digits, std::string(decpt - n, '0'), ".0");
    return absl::StrCat(sign, digits.substr(0, decpt), ".", digits.substr(decpt));
  }
  std::string out = absl::StrCat(sign, digits.substr(0, 1));
  if (n > 1) absl::StrAppend(&out, ".", digits.substr(1));
  const int abs_exp = exp10 < 0 ? -exp10 : exp10;
  return absl::StrCat(out, "e", exp10 < 0 ? "-" : "+", abs_exp < 10 ? "0" : "", abs_exp);
}

namespace {

template <typename T>
std::string CFormatImpl(const std::string& format, T value) {
  const int n = std::snprintf(nullptr, 0, format.c_str(), value);
  if (n <= 0) return "";
  std::string out(static_cast<size_t>(n) + 1, '\0');
  std::snprintf(out.data(), out.size(), format.c_str(), value);
  out.resize(static_cast<size_t>(n));
  return out;
}

}  // namespace

std::string CFormat(const std::string& format, double value) { return CFormatImpl(format, value); }
std::string CFormat(const std::string& format, long long value) {
  return CFormatImpl(format, value);
}

std::string StrRepr(std::string_view s) {
  const bool has_single = s.find('\'') != std::string_view::npos;
  const bool has_double = s.find('"') != std::string_view::npos;
  const char quote = (has_single && !has_double) ? '"' : '\'';
  std::string out(1, quote);
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    if (cp == static_cast<char32_t>(quote) || cp == '\\') {
      out += '\\';
      out += static_cast<char>(cp);
    } else if (cp == '\t') {
      out += "\\t";
    } else if (cp == '\n') {
      out += "\\n";
    } else if (cp == '\r') {
      out += "\\r";
    } else if (IsPrintable(cp)) {
      AppendUtf8(out, cp);
    } else if (cp <= 0xFF) {
      out += absl::StrFormat("\\x%02x", static_cast<unsigned>(cp));
    } else if (cp <= 0xFFFF) {
      out += absl::StrFormat("\\u%04x", static_cast<unsigned>(cp));
    } else {
      out += absl::StrFormat("\\U%08x", static_cast<unsigned>(cp));
    }
  }
  out += quote;
  return out;
}

void AppendJsonString(std::string& out, std::string_view s, bool ensure_ascii) {
  out += '"';
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, pos, &cp);
    switch (cp) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (cp < 0x20 || (ensure_ascii && cp >= 0x7F)) {
          if (cp >= 0x10000) {
            const char32_t v = cp - 0x10000;
            out += absl::StrFormat("\\u%04x\\u%04x", static_cast<unsigned>(0xD800 + (v >> 10)),
                                   static_cast<unsigned>(0xDC00 + (v & 0x3FF)));
          } else {
            out += absl::StrFormat("\\u%04x", static_cast<unsigned>(cp));
          }
        } else {
          out.append(s.substr(pos, n));
        }
    }
    pos += n;
  }
  out += '"';
}

std::string JsonFloat(double f) {
  if (std::isnan(f)) return "NaN";
  if (std::isinf(f)) return f > 0 ? "Infinity" : "-Infinity";
  return FloatRepr(f);
}

namespace {

struct PercentSpec {
  std::string flags;
  int width = -1;
  int precision = -1;
  char conv = 0;
};

// Parses "%[flags][width][.precision]conv" at fmt[i] (just past the '%'); advances i.
PercentSpec ParsePercentSpec(std::string_view fmt, size_t& i) {
  PercentSpec spec;
  if (i < fmt.size() && fmt[i] == '(') ThrowUnsupported("'%(name)' formatting is not supported");
  while (i < fmt.size() && std::string_view("-+ #0").find(fmt[i]) != std::string_view::npos) {
    spec.flags += fmt[i++];
  }
  auto read_int = [&](int* out) {
    while (i < fmt.size() && fmt[i] >= '0' && fmt[i] <= '9') {
      *out = (*out < 0 ? 0 : *out) * 10 + (fmt[i++] - '0');
      if (*out > 10000) ThrowLimit("format width or precision too large");
    }
  };
  if (i < fmt.size() && fmt[i] == '*') ThrowUnsupported("'*' in % formatting is not supported");
  read_int(&spec.width);
  if (i < fmt.size() && fmt[i] == '.') {
    ++i;
    spec.precision = 0;
    read_int(&spec.precision);
  }
  if (i >= fmt.size()) ThrowRuntime("incomplete format");
  spec.conv = fmt[i++];
  return spec;
}

std::string Pad(std::string body, const PercentSpec& spec) {
  const int len = static_cast<int>(CodePointCount(body));
  if (spec.width <= len) return body;
  const std::string fill(spec.width - len, ' ');
  return spec.flags.find('-') != std::string::npos ? body + fill : fill + body;
}

std::string FormatNumber(const Value& v, const PercentSpec& spec) {
  if (!v.is_number()) {
    ThrowRuntime(absl::StrCat("%", std::string(1, spec.conv),
                              " format: a real number is required, not ", TypeName(v)));
  }
  std::string cfmt = "%" + spec.flags;
  if (spec.width >= 0) absl::StrAppend(&cfmt, spec.width);
  if (spec.precision >= 0) absl::StrAppend(&cfmt, ".", spec.precision);
  if (spec.conv == 'd' || spec.conv == 'i' || spec.conv == 'x' || spec.conv == 'X' ||
      spec.conv == 'o') {
    const double f = v.as_float();
    if (v.is_float() && !(std::fabs(f) < 9.2e18)) ThrowUnsupported("integer beyond 64 bits");
    const long long n = v.is_float() ? static_cast<long long>(f) : v.as_int();
    cfmt += "ll";
    cfmt += spec.conv == 'i' ? 'd' : spec.conv;
    return CFormat(cfmt, n);
  }
  cfmt += spec.conv;
  return CFormat(cfmt, v.as_float());
}

}  // namespace

std::string PercentFormat(std::string_view fmt, const std::vector<Value>& args) {
  std::string out;
  size_t next = 0;
  for (size_t i = 0; i < fmt.size();) {
    if (fmt[i] != '%') {
      out += fmt[i++];
      continue;
    }
    ++i;
    if (i < fmt.size() && fmt[i] == '%') {
      out += '%';
      ++i;
      continue;
    }
    const PercentSpec spec = ParsePercentSpec(fmt, i);
    if (next >= args.size()) ThrowRuntime("not enough arguments for format string");
    const Value& arg = args[next++];
    switch (spec.conv) {
      case 's':
      case 'r':
      case 'a': {
        std::string s = spec.conv == 's' ? ToStr(arg) : Repr(arg);
        if (spec.precision >= 0) s = FromU32(ToU32(s).substr(0, spec.precision));
        out += Pad(std::move(s), spec);
        break;
      }
      case 'd':
      case 'i':
      case 'x':
      case 'X':
      case 'o':
      case 'f':
      case 'F':
      case 'e':
      case 'E':
      case 'g':
      case 'G':
        out += FormatNumber(arg, spec);
        break;
      default:
        ThrowRuntime(absl::StrFormat("unsupported format character '%c'", spec.conv));
    }
  }
  if (next < args.size()) ThrowRuntime("not all arguments converted during string formatting");
  return out;
}

namespace {

// Applies a str.format spec: [[fill]align][0][width][.precision][type].
std::string ApplyFormatSpec(const Value& v, std::string_view spec) {
  if (spec.empty()) return ToStr(v);
  char fill = ' ';
  char align = 0;
  size_t i = 0;
  if (spec.size() >= 2 && std::string_view("<>^").find(spec[1]) != std::string_view::npos) {
    fill = spec[0], align = spec[1], i = 2;
  } else if (std::string_view("<>^").find(spec[0]) != std::string_view::npos) {
    align = spec[0], i = 1;
  }
  int width = 0;
  int precision = -1;
  while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9' && width < 10000) {
    width = width * 10 + (spec[i++] - '0');
  }
  if (i < spec.size() && spec[i] == '.') {
    precision = 0;
    ++i;
    while (i < spec.size() && spec[i] >= '0' && spec[i] <= '9' && precision < 10000) {
      precision = precision * 10 + (spec[i++] - '0');
    }
  }
  const std::string_view type = spec.substr(i);
  std::string body;
  if (type == "f" || type == "e" || type == "g" || type == "%") {
    if (!v.is_number()) ThrowRuntime("format spec needs a number");
    double f = v.as_float();
    if (type == "%") f *= 100;
    const std::string cfmt =
        absl::StrCat("%.", precision < 0 ? 6 : precision, type == "%" ? "f" : AV(type));
    body = CFormat(cfmt, f);
    if (type == "%") body += '%';
  } else if (type == "d") {
    if (!v.is_int() && !v.is_bool()) ThrowRuntime("format spec 'd' needs an integer");
    body = absl::StrCat(v.as_int());
  } else if (type.empty() || type == "s") {
    body = ToStr(v);
    if (precision >= 0) body = FromU32(ToU32(body).substr(0, precision));
  } else {
    ThrowUnsupported(absl::StrCat("format spec '", AV(spec), "' is not supported"));
  }
  const int len = static_cast<int>(CodePointCount(body));
  if (width <= len) return body;
  if (!align) align = v.is_number() ? '>' : '<';
  const int pad = width - len;
  if (align == '<') return body + std::string(pad, fill);
  if (align == '>') return std::string(pad, fill) + body;
  return std::string(pad / 2, fill) + body + std::string(pad - pad / 2, fill);
}

const Value& LookupField(std::string_view name, const CallArgs& args, size_t& auto_index) {
  if (name.empty()) {
    if (auto_index >= args.pos.size()) {
      ThrowRuntime(absl::StrCat("Replacement index ", auto_index, " out of range"));
    }
    return args.pos[auto_index++];
  }
  if (name.find_first_not_of("0123456789") == std::string_view::npos) {
    const size_t idx = std::strtoul(std::string(name).c_str(), nullptr, 10);
    if (idx >= args.pos.size())
      ThrowRuntime(absl::StrCat("Replacement index ", idx, " out of range"));
    return args.pos[idx];
  }
  for (const auto& [k, v] : args.kw) {
    if (k == name) return v;
  }
  ThrowRuntime(absl::StrCat("'", AV(name), "'"));
}

}  // namespace

std::string FormatMethod(std::string_view fmt, const CallArgs& args) {
  std::string out;
  size_t auto_index = 0;
  for (size_t i = 0; i < fmt.size();) {
    const char c = fmt[i];
    if (c == '}') {
      if (i + 1 < fmt.size() && fmt[i + 1] == '}') {
        out += '}';
        i += 2;
        continue;
      }
      ThrowRuntime("Single '}' encountered in format string");
    }
    if (c != '{') {
      out += c;
      ++i;
      continue;
    }
    if (i + 1 < fmt.size() && fmt[i + 1] == '{') {
      out += '{';
      i += 2;
      continue;
    }
    const size_t close = fmt.find('}', i);
    if (close == std::string_view::npos) ThrowRuntime("Single '{' encountered in format string");
    std::string_view field = fmt.substr(i + 1, close - i - 1);
    i = close + 1;
    std::string_view spec;
    if (const size_t colon = field.find(':'); colon != std::string_view::npos) {
      spec = field.substr(colon + 1);
      field = field.substr(0, colon);
    }
    char conversion = 0;
    if (const size_t bang = field.find('!'); bang != std::string_view::npos) {
      if (bang + 2 != field.size()) ThrowRuntime("expected ':' after conversion specifier");
      conversion = field[bang + 1];
      field = field.substr(0, bang);
    }
    if (field.find_first_of(".[") != std::string_view::npos) {
      ThrowUnsupported("attribute or index lookups in str.format fields are not supported");
    }
    const Value& v = LookupField(field, args, auto_index);
    if (conversion == 'r') {
      out += ApplyFormatSpec(Value::String(Repr(v)), spec);
    } else if (conversion == 's' || conversion == 0) {
      out += conversion ? ApplyFormatSpec(Value::String(ToStr(v)), spec) : ApplyFormatSpec(v, spec);
    } else {
      ThrowRuntime(absl::StrFormat("Unknown conversion specifier %c", conversion));
    }
  }
  return out;
}

}  // namespace para::text::jinja
