#include "engine/text/decoders.h"

#include <optional>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/status_macros.h"
#include "engine/text/byte_level.h"
#include "engine/text/pattern.h"
#include "engine/text/unicode.h"

namespace para::text {
namespace {

// The byte of a "<0xNN>" token as `tokenizers` reads it (six bytes, two radix-16 digits, where
// Rust's parser also takes a '+' sign before a single digit).
std::optional<uint8_t> ByteToken(std::string_view t) {
  if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>') return std::nullopt;
  auto digit = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  const int lo = digit(t[4]);
  if (lo < 0) return std::nullopt;
  if (t[3] == '+') return static_cast<uint8_t>(lo);
  const int hi = digit(t[3]);
  if (hi < 0) return std::nullopt;
  return static_cast<uint8_t>(hi * 16 + lo);
}

std::string ReplaceAll(const Pattern& pattern, const std::string& text, const std::string& with) {
  std::string out;
  for (const Span& s : pattern.FindMatches(text)) {
    if (s.is_match) {
      out += with;
    } else {
      out.append(text, s.begin, s.end - s.begin);
    }
  }
  return out;
}

class ByteLevelDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::string bytes;
    for (const std::string& t : *tokens) bytes += ByteLevelTokenBytes(t);
    *tokens = {Utf8Lossy(bytes)};
  }
  void StreamToken(std::string* bytes, bool* fused) const override {
    *bytes = ByteLevelTokenBytes(*bytes);
    *fused = true;
  }
};

class MetaspaceDecoder final : public Decoder {
 public:
  MetaspaceDecoder(std::string replacement, bool drop_first)
      : replacement_(std::move(replacement)), drop_first_(drop_first) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      Replace(&(*tokens)[i], i == 0 && drop_first_ ? "" : " ");
    }
  }
  void StreamToken(std::string* bytes, bool*) const override { Replace(bytes, " "); }

 private:
  void Replace(std::string* t, std::string_view with) const {
    std::string out;
    for (size_t pos = 0;;) {
      const size_t hit = t->find(replacement_, pos);
      out.append(*t, pos, hit == std::string::npos ? std::string::npos : hit - pos);
      if (hit == std::string::npos) break;
      out += with;
      pos = hit + replacement_.size();
    }
    *t = std::move(out);
  }
  std::string replacement_;
  bool drop_first_;
};

class ByteFallbackDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    std::vector<std::string> out;
    std::string pending;  // bytes of consecutive <0xNN> tokens
    auto flush = [&] {
      if (pending.empty()) return;
      if (IsValidUtf8(pending)) {
        out.push_back(pending);
      } else {
        // One U+FFFD per byte when the run is not valid UTF-8 as a whole.
        for (size_t i = 0; i < pending.size(); ++i) out.emplace_back(kReplacementChar);
      }
      pending.clear();
    };
    for (std::string& t : *tokens) {
      if (auto b = ByteToken(t)) {
        pending.push_back(static_cast<char>(*b));
      } else {
        flush();
        out.push_back(std::move(t));
      }
    }
    flush();
    *tokens = std::move(out);
  }
  void StreamToken(std::string* bytes, bool*) const override {
    if (auto b = ByteToken(*bytes)) *bytes = std::string(1, static_cast<char>(*b));
  }
};

class FuseDecoder final : public Decoder {
 public:
  void DecodeChain(std::vector<std::string>* tokens) const override {
    *tokens = {absl::StrJoin(*tokens, "")};
  }
  void StreamToken(std::string*, bool* fused) const override { *fused = true; }
};

class StripDecoder final : public Decoder {
 public:
  StripDecoder(char32_t content, size_t start, size_t stop)
      : content_(content), start_(start), stop_(stop) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) Strip(&t);
  }
  // After a fuse, stripping concerns only the edges of the whole text.
  void StreamToken(std::string* bytes, bool* fused) const override {
    if (!*fused && IsValidUtf8(*bytes)) Strip(bytes);
  }

 private:
  void Strip(std::string* t) const {
    const std::vector<char32_t> chars = DecodeUtf8(*t);
    size_t begin = 0;
    while (begin < start_ && begin < chars.size() && chars[begin] == content_) ++begin;
    size_t end = chars.size();
    for (size_t i = 0; i < stop_ && end > begin && chars[end - 1] == content_; ++i) --end;
    std::string out;
    for (size_t i = begin; i < end; ++i) AppendUtf8(chars[i], &out);
    *t = std::move(out);
  }
  char32_t content_;
  size_t start_, stop_;
};

class ReplaceDecoder final : public Decoder {
 public:
  ReplaceDecoder(Pattern pattern, std::string content)
      : pattern_(std::move(pattern)), content_(std::move(content)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (std::string& t : *tokens) t = ReplaceAll(pattern_, t, content_);
  }
  void StreamToken(std::string* bytes, bool*) const override {
    *bytes = ReplaceAll(pattern_, *bytes, content_);
  }

 private:
  Pattern pattern_;
  std::string content_;
};

class BpeDecoder final : public Decoder {
 public:
  explicit BpeDecoder(std::string suffix) : suffix_(Pattern::Literal(suffix)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (size_t i = 0; i < tokens->size(); ++i) {
      (*tokens)[i] = ReplaceAll(suffix_, (*tokens)[i], i + 1 == tokens->size() ? "" : " ");
    }
  }
  void StreamToken(std::string* bytes, bool*) const override {
    *bytes = ReplaceAll(suffix_, *bytes, " ");
  }

 private:
  Pattern suffix_;
};

class SequenceDecoder final : public Decoder {
 public:
  explicit SequenceDecoder(std::vector<std::unique_ptr<Decoder>> items)
      : items_(std::move(items)) {}
  void DecodeChain(std::vector<std::string>* tokens) const override {
    for (const auto& d : items_) d->DecodeChain(tokens);
  }
  void StreamToken(std::string* bytes, bool* fused) const override {
    for (const auto& d : items_) d->StreamToken(bytes, fused);
  }

 private:
  std::vector<std::unique_ptr<Decoder>> items_;
};

}  // namespace

std::string DecodeTokens(const Decoder* decoder, std::vector<std::string> tokens) {
  if (decoder == nullptr) return absl::StrJoin(tokens, " ");
  decoder->DecodeChain(&tokens);
  return absl::StrJoin(tokens, "");
}

absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& j, const std::string& path) {
  if (j.is_null()) return std::unique_ptr<Decoder>();
  ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "ByteLevel") return std::unique_ptr<Decoder>(new ByteLevelDecoder());
  if (type == "Metaspace") {
    ASSIGN_OR_RETURN(std::string replacement, GetChar(j, "replacement", path, std::nullopt));
    ASSIGN_OR_RETURN(auto scheme, GetOptionalString(j, "prepend_scheme", path));
    bool never = false;
    if (scheme) {
      if (*scheme != "first" && *scheme != "never" && *scheme != "always") {
        return JsonError(
            JsonChild(path, "prepend_scheme"),
            absl::StrCat("unknown prepend_scheme '", *scheme, "' (known: first, never, always)"));
      }
      never = *scheme == "never";
    }
    ASSIGN_OR_RETURN(const bool add_prefix_space, GetBool(j, "add_prefix_space", path, true));
    if (!add_prefix_space) {
      if (scheme && !never) {
        return JsonError(JsonChild(path, "add_prefix_space"),
                         "add_prefix_space false contradicts prepend_scheme");
      }
      if (!scheme) {
        return JsonError(JsonChild(path, "add_prefix_space"),
                         "add_prefix_space false contradicts the default prepend_scheme always");
      }
    }
    return std::unique_ptr<Decoder>(new MetaspaceDecoder(std::move(replacement), !never));
  }
  if (type == "ByteFallback") return std::unique_ptr<Decoder>(new ByteFallbackDecoder());
  if (type == "Fuse") return std::unique_ptr<Decoder>(new FuseDecoder());
  if (type == "Strip") {
    ASSIGN_OR_RETURN(const std::string content, GetChar(j, "content", path, std::nullopt));
    ASSIGN_OR_RETURN(const int64_t start, GetIndex(j, "start", path, std::nullopt));
    ASSIGN_OR_RETURN(const int64_t stop, GetIndex(j, "stop", path, std::nullopt));
    return std::unique_ptr<Decoder>(new StripDecoder(DecodeUtf8At(content, 0), start, stop));
  }
  if (type == "Replace") {
    const Json* pattern = FindField(j, "pattern");
    if (pattern == nullptr) return JsonError(JsonChild(path, "pattern"), "missing");
    ASSIGN_OR_RETURN(Pattern p, ParsePattern(*pattern, JsonChild(path, "pattern")));
    ASSIGN_OR_RETURN(std::string content, GetString(j, "content", path));
    return std::unique_ptr<Decoder>(new ReplaceDecoder(std::move(p), std::move(content)));
  }
  if (type == "BPEDecoder") {
    ASSIGN_OR_RETURN(std::string suffix, GetString(j, "suffix", path));
    return std::unique_ptr<Decoder>(new BpeDecoder(std::move(suffix)));
  }
  if (type == "Sequence") {
    const std::string items_path = JsonChild(path, "decoders");
    ASSIGN_OR_RETURN(const Json* items, GetArray(j, "decoders", path));
    std::vector<std::unique_ptr<Decoder>> parsed;
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string item_path = JsonIndex(items_path, i);
      if ((*items)[i].is_null()) return JsonError(item_path, "null decoder in a Sequence");
      ASSIGN_OR_RETURN(auto d, ParseDecoder((*items)[i], item_path));
      parsed.push_back(std::move(d));
    }
    return std::unique_ptr<Decoder>(new SequenceDecoder(std::move(parsed)));
  }
  return JsonError(JsonChild(path, "type"),
                   absl::StrCat("unsupported decoder type '", type,
                                "' (supported: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, "
                                "Replace, BPEDecoder, Sequence)"));
}

}  // namespace para::text
