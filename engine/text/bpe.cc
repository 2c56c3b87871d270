#include "engine/text/bpe.h"

#include <queue>

#include <nlohmann/json.hpp>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/status_macros.h"
#include "engine/text/unicode.h"

namespace para::text {
namespace {

struct Symbol {
  int32_t id;
  int32_t prev;
  int32_t next;
  uint32_t len;  // bytes of the word; 0 once merged into its left neighbour
};

struct QueuedMerge {
  uint32_t rank;
  uint32_t pos;
  int32_t new_id;
  // std::priority_queue pops the largest: the lowest rank, then the leftmost position.
  bool operator<(const QueuedMerge& o) const {
    return rank != o.rank ? rank > o.rank : pos > o.pos;
  }
};

// Parses the "merges" array: ["a b", ...] (a leading "#version" line is skipped) or [["a", "b"],
// ...].
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseMerges(
    const Json& merges, const std::string& path) {
  std::vector<std::pair<std::string, std::string>> out;
  out.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const Json& m = merges[i];
    if (m.is_string()) {
      const std::string line = m.get<std::string>();
      if (line.rfind("#version", 0) == 0) continue;
      const size_t space = line.find(' ');
      if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
        return JsonError(
            JsonIndex(path, i),
            absl::StrCat("merge '", line, "' is not two tokens separated by one space"));
      }
      out.emplace_back(line.substr(0, space), line.substr(space + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      out.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return JsonError(JsonIndex(path, i),
                       absl::StrCat("a merge must be \"a b\" or [\"a\", \"b\"], got ", m.dump()));
    }
  }
  return out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BpeModel>> BpeModel::Parse(const Json& j, const std::string& path) {
  auto m = std::unique_ptr<BpeModel>(new BpeModel());
  if (const Json* dropout = FindField(j, "dropout"); dropout != nullptr) {
    if (!dropout->is_number()) {
      return JsonError(JsonChild(path, "dropout"), "expected a number or null");
    }
    if (dropout->get<double>() != 0.0) {
      return JsonError(JsonChild(path, "dropout"),
                       absl::StrCat("BPE dropout ", dropout->dump(),
                                    " makes tokenization random; only null or 0 is supported"));
    }
  }
  ASSIGN_OR_RETURN(m->unk_token_, GetOptionalString(j, "unk_token", path));
  ASSIGN_OR_RETURN(auto prefix, GetOptionalString(j, "continuing_subword_prefix", path));
  ASSIGN_OR_RETURN(auto suffix, GetOptionalString(j, "end_of_word_suffix", path));
  m->continuing_subword_prefix_ = prefix.value_or("");
  m->end_of_word_suffix_ = suffix.value_or("");
  ASSIGN_OR_RETURN(m->fuse_unk_, GetBool(j, "fuse_unk", path, false));
  ASSIGN_OR_RETURN(m->byte_fallback_, GetBool(j, "byte_fallback", path, false));
  ASSIGN_OR_RETURN(m->ignore_merges_, GetBool(j, "ignore_merges", path, false));

  const std::string vocab_path = JsonChild(path, "vocab");
  const Json* vocab = FindField(j, "vocab");
  if (vocab == nullptr) return JsonError(vocab_path, "missing (an object token -> id is required)");
  if (!vocab->is_object()) {
    return JsonError(vocab_path, absl::StrCat("expected an object, got ", JsonTypeName(*vocab)));
  }
  m->vocab_.reserve(vocab->size());
  for (auto it = vocab->begin(); it != vocab->end(); ++it) {
    const std::string& token = it.key();
    const std::string entry_path = absl::StrCat(vocab_path, "[\"", token, "\"]");
    if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0) ||
        it->get<uint64_t>() > 0x7FFFFFFF) {
      return JsonError(entry_path, absl::StrCat("expected a non-negative id, got ", it->dump()));
    }
    const auto id = static_cast<int32_t>(it->get<uint64_t>());
    if (static_cast<size_t>(id) >= m->id_to_token_.size()) m->id_to_token_.resize(id + 1);
    if (m->id_to_token_[id]) {
      return JsonError(entry_path,
                       absl::StrCat("id ", id, " is also given to '", *m->id_to_token_[id], "'"));
    }
    m->id_to_token_[id] = token;
    m->vocab_.emplace(token, id);
  }

  ASSIGN_OR_RETURN(const Json* merges_json, GetArray(j, "merges", path));
  const std::string merges_path = JsonChild(path, "merges");
  ASSIGN_OR_RETURN(auto merges, ParseMerges(*merges_json, merges_path));
  m->merges_.reserve(merges.size());
  const std::string& pfx = m->continuing_subword_prefix_;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const std::string where = JsonIndex(merges_path, rank);
    const int32_t a_id = m->TokenToId(a);
    if (a_id < 0)
      return JsonError(where, absl::StrCat("merge names token '", a, "', not in the vocab"));
    const int32_t b_id = m->TokenToId(b);
    if (b_id < 0)
      return JsonError(where, absl::StrCat("merge names token '", b, "', not in the vocab"));
    if (!pfx.empty() && b.compare(0, pfx.size(), pfx) != 0) {
      return JsonError(where, absl::StrCat("merge right side '", b,
                                           "' lacks the continuing_subword_prefix '", pfx, "'"));
    }
    const std::string merged = a + b.substr(pfx.size());
    const int32_t new_id = m->TokenToId(merged);
    if (new_id < 0) {
      return JsonError(where, absl::StrCat("merge result '", merged, "' is not in the vocab"));
    }
    // A repeated pair takes the rank of its last occurrence, as in `tokenizers`.
    m->merges_[PairKey(a_id, b_id)] = Merge{static_cast<uint32_t>(rank), new_id};
  }

  if (m->unk_token_ && m->TokenToId(*m->unk_token_) < 0) {
    return JsonError(JsonChild(path, "unk_token"),
                     absl::StrCat("unk_token '", *m->unk_token_, "' is not in the vocab"));
  }
  if (m->unk_token_) m->unk_id_ = m->TokenToId(*m->unk_token_);
  m->byte_ids_.assign(256, -1);
  for (int b = 0; b < 256; ++b) m->byte_ids_[b] = m->TokenToId(absl::StrFormat("<0x%02X>", b));
  return m;
}

int32_t BpeModel::TokenToId(std::string_view token) const {
  auto it = vocab_.find(AbslView(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string* BpeModel::IdToToken(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_to_token_.size() || !id_to_token_[id]) {
    return nullptr;
  }
  return &*id_to_token_[id];
}

std::vector<int32_t> BpeModel::MergeWord(std::string_view w) const {
  std::vector<Symbol> symbols;
  symbols.reserve(w.size());
  auto add = [&](int32_t id, size_t len) {
    const auto n = static_cast<int32_t>(symbols.size());
    if (n > 0) symbols.back().next = n;
    symbols.push_back({id, n - 1, -1, static_cast<uint32_t>(len)});
  };
  // An unknown character waiting to be added (fused with following unknown ones if fuse_unk).
  bool unk_pending = false;
  size_t unk_len = 0;
  std::string s;
  for (size_t i = 0; i < w.size();) {
    const size_t len = Utf8CharLen(static_cast<unsigned char>(w[i]));
    const bool is_first = i == 0;
    const bool is_last = i + len >= w.size();
    s.clear();
    if (!is_first) s += continuing_subword_prefix_;
    s.append(w.substr(i, len));
    if (is_last) s += end_of_word_suffix_;
    i += len;
    if (const int32_t id = TokenToId(s); id >= 0) {
      if (unk_pending) add(unk_id_, unk_len);
      unk_pending = false;
      add(id, len);
      continue;
    }
    if (byte_fallback_) {
      bool all = true;
      for (char b : s) all = all && byte_ids_[static_cast<unsigned char>(b)] >= 0;
      if (all) {
        // As in `tokenizers`, a pending unknown is not flushed here.
        for (char b : s) add(byte_ids_[static_cast<unsigned char>(b)], 1);
        continue;
      }
    }
    if (unk_id_ >= 0) {
      if (unk_pending && fuse_unk_) {
        unk_len += len;
      } else {
        if (unk_pending) add(unk_id_, unk_len);
        unk_pending = true;
        unk_len = len;
      }
    }
  }
  if (unk_pending) add(unk_id_, unk_len);

  std::priority_queue<QueuedMerge> queue;
  auto find_merge = [&](int32_t a, int32_t b) -> const Merge* {
    auto it = merges_.find(PairKey(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  };
  for (size_t i = 0; i + 1 < symbols.size(); ++i) {
    if (const Merge* m = find_merge(symbols[i].id, symbols[i + 1].id)) {
      queue.push({m->rank, static_cast<uint32_t>(i), m->new_id});
    }
  }
  while (!queue.empty()) {
    const QueuedMerge top = queue.top();
    queue.pop();
    Symbol& cur = symbols[top.pos];
    if (cur.len == 0 || cur.next == -1) continue;
    const Symbol right = symbols[cur.next];
    const Merge* still = find_merge(cur.id, right.id);
    if (still == nullptr || still->new_id != top.new_id) continue;  // a stale entry
    symbols[cur.next].len = 0;
    cur.id = top.new_id;
    cur.len += right.len;
    cur.next = right.next;
    if (right.next >= 0) symbols[right.next].prev = static_cast<int32_t>(top.pos);
    if (cur.prev >= 0) {
      if (const Merge* m = find_merge(symbols[cur.prev].id, cur.id)) {
        queue.push({m->rank, static_cast<uint32_t>(cur.prev), m->new_id});
      }
    }
    if (cur.next >= 0) {
      if (const Merge* m = find_merge(cur.id, symbols[cur.next].id)) {
        queue.push({m->rank, top.pos, m->new_id});
      }
    }
  }
  std::vector<int32_t> ids;
  for (const Symbol& sym : symbols) {
    if (sym.len != 0) ids.push_back(sym.id);
  }
  return ids;
}

void BpeModel::Tokenize(std::string_view word, std::vector<int32_t>* out) const {
  if (word.empty()) return;
  if (ignore_merges_) {
    if (const int32_t id = TokenToId(word); id >= 0) {
      out->push_back(id);
      return;
    }
  }
  const bool cacheable = word.size() < kMaxCachedWordBytes;
  CacheShard* shard = nullptr;
  if (cacheable) {
    shard = &cache_[absl::HashOf(AbslView(word)) % kCacheShards];
    absl::MutexLock lock(&shard->mu);
    auto it = shard->words.find(AbslView(word));
    if (it != shard->words.end()) {
      out->insert(out->end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = MergeWord(word);
  out->insert(out->end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&shard->mu);
    if (shard->words.size() >= kCacheCapacity / kCacheShards) shard->words.clear();
    shard->words.emplace(std::string(word), std::move(ids));
  }
}

}  // namespace para::text
