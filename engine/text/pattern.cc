#include "engine/text/pattern.h"

#include <unicode/regex.h>
#include <unicode/utext.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "engine/text/unicode.h"

namespace para::text {

struct Pattern::Compiled {
  std::unique_ptr<icu::RegexPattern> pattern;
};

std::string TranslateOnigurumaToIcu(std::string_view p) {
  // Oniguruma's classes as the `tokenizers` library compiles them (UTF-8, Unicode classes).
  constexpr absl::string_view kSpace = "\\p{White_Space}";
  constexpr absl::string_view kNotSpace = "\\P{White_Space}";
  constexpr absl::string_view kWord = "\\p{L}\\p{M}\\p{N}\\p{Pc}";
  std::string out;
  int class_depth = 0;
  for (size_t i = 0; i < p.size(); ++i) {
    const char c = p[i];
    if (c == '\\' && i + 1 < p.size()) {
      const char e = p[++i];
      const bool in_class = class_depth > 0;
      switch (e) {
        case 's':
          absl::StrAppend(&out, kSpace);
          break;
        case 'S':
          absl::StrAppend(&out, kNotSpace);
          break;
        case 'w':
          absl::StrAppend(&out, in_class ? "" : "[", kWord, in_class ? "" : "]");
          break;
        case 'W':
          absl::StrAppend(&out, "[^", kWord, "]");
          break;
        default:
          out.push_back('\\');
          out.push_back(e);
      }
      continue;
    }
    if (c == '[') {
      ++class_depth;
    } else if (c == ']' && class_depth > 0) {
      --class_depth;
    }
    out.push_back(c);
  }
  return out;
}

absl::StatusOr<Pattern> Pattern::Regex(std::string_view pattern) {
  auto p = IcuRegex(TranslateOnigurumaToIcu(pattern));
  if (!p.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid regex '", AbslView(pattern), "': ", p.status().message()));
  }
  return p;
}

absl::StatusOr<Pattern> Pattern::IcuRegex(std::string_view icu_pattern) {
  Pattern result;
  result.icu_pattern_ = std::string(icu_pattern);
  UErrorCode status = U_ZERO_ERROR;
  UParseError parse_error;
  const icu::UnicodeString source = icu::UnicodeString::fromUTF8(result.icu_pattern_);
  auto compiled = std::unique_ptr<icu::RegexPattern>(icu::RegexPattern::compile(
      source, UREGEX_MULTILINE | UREGEX_UNIX_LINES, parse_error, status));
  if (U_FAILURE(status) || compiled == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("ICU cannot compile '", AbslView(icu_pattern),
                                                   "': ", u_errorName(status), " at offset ",
                                                   parse_error.offset));
  }
  auto holder = std::make_shared<Compiled>();
  holder->pattern = std::move(compiled);
  result.regex_ = std::move(holder);
  return result;
}

Pattern Pattern::Literal(std::string_view literal) {
  Pattern result;
  result.literal_ = std::string(literal);
  return result;
}

void Pattern::FindRegex(std::string_view text, std::vector<std::pair<size_t, size_t>>* out) const {
  UErrorCode status = U_ZERO_ERROR;
  UText* ut = utext_openUTF8(nullptr, text.data(), static_cast<int64_t>(text.size()), &status);
  std::unique_ptr<icu::RegexMatcher> matcher(regex_->pattern->matcher(status));
  if (U_FAILURE(status)) {
    utext_close(ut);
    return;
  }
  matcher->reset(ut);
  int64_t last_end = -1;
  while (matcher->find(status) && U_SUCCESS(status)) {
    const int64_t s = matcher->start64(status);
    const int64_t e = matcher->end64(status);
    if (s == e && s == last_end) continue;  // no empty match right after a match
    out->emplace_back(static_cast<size_t>(s), static_cast<size_t>(e));
    last_end = e;
  }
  matcher.reset();
  utext_close(ut);
}

void Pattern::FindLiteral(std::string_view text,
                          std::vector<std::pair<size_t, size_t>>* out) const {
  if (literal_.empty()) {  // an empty match at every character boundary
    for (size_t i = 0; i <= text.size(); ++i) {
      if (i == text.size() || (static_cast<unsigned char>(text[i]) & 0xC0) != 0x80) {
        out->emplace_back(i, i);
      }
    }
    return;
  }
  for (size_t pos = text.find(literal_); pos != std::string_view::npos;
       pos = text.find(literal_, pos + literal_.size())) {
    out->emplace_back(pos, pos + literal_.size());
  }
}

std::vector<Span> Pattern::FindMatches(std::string_view text) const {
  if (text.empty()) return {{0, 0, false}};
  std::vector<std::pair<size_t, size_t>> found;
  if (regex_) {
    FindRegex(text, &found);
  } else {
    FindLiteral(text, &found);
  }
  std::vector<Span> spans;
  spans.reserve(2 * found.size() + 1);
  size_t prev = 0;
  for (const auto& [s, e] : found) {
    if (prev != s) spans.push_back({prev, s, false});
    spans.push_back({s, e, true});
    prev = e;
  }
  if (prev != text.size()) spans.push_back({prev, text.size(), false});
  return spans;
}

absl::StatusOr<Pattern> ParsePattern(const Json& j, const std::string& path) {
  if (!j.is_object() || j.size() != 1) {
    return JsonError(path, "expected {\"String\": ...} or {\"Regex\": ...}");
  }
  if (auto s = FindField(j, "String"); s != nullptr && s->is_string()) {
    return Pattern::Literal(s->get<std::string>());
  }
  if (auto r = FindField(j, "Regex"); r != nullptr && r->is_string()) {
    auto p = Pattern::Regex(r->get<std::string>());
    if (!p.ok()) return JsonError(JsonChild(path, "Regex"), p.status().message());
    return p;
  }
  return JsonError(path, "expected {\"String\": \"...\"} or {\"Regex\": \"...\"}");
}

}  // namespace para::text
