// NormalizedString: one piece of the input as normalizers and pre-tokenizers transform it, and the
// split behaviours of pre-tokenizers.
//
// It holds the current UTF-8 text and, for every byte of it, the byte offset in the caller's whole
// input where the character it came from starts, following the alignment rules of the Rust
// `tokenizers` library (inserted characters take the alignment of the character before them,
// replaced ones keep their own). Only those starts are kept: the one thing that depends on them
// is whether a piece begins at the very start of the input (Metaspace's prepend_scheme "first").
// A value type; not thread-safe, each encode call owns its pieces.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace para::text {

// A byte range [begin, end) of a text, and whether it is a match of the pattern that produced it.
struct Span {
  size_t begin;
  size_t end;
  bool is_match;
};

enum class SplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };

class NormalizedString {
 public:
  // A character of a transformation and how it relates to the old text: 0 replaces the next old
  // character, 1 is inserted, -n replaces the next old character and removes the n after it.
  struct Change {
    char32_t c;
    int change;
  };

  NormalizedString() = default;
  // The text `s`, which starts at byte `offset` of the whole input.
  NormalizedString(std::string_view s, uint32_t offset);

  const std::string& get() const { return text_; }
  bool empty() const { return text_.empty(); }
  size_t size() const { return text_.size(); }
  // Where this piece's original text starts in the whole input.
  uint32_t original_start() const { return shift_; }

  // Replaces the characters of text bytes [begin, end) by `dest`, after removing the first
  // `initial_offset` characters of that range.
  void TransformRange(size_t begin, size_t end, const std::vector<Change>& dest,
                      size_t initial_offset);
  void Transform(const std::vector<Change>& dest, size_t initial_offset) {
    TransformRange(0, text_.size(), dest, initial_offset);
  }
  // Replaces the text by `text`, the alignment of each byte given (for normalization forms).
  void Assign(std::string text, std::vector<uint32_t> alignments);
  const std::vector<uint32_t>& alignments() const { return align_; }
  // Inserts `s` before the text (nothing when the text is empty).
  void Prepend(std::string_view s);
  // Replaces every matched span of `matches` (from FindMatches on this text) with `content`.
  void Replace(const std::vector<Span>& matches, std::string_view content);
  // The bytes [begin, end) of the text as a piece of its own.
  NormalizedString Slice(size_t begin, size_t end) const;
  // Splits the text at the matched spans of `matches` (which cover the text) as `behavior` says.
  // May return empty pieces; callers drop them.
  std::vector<NormalizedString> Split(const std::vector<Span>& matches,
                                      SplitBehavior behavior) const;

 private:
  std::string text_;
  std::vector<uint32_t> align_;  // one per byte of text_
  uint32_t shift_ = 0;
};

}  // namespace para::text
