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
  explicit IncrementalDetokenizer(const Tokenizer* tokenizer) : tokenizer_(tokenizer) {}
  // Returns the text that token `id` completes (possibly empty).
  std::string Append(int32_t id);
  // End of stream: the held bytes of an incomplete character, each as U+FFFD.
  std::string Flush();

 private:
  const Tokenizer* tokenizer_;
  std::string pending_;
};

class StopStringMatcher {
 public:
  explicit StopStringMatcher(std::vector<std::string> stops);
  // Feeds newly decoded text. Returns the text that may be emitted now. After a stop string is
  // found, matched() is true, the returned text ends just before it, and further input is ignored.
  std::string Feed(std::string_view text);
  // End of stream without a match: the held-back text.
  std::string Flush();
  bool matched() const { return matched_; }
  const std::string& matched_stop() const { return matched_stop_; }

 private:
  std::vector<std::string> stops_;
  std::string held_;
  bool matched_ = false;
  std::string matched_stop_;
};

}  // namespace para
