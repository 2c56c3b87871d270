#include "engine/text/normalized_string.h"

#include <algorithm>

#include "engine/text/unicode.h"

namespace para::text {

NormalizedString::NormalizedString(std::string_view s, uint32_t offset) : text_(s), shift_(offset) {
  align_.resize(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t len = Utf8CharLen(static_cast<unsigned char>(s[i]));
    for (size_t k = 0; k < len && i + k < s.size(); ++k) {
      align_[i + k] = offset + static_cast<uint32_t>(i);
    }
    i += len;
  }
}

void NormalizedString::TransformRange(size_t begin, size_t end, const std::vector<Change>& dest,
                                      size_t initial_offset) {
  size_t pos = begin;  // next old character of the range
  auto take_char = [&]() -> size_t {
    if (pos >= end) return 0;
    const size_t len = Utf8CharLen(static_cast<unsigned char>(text_[pos]));
    pos += len;
    return len;
  };
  size_t offset = begin;
  for (size_t k = 0; k < initial_offset; ++k) offset += take_char();
  std::string out;
  std::vector<uint32_t> out_align;
  out.reserve(end - begin + 4 * dest.size());
  for (const Change& ch : dest) {
    uint32_t a;
    if (ch.change > 0) {
      a = offset < 1 ? shift_ : align_[std::min(offset, align_.size()) - 1];
    } else {
      a = offset < align_.size() ? align_[offset] : (align_.empty() ? shift_ : align_.back());
      offset += take_char();
      for (int k = 0; k < -ch.change; ++k) offset += take_char();
    }
    const size_t before = out.size();
    AppendUtf8(ch.c, &out);
    out_align.insert(out_align.end(), out.size() - before, a);
  }
  text_.replace(begin, end - begin, out);
  align_.erase(align_.begin() + static_cast<ptrdiff_t>(begin),
               align_.begin() + static_cast<ptrdiff_t>(end));
  align_.insert(align_.begin() + static_cast<ptrdiff_t>(begin), out_align.begin(), out_align.end());
}

void NormalizedString::Assign(std::string text, std::vector<uint32_t> alignments) {
  text_ = std::move(text);
  align_ = std::move(alignments);
}

void NormalizedString::Prepend(std::string_view s) {
  if (text_.empty()) return;
  const size_t first_len = Utf8CharLen(static_cast<unsigned char>(text_[0]));
  std::vector<Change> dest;
  bool first = true;
  for (char32_t c : DecodeUtf8(s)) {
    dest.push_back({c, first ? 0 : 1});
    first = false;
  }
  dest.push_back({DecodeUtf8At(text_, 0), 1});
  TransformRange(0, first_len, dest, 0);
}

void NormalizedString::Replace(const std::vector<Span>& matches, std::string_view content) {
  std::string out;
  std::vector<uint32_t> out_align;
  out.reserve(text_.size());
  out_align.reserve(text_.size());
  size_t last_end = 0;
  for (const Span& m : matches) {
    if (!m.is_match) continue;
    out.append(text_, last_end, m.begin - last_end);
    out_align.insert(out_align.end(), align_.begin() + static_cast<ptrdiff_t>(last_end),
                     align_.begin() + static_cast<ptrdiff_t>(m.begin));
    // Every character of `content` is inserted after the removed match: it takes the alignment of
    // the match's last byte.
    const uint32_t a = m.end < 1 ? shift_ : align_[m.end - 1];
    out.append(content);
    out_align.insert(out_align.end(), content.size(), a);
    last_end = m.end;
  }
  out.append(text_, last_end, std::string::npos);
  out_align.insert(out_align.end(), align_.begin() + static_cast<ptrdiff_t>(last_end),
                   align_.end());
  text_ = std::move(out);
  align_ = std::move(out_align);
}

NormalizedString NormalizedString::Slice(size_t begin, size_t end) const {
  NormalizedString r;
  r.text_ = text_.substr(begin, end - begin);
  r.align_.assign(align_.begin() + static_cast<ptrdiff_t>(begin),
                  align_.begin() + static_cast<ptrdiff_t>(end));
  // An empty range keeps its position as if it were an original offset, as `tokenizers` does.
  r.shift_ = begin == end ? shift_ + static_cast<uint32_t>(begin) : align_[begin];
  return r;
}

std::vector<NormalizedString> NormalizedString::Split(const std::vector<Span>& matches,
                                                      SplitBehavior behavior) const {
  // (range, remove) pairs.
  std::vector<Span> splits;
  switch (behavior) {
    case SplitBehavior::kRemoved:
      splits = matches;
      break;
    case SplitBehavior::kIsolated:
      for (const Span& m : matches) splits.push_back({m.begin, m.end, false});
      break;
    case SplitBehavior::kContiguous: {
      bool previous_match = false;
      for (const Span& m : matches) {
        if (m.is_match == previous_match && !splits.empty()) {
          splits.back().end = m.end;
        } else {
          splits.push_back({m.begin, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithPrevious: {
      bool previous_match = false;
      for (const Span& m : matches) {
        if (m.is_match && !previous_match && !splits.empty()) {
          splits.back().end = m.end;
        } else {
          splits.push_back({m.begin, m.end, false});
        }
        previous_match = m.is_match;
      }
      break;
    }
    case SplitBehavior::kMergedWithNext: {
      bool previous_match = false;
      for (auto it = matches.rbegin(); it != matches.rend(); ++it) {
        if (it->is_match && !previous_match && !splits.empty()) {
          splits.back().begin = it->begin;
        } else {
          splits.push_back({it->begin, it->end, false});
        }
        previous_match = it->is_match;
      }
      std::reverse(splits.begin(), splits.end());
      break;
    }
  }
  std::vector<NormalizedString> out;
  out.reserve(splits.size());
  for (const Span& s : splits) {
    if (!s.is_match) out.push_back(Slice(s.begin, s.end));
  }
  return out;
}

}  // namespace para::text
