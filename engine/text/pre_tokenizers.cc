#include "engine/text/pre_tokenizers.h"

#include <functional>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/text/byte_level.h"
#include "engine/text/pattern.h"
#include "engine/text/unicode.h"

namespace para::text {
namespace {

// The pre-tokenization regex of GPT-2, as the ByteLevel pre-tokenizer uses it.
constexpr std::string_view kGpt2Pattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
// Whitespace's \w+|[^\w\s]+ with the classes of Rust's regex crate, in ICU syntax.
constexpr std::string_view kWhitespacePattern =
    R"([\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}]+|)"
    R"([^\p{Alphabetic}\p{M}\p{Nd}\p{Pc}\p{Join_Control}\p{White_Space}]+)";

// The spans of a character predicate: every matching character is a match of its own.
std::vector<Span> CharMatches(std::string_view text, const std::function<bool(char32_t)>& pred) {
  if (text.empty()) return {{0, 0, false}};
  std::vector<Span> spans;
  size_t last = 0;
  for (size_t i = 0; i < text.size();) {
    const size_t len = Utf8CharLen(static_cast<unsigned char>(text[i]));
    if (pred(DecodeUtf8At(text, i))) {
      if (last < i) spans.push_back({last, i, false});
      spans.push_back({i, i + len, true});
      last = i + len;
    }
    i += len;
  }
  if (last < text.size()) spans.push_back({last, text.size(), false});
  return spans;
}

std::vector<Span> Inverted(std::vector<Span> spans) {
  for (Span& s : spans) s.is_match = !s.is_match;
  return spans;
}

class SplitPre final : public PreTokenizer {
 public:
  SplitPre(Pattern pattern, SplitBehavior behavior, bool invert)
      : pattern_(std::move(pattern)), behavior_(behavior), invert_(invert) {}
  void PreTokenize(std::vector<Piece>* pieces) const override {
    SplitPieces(pieces, [&](NormalizedString s) {
      auto spans = pattern_.FindMatches(s.get());
      if (invert_) spans = Inverted(std::move(spans));
      return s.Split(spans, behavior_);
    });
  }

 private:
  Pattern pattern_;
  SplitBehavior behavior_;
  bool invert_;
};

class CharSplit final : public PreTokenizer {
 public:
  using Step = std::pair<std::function<bool(char32_t)>, SplitBehavior>;
  explicit CharSplit(std::vector<Step> steps) : steps_(std::move(steps)) {}
  void PreTokenize(std::vector<Piece>* pieces) const override {
    for (const Step& step : steps_) {
      SplitPieces(pieces, [&](NormalizedString s) {
        return s.Split(CharMatches(s.get(), step.first), step.second);
      });
    }
  }

 private:
  std::vector<Step> steps_;
};

class ByteLevelPre final : public PreTokenizer {
 public:
  ByteLevelPre(bool add_prefix_space, std::optional<Pattern> regex)
      : add_prefix_space_(add_prefix_space), regex_(std::move(regex)) {}

  void PreTokenize(std::vector<Piece>* pieces) const override {
    SplitPieces(pieces, [&](NormalizedString s) {
      if (add_prefix_space_ && (s.empty() || s.get()[0] != ' ')) s.Prepend(" ");
      if (!regex_) return std::vector<NormalizedString>{std::move(s)};
      return s.Split(regex_->FindMatches(s.get()), SplitBehavior::kIsolated);
    });
    for (Piece& p : *pieces) {
      if (p.id >= 0) continue;
      const std::string& text = p.normalized.get();
      std::vector<NormalizedString::Change> dest;
      dest.reserve(text.size());
      for (size_t i = 0; i < text.size();) {
        const size_t len = Utf8CharLen(static_cast<unsigned char>(text[i]));
        for (size_t k = 0; k < len; ++k) {
          dest.push_back({ByteToChar(static_cast<uint8_t>(text[i + k])), k > 0 ? 1 : 0});
        }
        i += len;
      }
      p.normalized.Transform(dest, 0);
    }
  }

 private:
  bool add_prefix_space_;
  std::optional<Pattern> regex_;
};

enum class PrependScheme { kFirst, kNever, kAlways };

class MetaspacePre final : public PreTokenizer {
 public:
  MetaspacePre(std::string replacement, PrependScheme scheme, bool split)
      : replacement_(std::move(replacement)),
        space_(Pattern::Literal(" ")),
        marker_(Pattern::Literal(replacement_)),
        scheme_(scheme),
        split_(split) {}

  void PreTokenize(std::vector<Piece>* pieces) const override {
    SplitPieces(pieces, [&](NormalizedString s) {
      s.Replace(space_.FindMatches(s.get()), replacement_);
      const bool starts_with_marker = s.get().compare(0, replacement_.size(), replacement_) == 0;
      if (!starts_with_marker && (scheme_ == PrependScheme::kAlways ||
                                  (scheme_ == PrependScheme::kFirst && s.original_start() == 0))) {
        s.Prepend(replacement_);
      }
      if (!split_) return std::vector<NormalizedString>{std::move(s)};
      return s.Split(marker_.FindMatches(s.get()), SplitBehavior::kMergedWithNext);
    });
  }

 private:
  std::string replacement_;
  Pattern space_;
  Pattern marker_;
  PrependScheme scheme_;
  bool split_;
};

class SequencePre final : public PreTokenizer {
 public:
  explicit SequencePre(std::vector<std::unique_ptr<PreTokenizer>> items)
      : items_(std::move(items)) {}
  void PreTokenize(std::vector<Piece>* pieces) const override {
    for (const auto& p : items_) p->PreTokenize(pieces);
  }

 private:
  std::vector<std::unique_ptr<PreTokenizer>> items_;
};

absl::StatusOr<SplitBehavior> ParseBehavior(const Json& j, absl::string_view path,
                                            std::optional<SplitBehavior> fallback) {
  if (FindField(j, "behavior") == nullptr && fallback) return *fallback;
  ASSIGN_OR_RETURN(const std::string b, GetString(j, "behavior", path));
  if (b == "Removed") return SplitBehavior::kRemoved;
  if (b == "Isolated") return SplitBehavior::kIsolated;
  if (b == "MergedWithPrevious") return SplitBehavior::kMergedWithPrevious;
  if (b == "MergedWithNext") return SplitBehavior::kMergedWithNext;
  if (b == "Contiguous") return SplitBehavior::kContiguous;
  return JsonError(JsonChild(path, "behavior"),
                   absl::StrCat("unknown split behavior '", b,
                                "' (known: Removed, Isolated, MergedWithPrevious, MergedWithNext, "
                                "Contiguous)"));
}

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParseMetaspace(const Json& j,
                                                             const std::string& path) {
  ASSIGN_OR_RETURN(std::string replacement, GetChar(j, "replacement", path, std::nullopt));
  PrependScheme scheme = PrependScheme::kAlways;
  ASSIGN_OR_RETURN(auto scheme_name, GetOptionalString(j, "prepend_scheme", path));
  if (scheme_name) {
    if (*scheme_name == "first") {
      scheme = PrependScheme::kFirst;
    } else if (*scheme_name == "never") {
      scheme = PrependScheme::kNever;
    } else if (*scheme_name == "always") {
      scheme = PrependScheme::kAlways;
    } else {
      return JsonError(JsonChild(path, "prepend_scheme"),
                       absl::StrCat("unknown prepend_scheme '", *scheme_name,
                                    "' (known: first, never, always)"));
    }
  }
  // The older spelling: add_prefix_space false means never.
  if (const Json* aps = FindField(j, "add_prefix_space"); aps != nullptr) {
    ASSIGN_OR_RETURN(const bool add, GetBool(j, "add_prefix_space", path, std::nullopt));
    if (!add) {
      if (scheme != PrependScheme::kNever && scheme_name) {
        return JsonError(JsonChild(path, "add_prefix_space"),
                         "add_prefix_space false contradicts prepend_scheme");
      }
      if (scheme != PrependScheme::kNever && !scheme_name) {
        return JsonError(JsonChild(path, "add_prefix_space"),
                         "add_prefix_space false contradicts the default prepend_scheme always");
      }
      scheme = PrependScheme::kNever;
    }
  }
  ASSIGN_OR_RETURN(const bool split, GetBool(j, "split", path, true));
  return std::unique_ptr<PreTokenizer>(new MetaspacePre(std::move(replacement), scheme, split));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& j,
                                                                const std::string& path) {
  if (j.is_null()) return std::unique_ptr<PreTokenizer>();
  ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "Split") {
    const Json* pattern = FindField(j, "pattern");
    if (pattern == nullptr) return JsonError(JsonChild(path, "pattern"), "missing");
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(*pattern, JsonChild(path, "pattern")));
    ASSIGN_OR_RETURN(const SplitBehavior behavior, ParseBehavior(j, path, std::nullopt));
    ASSIGN_OR_RETURN(const bool invert, GetBool(j, "invert", path, false));
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(p), behavior, invert));
  }
  if (type == "ByteLevel") {
    ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(j, "add_prefix_space", path, true));
    ASSIGN_OR_RETURN(const bool use_regex, GetBool(j, "use_regex", path, true));
    ASSIGN_OR_RETURN(const bool trim_offsets, GetBool(j, "trim_offsets", path, true));
    (void)trim_offsets;  // offsets only
    std::optional<Pattern> regex;
    if (use_regex) {
      ASSIGN_OR_RETURN(Pattern p, Pattern::Regex(kGpt2Pattern));
      regex = std::move(p);
    }
    return std::unique_ptr<PreTokenizer>(new ByteLevelPre(add_prefix_space, std::move(regex)));
  }
  if (type == "Metaspace") return ParseMetaspace(j, path);
  if (type == "Digits") {
    ASSIGN_OR_RETURN(const bool individual, GetBool(j, "individual_digits", path, false));
    return std::unique_ptr<PreTokenizer>(new CharSplit(
        {{IsNumeric, individual ? SplitBehavior::kIsolated : SplitBehavior::kContiguous}}));
  }
  if (type == "Whitespace") {
    ASSIGN_OR_RETURN(Pattern p, Pattern::IcuRegex(kWhitespacePattern));
    return std::unique_ptr<PreTokenizer>(new SplitPre(std::move(p), SplitBehavior::kRemoved, true));
  }
  if (type == "WhitespaceSplit") {
    return std::unique_ptr<PreTokenizer>(new CharSplit({{IsWhitespace, SplitBehavior::kRemoved}}));
  }
  if (type == "Punctuation") {
    ASSIGN_OR_RETURN(const SplitBehavior behavior,
                     ParseBehavior(j, path, SplitBehavior::kIsolated));
    return std::unique_ptr<PreTokenizer>(new CharSplit({{IsPunctuation, behavior}}));
  }
  if (type == "BertPreTokenizer") {
    return std::unique_ptr<PreTokenizer>(new CharSplit(
        {{IsWhitespace, SplitBehavior::kRemoved}, {IsPunctuation, SplitBehavior::kIsolated}}));
  }
  if (type == "CharDelimiterSplit") {
    ASSIGN_OR_RETURN(const std::string delimiter, GetChar(j, "delimiter", path, std::nullopt));
    const char32_t d = DecodeUtf8At(delimiter, 0);
    return std::unique_ptr<PreTokenizer>(
        new CharSplit({{[d](char32_t c) { return c == d; }, SplitBehavior::kRemoved}}));
  }
  if (type == "Sequence") {
    const std::string items_path = JsonChild(path, "pretokenizers");
    ASSIGN_OR_RETURN(const Json* items, GetArray(j, "pretokenizers", path));
    std::vector<std::unique_ptr<PreTokenizer>> parsed;
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string item_path = JsonIndex(items_path, i);
      if ((*items)[i].is_null()) return JsonError(item_path, "null pre-tokenizer in a Sequence");
      ASSIGN_OR_RETURN(auto p, ParsePreTokenizer((*items)[i], item_path));
      parsed.push_back(std::move(p));
    }
    return std::unique_ptr<PreTokenizer>(new SequencePre(std::move(parsed)));
  }
  return JsonError(
      JsonChild(path, "type"),
      absl::StrCat(
          "unsupported pre-tokenizer type '", type,
          "' (supported: Split, ByteLevel, Metaspace, Digits, Whitespace, "
          "WhitespaceSplit, Punctuation, CharDelimiterSplit, BertPreTokenizer, Sequence)"));
}

}  // namespace para::text
