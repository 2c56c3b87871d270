#include "engine/text/jinja_unicode.h"

#include <algorithm>

namespace para::text::jinja {

size_t DecodeUtf8(std::string_view s, size_t pos, char32_t* cp) {
  const auto b0 = static_cast<unsigned char>(s[pos]);
  if (b0 < 0x80) {
    *cp = b0;
    return 1;
  }
  size_t len = 0;
  char32_t value = 0;
  if ((b0 & 0xE0) == 0xC0) {
    len = 2, value = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, value = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, value = b0 & 0x07;
  } else {
    *cp = b0;
    return 1;
  }
  if (pos + len > s.size()) {
    *cp = b0;
    return 1;
  }
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[pos + i]);
    if ((b & 0xC0) != 0x80) {
      *cp = b0;
      return 1;
    }
    value = (value << 6) | (b & 0x3F);
  }
  *cp = value;
  return len;
}

void AppendUtf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::u32string ToU32(std::string_view s) {
  std::u32string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    out.push_back(cp);
  }
  return out;
}

std::string FromU32(std::u32string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char32_t cp : s) AppendUtf8(out, cp);
  return out;
}

bool IsAscii(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c & 0x80) == 0; });
}

size_t CodePointCount(std::string_view s) {
  size_t n = 0;
  for (size_t pos = 0; pos < s.size(); ++n) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
  }
  return n;
}

bool IsPySpace(char32_t c) {
  if (c < 0x80) return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20);
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

bool IsLineBreak(char32_t c) {
  return c == '\n' || c == '\r' || c == 0x0B || c == 0x0C || c == 0x1C || c == 0x1D || c == 0x1E ||
         c == 0x85 || c == 0x2028 || c == 0x2029;
}

// Not printable for Python: controls, separators other than ' ', format characters, surrogates,
// private use and noncharacters. Unassigned code points are not known here (a documented gap).
bool IsPrintable(char32_t c) {
  if (c < 0x20 || (c >= 0x7F && c <= 0xA0) || c == 0xAD) return false;
  if (c < 0x600) return true;
  if ((c >= 0x600 && c <= 0x605) || c == 0x61C || c == 0x6DD || c == 0x70F || c == 0x180E ||
      c == 0x1680)
    return false;
  if ((c >= 0x2000 && c <= 0x200F) || (c >= 0x2028 && c <= 0x202F) ||
      (c >= 0x205F && c <= 0x206F) || c == 0x3000)
    return false;
  if ((c >= 0xD800 && c <= 0xF8FF) || c == 0xFEFF || (c >= 0xFFF9 && c <= 0xFFFB) || c == 0xFFFE ||
      c == 0xFFFF)
    return false;
  if (c == 0x110BD || (c >= 0x1D173 && c <= 0x1D17A) || c == 0xE0001 ||
      (c >= 0xE0020 && c <= 0xE007F) || c >= 0xF0000)
    return false;
  return true;
}

bool IsDigitChar(char32_t c) { return c >= '0' && c <= '9'; }

namespace {

bool IsSymbolOrPunct(char32_t c) {
  if (c < 0x80) return !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigitChar(c));
  if (c < 0xC0) return c != 0xAA && c != 0xB5 && c != 0xBA;
  return c == 0xD7 || c == 0xF7 || (c >= 0x2000 && c <= 0x2BFF) || (c >= 0x3000 && c <= 0x303F) ||
         (c >= 0xFE30 && c <= 0xFE4F) || (c >= 0xFF00 && c <= 0xFF0F) ||
         (c >= 0xFF1A && c <= 0xFF20) || (c >= 0x1F000 && c <= 0x1FAFF);
}

struct CaseRange {
  char32_t upper_first, upper_last, lower_first;
};

// Contiguous upper/lower blocks that map by a constant offset.
constexpr CaseRange kOffsetRanges[] = {
    {'A', 'Z', 'a'},       {0xC0, 0xD6, 0xE0},    {0xD8, 0xDE, 0xF8},       {0x391, 0x3A1, 0x3B1},
    {0x3A3, 0x3AB, 0x3C3}, {0x388, 0x38A, 0x3AD}, {0x38E, 0x38F, 0x3CD},    {0x410, 0x42F, 0x430},
    {0x400, 0x40F, 0x450}, {0x531, 0x556, 0x561}, {0xFF21, 0xFF3A, 0xFF41},
};

// Blocks where upper and lower case alternate (upper first when `even_upper`).
struct PairRange {
  char32_t first, last;
  bool even_upper;
};
constexpr PairRange kPairRanges[] = {
    {0x100, 0x137, true},  {0x139, 0x148, false}, {0x14A, 0x177, true},
    {0x179, 0x17E, false}, {0x460, 0x481, true},  {0x48A, 0x4BF, true},
};

}  // namespace

char32_t ToUpperChar(char32_t c) {
  if (c >= 'a' && c <= 'z') return c - 32;
  if (c < 0x80) return c;
  for (const auto& r : kOffsetRanges) {
    const char32_t lower_last = r.lower_first + (r.upper_last - r.upper_first);
    if (c >= r.lower_first && c <= lower_last) return r.upper_first + (c - r.lower_first);
  }
  for (const auto& r : kPairRanges) {
    if (c >= r.first && c <= r.last && ((c % 2 == 0) != r.even_upper)) return c - 1;
  }
  switch (c) {
    case 0xFF:
      return 0x178;
    case 0xB5:
      return 0x39C;
    case 0x131:
      return 'I';
    case 0x17F:
      return 'S';
    case 0x3C2:
      return 0x3A3;
    case 0x3AC:
      return 0x386;
    case 0x3CC:
      return 0x38C;
    default:
      return c;
  }
}

char32_t ToLowerChar(char32_t c) {
  if (c >= 'A' && c <= 'Z') return c + 32;
  if (c < 0x80) return c;
  for (const auto& r : kOffsetRanges) {
    if (c >= r.upper_first && c <= r.upper_last) return r.lower_first + (c - r.upper_first);
  }
  for (const auto& r : kPairRanges) {
    if (c >= r.first && c <= r.last && ((c % 2 == 0) == r.even_upper)) return c + 1;
  }
  switch (c) {
    case 0x178:
      return 0xFF;
    case 0x386:
      return 0x3AC;
    case 0x38C:
      return 0x3CC;
    default:
      return c;
  }
}

bool IsUpperChar(char32_t c) { return ToLowerChar(c) != c; }
bool IsLowerChar(char32_t c) { return ToUpperChar(c) != c || c == 0xDF; }

bool IsAlphaChar(char32_t c) {
  if (c < 0x80) return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
  return !IsPySpace(c) && !IsSymbolOrPunct(c) && IsPrintable(c);
}

bool IsWordChar(char32_t c) { return c == '_' || IsDigitChar(c) || IsAlphaChar(c); }

std::string PyUpper(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    if (cp == 0xDF) {
      out += "SS";
    } else {
      AppendUtf8(out, ToUpperChar(cp));
    }
  }
  return out;
}

std::string PyLower(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    AppendUtf8(out, ToLowerChar(cp));
  }
  return out;
}

std::string PyCapitalize(std::string_view s) {
  if (s.empty()) return "";
  char32_t first;
  const size_t n = DecodeUtf8(s, 0, &first);
  std::string out;
  if (first == 0xDF) {
    out = "Ss";
  } else {
    AppendUtf8(out, ToUpperChar(first));
  }
  return out + PyLower(s.substr(n));
}

namespace {

// True when `s` has a cased character and all its cased characters satisfy `pred`.
template <typename Pred>
bool AllCased(std::string_view s, Pred pred) {
  bool cased = false;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    pos += DecodeUtf8(s, pos, &cp);
    if (IsUpperChar(cp) || IsLowerChar(cp)) {
      if (!pred(cp)) return false;
      cased = true;
    }
  }
  return cased;
}

}  // namespace

bool PyIsUpper(std::string_view s) { return AllCased(s, IsUpperChar); }
bool PyIsLower(std::string_view s) { return AllCased(s, IsLowerChar); }

std::string_view PyStrip(std::string_view s, bool left, bool right, const std::string* chars) {
  const std::u32string set = chars ? ToU32(*chars) : std::u32string();
  auto strippable = [&](char32_t cp) {
    return chars ? set.find(cp) != std::u32string::npos : IsPySpace(cp);
  };
  size_t begin = 0;
  size_t end = s.size();
  if (left) {
    while (begin < end) {
      char32_t cp;
      const size_t n = DecodeUtf8(s, begin, &cp);
      if (!strippable(cp)) break;
      begin += n;
    }
  }
  if (right) {
    while (end > begin) {
      size_t start = end - 1;
      while (start > begin && (static_cast<unsigned char>(s[start]) & 0xC0) == 0x80) --start;
      char32_t cp;
      const size_t n = DecodeUtf8(s, start, &cp);
      if (start + n != end) start = end - 1, cp = static_cast<unsigned char>(s[end - 1]);
      if (!strippable(cp)) break;
      end = start;
    }
  }
  return s.substr(begin, end - begin);
}

std::vector<std::string> PySplitLines(std::string_view s) {
  std::vector<std::string> lines;
  size_t line_start = 0;
  for (size_t pos = 0; pos < s.size();) {
    char32_t cp;
    const size_t n = DecodeUtf8(s, pos, &cp);
    if (!IsLineBreak(cp)) {
      pos += n;
      continue;
    }
    lines.emplace_back(s.substr(line_start, pos - line_start));
    pos += n;
    if (cp == '\r' && pos < s.size() && s[pos] == '\n') ++pos;
    line_start = pos;
  }
  if (line_start < s.size()) lines.emplace_back(s.substr(line_start));
  return lines;
}

namespace {

std::vector<std::string> SplitWhitespace(std::string_view s, long maxsplit) {
  std::vector<std::string> parts;
  size_t pos = 0;
  while (true) {
    while (pos < s.size()) {  // skip whitespace
      char32_t cp;
      const size_t n = DecodeUtf8(s, pos, &cp);
      if (!IsPySpace(cp)) break;
      pos += n;
    }
    if (pos >= s.size()) break;
    if (maxsplit >= 0 && static_cast<long>(parts.size()) >= maxsplit) {
      parts.emplace_back(PyStrip(s.substr(pos), false, true, nullptr));
      break;
    }
    const size_t start = pos;
    while (pos < s.size()) {
      char32_t cp;
      const size_t n = DecodeUtf8(s, pos, &cp);
      if (IsPySpace(cp)) break;
      pos += n;
    }
    parts.emplace_back(s.substr(start, pos - start));
  }
  return parts;
}

}  // namespace

std::vector<std::string> PySplit(std::string_view s, const std::string* sep, long maxsplit) {
  if (!sep) return SplitWhitespace(s, maxsplit);
  std::vector<std::string> parts;
  size_t start = 0;
  while (maxsplit < 0 || static_cast<long>(parts.size()) < maxsplit) {
    const size_t hit = s.find(*sep, start);
    if (hit == std::string_view::npos) break;
    parts.emplace_back(s.substr(start, hit - start));
    start = hit + sep->size();
  }
  parts.emplace_back(s.substr(start));
  return parts;
}

std::vector<std::string> PyRSplit(std::string_view s, const std::string* sep, long maxsplit) {
  if (!sep) {
    if (maxsplit < 0) return SplitWhitespace(s, -1);
    // Whitespace rsplit with a limit: split the reversed code points, then reverse back.
    std::u32string rev = ToU32(s);
    std::reverse(rev.begin(), rev.end());
    std::vector<std::string> parts = SplitWhitespace(FromU32(rev), maxsplit);
    for (auto& p : parts) {
      std::u32string u = ToU32(p);
      std::reverse(u.begin(), u.end());
      p = FromU32(u);
    }
    std::reverse(parts.begin(), parts.end());
    return parts;
  }
  std::vector<std::string> parts;
  size_t end = s.size();
  while (maxsplit < 0 || static_cast<long>(parts.size()) < maxsplit) {
    if (end < sep->size()) break;
    const size_t hit = s.rfind(*sep, end - sep->size());
    if (hit == std::string_view::npos) break;
    parts.emplace_back(s.substr(hit + sep->size(), end - hit - sep->size()));
    end = hit;
  }
  parts.emplace_back(s.substr(0, end));
  std::reverse(parts.begin(), parts.end());
  return parts;
}

}  // namespace para::text::jinja
