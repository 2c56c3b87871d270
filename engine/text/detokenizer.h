// Streaming text assembly for generated tokens.
//
// IncrementalDetokenizer turns token ids into text one token at a time and never emits part of
// a UTF-8 character: bytes of a character split across byte-fallback tokens are held until the
// character is complete; bytes that can never form a valid character become U+FFFD, one per
// byte, as sentencepiece's own decoder does, so the streamed text equals the decoded sequence.
// StopStringMatcher finds stop strings in streamed text, holding back any tail that could be
// the start of a stop string so the stop string itself is never emitted.
// Both are single-owner value types (one per sequence); not thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "engine/tokenizer.h"

namespace para {

// Splits `bytes` into the longest prefix that can be emitted now (valid UTF-8, with invalid
// bytes replaced by U+FFFD) and returns it; `bytes` keeps the incomplete tail (at most 3 bytes).
std::string TakeCompleteUtf8(std::string* bytes);

class IncrementalDetokenizer {
 public:
  // With `skip_special_tokens` false, a token that adds no bytes (a special or control token)
  // adds its piece ("<|im_end|>") instead.
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer, bool skip_special_tokens = true)
      : tokenizer_(tokenizer), skip_special_(skip_special_tokens) {}
  // Returns the text that token `id` completes (possibly empty).
  std::string Append(int32_t id);
  // End of stream: the held bytes of an incomplete character, each as U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  bool skip_special_;
  std::string pending_;
};

class StopStringMatcher {
 public:
  // With `include_stop`, the returned text of a match ends with the stop string itself.
  explicit StopStringMatcher(std::vector<std::string> stops, bool include_stop = false);
  // Feeds newly decoded text. Returns the text that may be emitted now. After a stop string is
  // found, matched() is true, the returned text ends just before it (or just after it, with
  // include_stop), and further input is ignored. With `may_match` false (before min_tokens) the
  // text passes through unmatched, and only later text is searched.
  std::string Feed(std::string_view text, bool may_match = true);
  // End of stream without a match: the held-back text.
  std::string Flush();
  bool matched() const { return matched_; }
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  bool include_stop_;
  std::string held_;
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace para
