#include "engine/text/normalizers.h"

#include <unicode/normalizer2.h>
#include <unicode/uniset.h>
#include <unicode/unistr.h>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "common/status_macros.h"
#include "engine/text/pattern.h"
#include "engine/text/unicode.h"

namespace para::text {
namespace {

enum class Form { kNFC, kNFD, kNFKC, kNFKD };

class UnicodeNormalizer final : public Normalizer {
 public:
  explicit UnicodeNormalizer(const icu::Normalizer2* n) : n_(n) {}

  void Normalize(NormalizedString* s) const override {
    UErrorCode status = U_ZERO_ERROR;
    const std::string& text = s->get();
    if (n_->isNormalizedUTF8(text, status) && U_SUCCESS(status)) return;
    // Normalizes segment by segment (a segment starts at each normalization boundary), so that
    // every output character can be aligned with the first input character of its segment.
    std::string out;
    std::vector<uint32_t> align;
    out.reserve(text.size() + text.size() / 4);
    align.reserve(out.capacity());
    const std::vector<uint32_t>& old_align = s->alignments();
    size_t seg = 0;
    auto flush = [&](size_t end) {
      if (end == seg) return;
      std::string_view piece(text.data() + seg, end - seg);
      UErrorCode st = U_ZERO_ERROR;
      icu::UnicodeString normalized = n_->normalize(icu::UnicodeString::fromUTF8(piece), st);
      const size_t before = out.size();
      if (U_SUCCESS(st)) {
        normalized.toUTF8String(out);
      } else {
        out.append(piece);
      }
      align.insert(align.end(), out.size() - before, old_align[seg]);
      seg = end;
    };
    for (size_t i = 0; i < text.size(); i += Utf8CharLen(static_cast<unsigned char>(text[i]))) {
      if (i > 0 && n_->hasBoundaryBefore(static_cast<UChar32>(DecodeUtf8At(text, i)))) flush(i);
    }
    flush(text.size());
    s->Assign(std::move(out), std::move(align));
  }

 private:
  const icu::Normalizer2* n_;
};

class Lowercase final : public Normalizer {
 public:
  void Normalize(NormalizedString* s) const override {
    std::vector<NormalizedString::Change> dest;
    dest.reserve(s->size());
    std::string lower;
    const std::string& text = s->get();
    for (size_t i = 0; i < text.size(); i += Utf8CharLen(static_cast<unsigned char>(text[i]))) {
      lower.clear();
      AppendLowercase(DecodeUtf8At(text, i), &lower);
      int index = 0;
      for (char32_t c : DecodeUtf8(lower)) dest.push_back({c, index++ > 0 ? 1 : 0});
    }
    s->Transform(dest, 0);
  }
};

class Strip final : public Normalizer {
 public:
  Strip(bool left, bool right) : left_(left), right_(right) {}

  void Normalize(NormalizedString* s) const override {
    const std::vector<char32_t> chars = DecodeUtf8(s->get());
    size_t leading = 0, trailing = 0;
    if (left_) {
      while (leading < chars.size() && IsWhitespace(chars[leading])) ++leading;
    }
    if (right_) {
      while (trailing < chars.size() && IsWhitespace(chars[chars.size() - 1 - trailing])) {
        ++trailing;
      }
    }
    if (leading == 0 && trailing == 0) return;
    // As `tokenizers` does, the character whose index equals the byte length minus the trailing
    // count minus one carries the removal of the trailing characters (this only moves alignments).
    std::vector<NormalizedString::Change> dest;
    const size_t count = chars.size();
    for (size_t i = 0; i < count; ++i) {
      if (i < leading || i + trailing >= count) continue;
      const bool carries = s->size() >= trailing + 1 && i == s->size() - trailing - 1;
      dest.push_back({chars[i], carries ? -static_cast<int>(trailing) : 0});
    }
    s->Transform(dest, leading);
  }

 private:
  bool left_, right_;
};

class Replace final : public Normalizer {
 public:
  Replace(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void Normalize(NormalizedString* s) const override {
    s->Replace(pattern_.FindMatches(s->get()), content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class Prepend final : public Normalizer {
 public:
  explicit Prepend(std::string prepend) : prepend_(std::move(prepend)) {}
  void Normalize(NormalizedString* s) const override { s->Prepend(prepend_); }

 private:
  std::string prepend_;
};

class Sequence final : public Normalizer {
 public:
  explicit Sequence(std::vector<std::unique_ptr<Normalizer>> items) : items_(std::move(items)) {}
  void Normalize(NormalizedString* s) const override {
    for (const auto& n : items_) n->Normalize(s);
  }

 private:
  std::vector<std::unique_ptr<Normalizer>> items_;
};

// `tokenizers` normalizes with the data of Unicode 9.0 (its unicode-normalization-alignments
// crate): characters assigned later pass through unchanged. ICU's normalizer restricted to the
// characters of Unicode 9.0 gives the same results.
absl::StatusOr<std::unique_ptr<Normalizer>> MakeUnicode(Form form, const std::string& path) {
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* n = nullptr;
  switch (form) {
    case Form::kNFC:
      n = icu::Normalizer2::getNFCInstance(status);
      break;
    case Form::kNFD:
      n = icu::Normalizer2::getNFDInstance(status);
      break;
    case Form::kNFKC:
      n = icu::Normalizer2::getNFKCInstance(status);
      break;
    case Form::kNFKD:
      n = icu::Normalizer2::getNFKDInstance(status);
      break;
  }
  static icu::UnicodeSet* unicode9 = [] {
    UErrorCode st = U_ZERO_ERROR;
    auto* set = new icu::UnicodeSet(icu::UnicodeString("[:age=9.0:]", -1, US_INV), st);
    if (U_FAILURE(st)) return static_cast<icu::UnicodeSet*>(nullptr);
    set->freeze();
    return set;
  }();
  if (U_FAILURE(status) || n == nullptr || unicode9 == nullptr) {
    return JsonError(path, absl::StrCat("ICU normalizer unavailable: ", u_errorName(status)));
  }
  // One filtered normalizer per form, shared by every tokenizer (immutable, thread-safe).
  static icu::FilteredNormalizer2* filtered[4] = {};
  static absl::Mutex mu(absl::kConstInit);
  icu::FilteredNormalizer2* f;
  {
    absl::MutexLock lock(&mu);
    auto& slot = filtered[static_cast<int>(form)];
    if (slot == nullptr) slot = new icu::FilteredNormalizer2(*n, *unicode9);
    f = slot;
  }
  return std::unique_ptr<Normalizer>(new UnicodeNormalizer(f));
}

}  // namespace

absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& j,
                                                            const std::string& path) {
  if (j.is_null()) return std::unique_ptr<Normalizer>();
  ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "NFC") return MakeUnicode(Form::kNFC, path);
  if (type == "NFD") return MakeUnicode(Form::kNFD, path);
  if (type == "NFKC") return MakeUnicode(Form::kNFKC, path);
  if (type == "NFKD") return MakeUnicode(Form::kNFKD, path);
  if (type == "Lowercase") return std::unique_ptr<Normalizer>(new Lowercase());
  if (type == "Strip") {
    ASSIGN_OR_RETURN(const bool left, GetBool(j, "strip_left", path, true));
    ASSIGN_OR_RETURN(const bool right, GetBool(j, "strip_right", path, true));
    return std::unique_ptr<Normalizer>(new Strip(left, right));
  }
  if (type == "Replace") {
    const Json* pattern = FindField(j, "pattern");
    if (pattern == nullptr) return JsonError(JsonChild(path, "pattern"), "missing");
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(*pattern, JsonChild(path, "pattern")));
    ASSIGN_OR_RETURN(std::string content, GetString(j, "content", path));
    return std::unique_ptr<Normalizer>(new Replace(std::move(p), std::move(content)));
  }
  if (type == "Prepend") {
    ASSIGN_OR_RETURN(std::string prepend, GetString(j, "prepend", path));
    return std::unique_ptr<Normalizer>(new Prepend(std::move(prepend)));
  }
  if (type == "Sequence") {
    const std::string items_path = JsonChild(path, "normalizers");
    ASSIGN_OR_RETURN(const Json* items, GetArray(j, "normalizers", path));
    std::vector<std::unique_ptr<Normalizer>> parsed;
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string item_path = JsonIndex(items_path, i);
      if ((*items)[i].is_null()) return JsonError(item_path, "null normalizer in a Sequence");
      ASSIGN_OR_RETURN(auto n, ParseNormalizer((*items)[i], item_path));
      parsed.push_back(std::move(n));
    }
    return std::unique_ptr<Normalizer>(new Sequence(std::move(parsed)));
  }
  return JsonError(JsonChild(path, "type"),
                   absl::StrCat("unsupported normalizer type '", type,
                                "' (supported: NFC, NFD, NFKC, NFKD, Lowercase, Strip, Replace, "
                                "Prepend, Sequence)"));
}

}  // namespace para::text
