#include "engine/text/jinja_lexer.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "engine/text/jinja_error.h"
#include "engine/text/jinja_unicode.h"

namespace para::text::jinja {
namespace {

[[noreturn]] void SyntaxError(std::string message, int line) {
  throw Error(ErrorKind::kSyntax, std::move(message), line);
}

bool IsSpaceAt(std::string_view s, size_t pos, size_t* len) {
  char32_t cp;
  *len = DecodeUtf8(s, pos, &cp);
  return IsPySpace(cp);
}

// Length of the run of (Python) whitespace at `pos`.
size_t SkipSpace(std::string_view s, size_t pos) {
  size_t end = pos;
  size_t len;
  while (end < s.size() && IsSpaceAt(s, end, &len)) end += len;
  return end - pos;
}

int CountNewlines(std::string_view s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsNameStart(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
bool IsNameChar(char c) { return IsNameStart(c) || IsDigit(c); }

std::string NormalizeNewlines(std::string_view source) {
  std::string out;
  out.reserve(source.size());
  for (size_t i = 0; i < source.size(); ++i) {
    if (source[i] == '\r') {
      out += '\n';
      if (i + 1 < source.size() && source[i + 1] == '\n') ++i;
    } else {
      out += source[i];
    }
  }
  if (!out.empty() && out.back() == '\n') out.pop_back();  // keep_trailing_newline=False
  return out;
}

// Python's "unicode-escape" decoding of a string literal's body.
std::string Unescape(std::string_view body, int line) {
  std::string out;
  out.reserve(body.size());
  for (size_t i = 0; i < body.size(); ++i) {
    const char c = body[i];
    if (c != '\\') {
      out += c;
      continue;
    }
    if (++i >= body.size()) SyntaxError("\\ at end of string", line);
    const char e = body[i];
    auto hex = [&](int digits) {
      char32_t cp = 0;
      for (int k = 1; k <= digits; ++k) {
        const size_t at = i + k;
        const char h = at < body.size() ? body[at] : '\0';
        int v = -1;
        if (h >= '0' && h <= '9') v = h - '0';
        if (h >= 'a' && h <= 'f') v = h - 'a' + 10;
        if (h >= 'A' && h <= 'F') v = h - 'A' + 10;
        if (v < 0) {
          SyntaxError(absl::StrCat("truncated \\", std::string(1, e), "XX escape"), line);
        }
        cp = cp * 16 + v;
      }
      i += digits;
      if (cp > 0x10FFFF) SyntaxError("illegal Unicode character", line);
      AppendUtf8(out, cp);
    };
    switch (e) {
      case '\n':
        break;
      case '\\':
        out += '\\';
        break;
      case '\'':
        out += '\'';
        break;
      case '"':
        out += '"';
        break;
      case 'a':
        out += '\a';
        break;
      case 'b':
        out += '\b';
        break;
      case 'f':
        out += '\f';
        break;
      case 'n':
        out += '\n';
        break;
      case 'r':
        out += '\r';
        break;
      case 't':
        out += '\t';
        break;
      case 'v':
        out += '\v';
        break;
      case 'x':
        hex(2);
        break;
      case 'u':
        hex(4);
        break;
      case 'U':
        hex(8);
        break;
      case 'N':
        throw Error(ErrorKind::kUnsupported, "\\N{...} escapes are not supported", line);
      default:
        if (e >= '0' && e <= '7') {
          int v = e - '0';
          for (int k = 0; k < 2 && i + 1 < body.size() && body[i + 1] >= '0' && body[i + 1] <= '7';
               ++k) {
            v = v * 8 + (body[++i] - '0');
          }
          AppendUtf8(out, static_cast<char32_t>(v));
        } else {
          out += '\\';
          out += e;
        }
    }
  }
  return out;
}

class Lexer {
 public:
  explicit Lexer(std::string_view source) : src_(source) {}

  std::vector<Token> Run() {
    while (pos_ < src_.size()) LexRoot();
    tokens_.push_back({TokenType::kEof, "", line_});
    return std::move(tokens_);
  }

 private:
  void Emit(TokenType type, std::string value, int line) {
    tokens_.push_back({type, std::move(value), line});
  }

  // Finds the next "{{", "{%" or "{#" at or after `from`.
  size_t FindTagStart(size_t from) const {
    while (true) {
      const size_t k = src_.find('{', from);
      if (k == std::string_view::npos || k + 1 >= src_.size()) return std::string_view::npos;
      const char next = src_[k + 1];
      if (next == '{' || next == '%' || next == '#') return k;
      from = k + 1;
    }
  }

  // Applies `-` (strip all trailing whitespace) or lstrip_blocks to the text before a tag.
  std::string_view StripText(std::string_view text, char sign, bool lstrip_allowed) const {
    if (sign == '-') return PyStrip(text, false, true, nullptr);
    if (sign == '+' || !lstrip_allowed) return text;
    const size_t nl = text.rfind('\n');
    const size_t l_pos = nl == std::string_view::npos ? 0 : nl + 1;
    if (l_pos == 0 && !line_starting_) return text;
    const std::string_view tail = text.substr(l_pos);
    if (!tail.empty() && SkipSpace(tail, 0) == tail.size()) return text.substr(0, l_pos);
    return text;
  }

  void EmitData(std::string_view text) {
    if (!text.empty()) Emit(TokenType::kData, std::string(text), line_);
  }

  void LexRoot() {
    const size_t k = FindTagStart(pos_);
    if (k == std::string_view::npos) {
      EmitData(src_.substr(pos_));
      line_ += CountNewlines(src_.substr(pos_));
      pos_ = src_.size();
      return;
    }
    const char kind = src_[k + 1];
    const char sign =
        (k + 2 < src_.size() && (src_[k + 2] == '-' || src_[k + 2] == '+')) ? src_[k + 2] : '\0';
    const std::string_view text = src_.substr(pos_, k - pos_);
    size_t raw_end = 0;
    const bool raw = kind == '%' && MatchRawBegin(k, &raw_end);
    EmitData(StripText(text, sign, kind != '{'));
    line_ += CountNewlines(text);
    const size_t after = k + 2 + (sign ? 1 : 0);
    if (raw) {
      line_starting_ = src_[raw_end - 1] == '\n';
      line_ += CountNewlines(src_.substr(k, raw_end - k));
      LexRaw(raw_end);
    } else if (kind == '#') {
      LexComment(after);
    } else {
      LexTag(kind == '{', after);
    }
  }

  // `{%[-+]?\s*raw\s*(-%}\s*|%})` at k; sets *end past it.
  bool MatchRawBegin(size_t k, size_t* end) const {
    size_t p = k + 2;
    if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) ++p;
    p += SkipSpace(src_, p);
    if (src_.substr(p, 3) != "raw") return false;
    p += 3;
    p += SkipSpace(src_, p);
    if (src_.substr(p, 3) == "-%}") {
      p += 3;
      *end = p + SkipSpace(src_, p);
      return true;
    }
    if (src_.substr(p, 2) == "%}") {
      *end = p + 2;
      return true;
    }
    return false;
  }

  void LexRaw(size_t from) {
    for (size_t k = src_.find("{%", from); k != std::string_view::npos;
         k = src_.find("{%", k + 1)) {
      size_t p = k + 2;
      char sign = '\0';
      if (p < src_.size() && (src_[p] == '-' || src_[p] == '+')) sign = src_[p++];
      p += SkipSpace(src_, p);
      if (src_.substr(p, 6) != "endraw") continue;
      p += 6;
      p += SkipSpace(src_, p);
      size_t end;
      if (src_.substr(p, 3) == "+%}") {
        end = p + 3;
      } else if (src_.substr(p, 3) == "-%}") {
        end = p + 3 + SkipSpace(src_, p + 3);
      } else if (src_.substr(p, 2) == "%}") {
        end = p + 2 + (p + 2 < src_.size() && src_[p + 2] == '\n' ? 1 : 0);
      } else {
        continue;
      }
      const std::string_view body = src_.substr(from, k - from);
      EmitData(StripText(body, sign, true));
      line_ += CountNewlines(src_.substr(from, end - from));
      line_starting_ = src_[end - 1] == '\n';
      pos_ = end;
      return;
    }
    SyntaxError("Missing end of raw directive", line_);
  }

  void LexComment(size_t from) {
    const int start_line = line_;
    size_t q = src_.find("#}", from);
    if (q == std::string_view::npos) SyntaxError("Missing end of comment tag", start_line);
    size_t end;
    if (q > from && src_[q - 1] == '-') {
      end = q + 2 + SkipSpace(src_, q + 2);
    } else if (q > from && src_[q - 1] == '+') {
      end = q + 2;
    } else {
      end = q + 2 + (q + 2 < src_.size() && src_[q + 2] == '\n' ? 1 : 0);
    }
    line_ += CountNewlines(src_.substr(from, end - from));
    line_starting_ = src_[end - 1] == '\n';
    pos_ = end;
  }

  // Matches the end of a tag at pos_ (only when brackets are balanced).
  bool MatchTagEnd(bool variable) {
    const std::string_view rest = src_.substr(pos_);
    size_t end = 0;
    if (variable) {
      if (rest.substr(0, 3) == "-}}") {
        end = 3 + SkipSpace(rest, 3);
      } else if (rest.substr(0, 2) == "}}") {
        end = 2;
      }
    } else {
      if (rest.substr(0, 3) == "+%}") {
        end = 3;
      } else if (rest.substr(0, 3) == "-%}") {
        end = 3 + SkipSpace(rest, 3);
      } else if (rest.substr(0, 2) == "%}") {
        end = 2 + (rest.size() > 2 && rest[2] == '\n' ? 1 : 0);
      }
    }
    if (!end) return false;
    Emit(variable ? TokenType::kVarEnd : TokenType::kBlockEnd, "", line_);
    line_ += CountNewlines(rest.substr(0, end));
    line_starting_ = rest[end - 1] == '\n';
    pos_ += end;
    return true;
  }

  void LexTag(bool variable, size_t from) {
    Emit(variable ? TokenType::kVarBegin : TokenType::kBlockBegin, "", line_);
    pos_ = from;
    std::vector<char> balance;
    while (pos_ < src_.size()) {
      if (balance.empty() && MatchTagEnd(variable)) return;
      if (const size_t ws = SkipSpace(src_, pos_)) {
        line_ += CountNewlines(src_.substr(pos_, ws));
        pos_ += ws;
        continue;
      }
      const char c = src_[pos_];
      if (IsDigit(c)) {
        LexNumber();
      } else if (IsNameStart(c)) {
        const size_t start = pos_;
        while (pos_ < src_.size() && IsNameChar(src_[pos_])) ++pos_;
        Emit(TokenType::kName, std::string(src_.substr(start, pos_ - start)), line_);
      } else if (c == '\'' || c == '"') {
        LexString(c);
      } else {
        LexOperator(balance);
      }
    }
    line_starting_ = false;
  }

  void LexNumber() {
    const size_t start = pos_;
    auto digits = [&] {
      // (\d+_)*\d+
      const size_t begin = pos_;
      while (pos_ < src_.size() &&
             (IsDigit(src_[pos_]) || (src_[pos_] == '_' && pos_ + 1 < src_.size() &&
                                      IsDigit(src_[pos_ + 1]) && pos_ > begin))) {
        ++pos_;
      }
      return pos_ > begin;
    };
    if (src_[pos_] == '0' && pos_ + 1 < src_.size() &&
        std::string_view("xXoObB").find(src_[pos_ + 1]) != std::string_view::npos) {
      LexRadixInt();
      return;
    }
    digits();
    bool is_float = false;
    if (pos_ + 1 < src_.size() && src_[pos_] == '.' && IsDigit(src_[pos_ + 1])) {
      ++pos_;
      digits();
      is_float = true;
    }
    if (pos_ < src_.size() && (src_[pos_] == 'e' || src_[pos_] == 'E')) {
      size_t p = pos_ + 1;
      if (p < src_.size() && (src_[p] == '+' || src_[p] == '-')) ++p;
      if (p < src_.size() && IsDigit(src_[p])) {
        pos_ = p;
        digits();
        is_float = true;
      }
    }
    std::string text;
    for (char ch : src_.substr(start, pos_ - start)) {
      if (ch != '_') text += ch;
    }
    Token tok{is_float ? TokenType::kFloat : TokenType::kInt, text, line_};
    if (is_float) {
      tok.float_value = std::strtod(text.c_str(), nullptr);
    } else {
      if (text.size() > 1 && text[0] == '0' && text.find_first_not_of('0') != std::string::npos) {
        // jinja2 lexes "012" as 0 and 12, which no grammar accepts.
        SyntaxError(absl::StrCat("unexpected integer literal '", text, "'"), line_);
      }
      errno = 0;
      tok.int_value = std::strtoll(text.c_str(), nullptr, 10);
      if (errno == ERANGE) {
        throw Error(ErrorKind::kUnsupported,
                    absl::StrCat("integer literal ", text, " does not fit in 64 bits"), line_);
      }
    }
    tokens_.push_back(std::move(tok));
  }

  void LexRadixInt() {
    const char r = static_cast<char>(src_[pos_ + 1] | 0x20);
    const int base = r == 'x' ? 16 : r == 'o' ? 8 : 2;
    const size_t start = pos_;
    pos_ += 2;
    std::string digits;
    while (pos_ < src_.size() &&
           (std::isxdigit(static_cast<unsigned char>(src_[pos_])) || src_[pos_] == '_')) {
      if (src_[pos_] != '_') digits += src_[pos_];
      ++pos_;
    }
    char* end = nullptr;
    errno = 0;
    const long long v = digits.empty() ? 0 : std::strtoll(digits.c_str(), &end, base);
    if (digits.empty() || *end != '\0' || errno == ERANGE) {
      SyntaxError(
          absl::StrCat("invalid integer literal '", AV(src_.substr(start, pos_ - start)), "'"),
          line_);
    }
    Token tok{TokenType::kInt, std::string(src_.substr(start, pos_ - start)), line_};
    tok.int_value = v;
    tokens_.push_back(std::move(tok));
  }

  void LexString(char quote) {
    const int start_line = line_;
    size_t p = pos_ + 1;
    while (p < src_.size() && src_[p] != quote) {
      if (src_[p] == '\\') ++p;
      ++p;
    }
    if (p >= src_.size()) {
      SyntaxError(absl::StrCat("unexpected char '", std::string(1, quote), "' at ", pos_),
                  start_line);
    }
    const std::string_view body = src_.substr(pos_ + 1, p - pos_ - 1);
    Emit(TokenType::kString, Unescape(body, start_line), start_line);
    line_ += CountNewlines(body);
    pos_ = p + 1;
  }

  void LexOperator(std::vector<char>& balance) {
    static constexpr std::string_view kTwo[] = {"//", "**", "==", "!=", ">=", "<="};
    for (std::string_view op : kTwo) {
      if (src_.substr(pos_, 2) == op) {
        Emit(TokenType::kOp, std::string(op), line_);
        pos_ += 2;
        return;
      }
    }
    const char c = src_[pos_];
    if (std::string_view("+-/*%~[](){}><=.:|,;").find(c) == std::string_view::npos) {
      char32_t cp;
      DecodeUtf8(src_, pos_, &cp);
      std::string shown;
      AppendUtf8(shown, cp);
      SyntaxError(absl::StrCat("unexpected char '", shown, "' at ", pos_), line_);
    }
    if (c == '(' || c == '[' || c == '{') {
      balance.push_back(c == '(' ? ')' : c == '[' ? ']' : '}');
    } else if (c == ')' || c == ']' || c == '}') {
      if (balance.empty()) SyntaxError(absl::StrCat("unexpected '", std::string(1, c), "'"), line_);
      if (balance.back() != c) {
        SyntaxError(absl::StrCat("unexpected '", std::string(1, c), "', expected '",
                                 std::string(1, balance.back()), "'"),
                    line_);
      }
      balance.pop_back();
    }
    Emit(TokenType::kOp, std::string(1, c), line_);
    ++pos_;
  }

  std::string_view src_;
  size_t pos_ = 0;
  int line_ = 1;
  bool line_starting_ = true;
  std::vector<Token> tokens_;
};

}  // namespace

std::vector<Token> Tokenize(std::string_view source) {
  const std::string normalized = NormalizeNewlines(source);
  return Lexer(normalized).Run();
}

std::string DescribeToken(const Token& token) {
  switch (token.type) {
    case TokenType::kData:
      return "template data / text";
    case TokenType::kVarBegin:
      return "begin of print statement";
    case TokenType::kVarEnd:
      return "end of print statement";
    case TokenType::kBlockBegin:
      return "begin of statement block";
    case TokenType::kBlockEnd:
      return "end of statement block";
    case TokenType::kName:
    case TokenType::kOp:
      return token.value;
    case TokenType::kString:
      return "string";
    case TokenType::kInt:
      return "integer";
    case TokenType::kFloat:
      return "float";
    case TokenType::kEof:
      return "end of template";
  }
  return "token";
}

}  // namespace para::text::jinja
