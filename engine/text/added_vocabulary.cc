#include "engine/text/added_vocabulary.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/text/unicode.h"

namespace para::text {
namespace {

bool SameToken(const AddedToken& a, const AddedToken& b) {
  return a.content == b.content && a.single_word == b.single_word && a.lstrip == b.lstrip &&
         a.rstrip == b.rstrip && a.normalized == b.normalized && a.special == b.special;
}

// Start of the run of whitespace that ends `s`.
size_t TrailingSpaceStart(std::string_view s) {
  size_t start = s.size();
  while (start > 0) {
    size_t i = start - 1;
    while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
    if (!IsWhitespace(DecodeUtf8At(s, i))) break;
    start = i;
  }
  return start;
}

// Length of the run of whitespace that starts `s`.
size_t LeadingSpaceLength(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && IsWhitespace(DecodeUtf8At(s, i))) {
    i += Utf8CharLen(static_cast<unsigned char>(s[i]));
  }
  return i;
}

bool EndsWithWordChar(std::string_view s) {
  if (s.empty()) return false;
  size_t i = s.size() - 1;
  while (i > 0 && (static_cast<unsigned char>(s[i]) & 0xC0) == 0x80) --i;
  return IsRegexWordChar(DecodeUtf8At(s, i));
}

bool StartsWithWordChar(std::string_view s) {
  return !s.empty() && IsRegexWordChar(DecodeUtf8At(s, 0));
}

}  // namespace

absl::Status AddedVocabulary::Trie::Insert(std::string_view pattern, int32_t id,
                                           const AddedVocabulary& vocab) {
  if (nodes.empty()) nodes.emplace_back();
  int32_t node = 0;
  for (char ch : pattern) {
    const auto b = static_cast<uint8_t>(ch);
    int32_t child = -1;
    for (const auto& [byte, to] : nodes[node].next) {
      if (byte == b) child = to;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes.size());
      nodes[node].next.emplace_back(b, child);
      nodes.emplace_back();
    }
    node = child;
  }
  // Two tokens with one pattern: the later one (in id order) is matched.
  nodes[node].token_id = id;
  first_byte[static_cast<uint8_t>(pattern[0])] = true;
  return absl::OkStatus();
}

size_t AddedVocabulary::Trie::LongestAt(std::string_view text, size_t pos, int32_t* id) const {
  size_t best = 0;
  int32_t node = 0;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    int32_t child = -1;
    for (const auto& [byte, to] : nodes[node].next) {
      if (byte == b) {
        child = to;
        break;
      }
    }
    if (child < 0) break;
    node = child;
    if (nodes[node].token_id >= 0) {
      best = i + 1 - pos;
      *id = nodes[node].token_id;
    }
  }
  return best;
}

absl::StatusOr<AddedVocabulary> AddedVocabulary::Parse(const Json* tokens, const std::string& path,
                                                       const BpeModel& model,
                                                       const Normalizer* normalizer) {
  AddedVocabulary v;
  if (tokens == nullptr) return v;
  if (!tokens->is_array()) {
    return JsonError(path, absl::StrCat("expected an array, got ", JsonTypeName(*tokens)));
  }
  auto next_id = static_cast<int32_t>(model.vocab_entries());
  for (size_t i = 0; i < tokens->size(); ++i) {
    const Json& t = (*tokens)[i];
    const std::string tpath = JsonIndex(path, i);
    if (!t.is_object()) {
      return JsonError(tpath, absl::StrCat("expected an object, got ", JsonTypeName(t)));
    }
    AddedToken token;
    ASSIGN_OR_RETURN(token.content, GetString(t, "content", tpath));
    ASSIGN_OR_RETURN(const int64_t file_id, GetIndex(t, "id", tpath, std::nullopt));
    (void)file_id;  // `tokenizers` assigns ids itself (it only warns when they differ)
    ASSIGN_OR_RETURN(token.single_word, GetBool(t, "single_word", tpath, false));
    ASSIGN_OR_RETURN(token.lstrip, GetBool(t, "lstrip", tpath, false));
    ASSIGN_OR_RETURN(token.rstrip, GetBool(t, "rstrip", tpath, false));
    ASSIGN_OR_RETURN(token.special, GetBool(t, "special", tpath, false));
    ASSIGN_OR_RETURN(token.normalized, GetBool(t, "normalized", tpath, !token.special));
    if (!IsValidUtf8(token.content)) return JsonError(JsonChild(tpath, "content"), "invalid UTF-8");
    if (token.content.empty()) continue;
    if (auto it = v.by_content_.find(token.content); it != v.by_content_.end()) {
      if (SameToken(v.by_id_[it->second], token)) continue;
    }
    int32_t id = v.IdOf(token.content);
    if (id < 0) id = model.TokenToId(token.content);
    if (id < 0) id = next_id++;
    if (token.normalized && normalizer != nullptr) {
      NormalizedString s(token.content, 0);
      normalizer->Normalize(&s);
      if (s.get() != token.content) v.normalized_form_[id] = s.get();
    }
    v.by_content_[token.content] = id;
    if (token.special) v.special_.insert(token.content);
    v.by_id_[id] = std::move(token);
  }
  std::vector<int32_t> ids;
  for (const auto& [id, token] : v.by_id_) ids.push_back(id);
  std::sort(ids.begin(), ids.end());
  for (int32_t id : ids) {
    const AddedToken& token = v.by_id_[id];
    if (token.normalized) {
      const std::string& pattern = v.DecodeForm(id);
      if (!pattern.empty()) RETURN_IF_ERROR(v.normalized_trie_.Insert(pattern, id, v));
    } else {
      RETURN_IF_ERROR(v.raw_trie_.Insert(token.content, id, v));
    }
  }
  return v;
}

const AddedToken* AddedVocabulary::Find(int32_t id) const {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : &it->second;
}

int32_t AddedVocabulary::IdOf(std::string_view content) const {
  auto it = by_content_.find(AbslView(content));
  return it == by_content_.end() ? -1 : it->second;
}

bool AddedVocabulary::IsSpecialContent(std::string_view content) const {
  return special_.contains(AbslView(content));
}

const std::string& AddedVocabulary::DecodeForm(int32_t id) const {
  if (auto it = normalized_form_.find(id); it != normalized_form_.end()) return it->second;
  return by_id_.at(id).content;
}

int32_t AddedVocabulary::id_bound() const {
  int32_t bound = 0;
  for (const auto& [id, token] : by_id_) bound = std::max(bound, id + 1);
  return bound;
}

std::vector<AddedVocabulary::Found> AddedVocabulary::FindMatches(std::string_view s,
                                                                 const Trie& trie) const {
  if (s.empty()) return {{-1, 0, 0}};
  if (trie.empty()) return {{-1, 0, s.size()}};
  std::vector<Found> out;
  size_t start_offset = 0;
  for (size_t pos = 0; pos < s.size();) {
    int32_t id = -1;
    const size_t len =
        trie.first_byte[static_cast<uint8_t>(s[pos])] ? trie.LongestAt(s, pos, &id) : 0;
    if (len == 0) {
      ++pos;
      continue;
    }
    size_t start = pos;
    size_t stop = pos + len;
    pos = stop;  // matching resumes after the match itself, whatever lstrip/rstrip take
    const AddedToken& token = by_id_.at(id);
    if (token.single_word) {
      const bool start_space = start == 0 || !EndsWithWordChar(s.substr(0, start));
      const bool stop_space = stop == s.size() || !StartsWithWordChar(s.substr(stop));
      if (!start_space || !stop_space) continue;
    }
    if (token.lstrip) start = std::max(TrailingSpaceStart(s.substr(0, start)), start_offset);
    if (token.rstrip) stop += LeadingSpaceLength(s.substr(stop));
    if (start_offset < start) out.push_back({-1, start_offset, start});
    out.push_back({id, start, stop});
    start_offset = stop;
  }
  if (start_offset != s.size()) out.push_back({-1, start_offset, s.size()});
  return out;
}

void AddedVocabulary::SplitWith(std::vector<Piece>* pieces, const Trie& trie,
                                const Normalizer* normalizer) const {
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (Piece& p : *pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    if (normalizer != nullptr) normalizer->Normalize(&p.normalized);
    for (const Found& f : FindMatches(p.normalized.get(), trie)) {
      if (f.begin >= f.end) continue;
      out.push_back(Piece{p.normalized.Slice(f.begin, f.end), f.id});
    }
  }
  *pieces = std::move(out);
}

std::vector<Piece> AddedVocabulary::ExtractAndNormalize(std::string_view text,
                                                        const Normalizer* normalizer) const {
  std::vector<Piece> pieces;
  pieces.push_back(Piece{NormalizedString(text, 0), -1});
  SplitWith(&pieces, raw_trie_, nullptr);
  SplitWith(&pieces, normalized_trie_, normalizer);
  return pieces;
}

}  // namespace para::text
