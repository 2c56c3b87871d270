// Streaming text: UTF-8 is never split, invalid bytes become U+FFFD, stop strings are held back
// and never emitted.
#include "engine/text/detokenizer.h"

#include <gtest/gtest.h>

namespace para {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

TEST(Utf8Test, HoldsIncompleteCharacters) {
  std::string euro = "\xE2\x82\xAC";  // €
  std::string pending = "a" + euro.substr(0, 2);
  EXPECT_EQ(TakeCompleteUtf8(&pending), "a");
  EXPECT_EQ(pending, euro.substr(0, 2));
  pending += euro.substr(2);
  EXPECT_EQ(TakeCompleteUtf8(&pending), euro);
  EXPECT_TRUE(pending.empty());
}

TEST(Utf8Test, FourByteEmojiOneByteAtATime) {
  const std::string emoji = "\xF0\x9F\x99\x82";  // 🙂
  std::string pending, out;
  for (char c : emoji) {
    pending.push_back(c);
    std::string got = TakeCompleteUtf8(&pending);
    if (pending.size() < 4 && !pending.empty()) EXPECT_TRUE(got.empty());
    out += got;
  }
  EXPECT_EQ(out, emoji);
}

TEST(Utf8Test, InvalidBytesBecomeReplacementCharacters) {
  std::string pending =
      "x\xFF"
      "y";
  EXPECT_EQ(TakeCompleteUtf8(&pending), "x" + kFffd + "y");
  pending = "\xE2\x28\xA1";  // lead byte followed by a non-continuation byte
  EXPECT_EQ(TakeCompleteUtf8(&pending), kFffd + "(" + kFffd);
  pending = "\xC0\xAF";  // overlong encoding lead is never valid
  EXPECT_EQ(TakeCompleteUtf8(&pending), kFffd + kFffd);
  pending = "\xED\xA0\x80";  // UTF-16 surrogate
  EXPECT_EQ(TakeCompleteUtf8(&pending), kFffd + kFffd + kFffd);
}

// A tokenizer whose tokens are single bytes.
class ByteTokenizer : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view) const override { return {}; }
  std::string Decode(const std::vector<int32_t>&) const override { return ""; }
  std::string TokenBytes(int32_t id) const override {
    return std::string(1, static_cast<char>(id));
  }
  std::string IdToPiece(int32_t) const override { return ""; }
  int32_t vocab_size() const override { return 256; }
};

TEST(IncrementalDetokenizerTest, FlushReplacesDanglingBytes) {
  ByteTokenizer tok;
  IncrementalDetokenizer d(&tok);
  EXPECT_EQ(d.Append('h'), "h");
  EXPECT_EQ(d.Append(0xE4), "");
  EXPECT_EQ(d.Append(0xBD), "");
  EXPECT_EQ(d.Flush(), kFffd + kFffd);
}

std::string FeedAll(StopStringMatcher& m, const std::vector<std::string>& chunks) {
  std::string out;
  for (const auto& c : chunks) out += m.Feed(c);
  if (!m.matched()) out += m.Flush();
  return out;
}

TEST(StopStringMatcherTest, StopSplitAcrossChunksIsNotEmitted) {
  StopStringMatcher m({"\n\nUser:"});
  std::string emitted;
  emitted += m.Feed("Hello");
  EXPECT_EQ(emitted, "Hello");
  emitted += m.Feed(" there\n");  // "\n" could start the stop string: held back
  EXPECT_EQ(emitted, "Hello there");
  emitted += m.Feed("\nUs");
  EXPECT_EQ(emitted, "Hello there");
  emitted += m.Feed("er: more");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "\n\nUser:");
  EXPECT_EQ(emitted, "Hello there");
  EXPECT_EQ(m.Feed("ignored"), "");
}

TEST(StopStringMatcherTest, FalseStartIsReleased) {
  StopStringMatcher m({"STOP"});
  EXPECT_EQ(m.Feed("ST"), "");
  EXPECT_EQ(m.Feed("AR"), "STAR");
  EXPECT_FALSE(m.matched());
}

TEST(StopStringMatcherTest, EarliestOfSeveralStopsWins) {
  StopStringMatcher m({"world", "lo w"});
  EXPECT_EQ(FeedAll(m, {"hello world"}), "hel");
  EXPECT_EQ(m.matched_stop(), "lo w");
}

TEST(StopStringMatcherTest, NoStopsPassesEverythingThrough) {
  StopStringMatcher m({});
  EXPECT_EQ(m.Feed("abc"), "abc");
  EXPECT_EQ(m.Flush(), "");
}

TEST(StopStringMatcherTest, HeldTailIsFlushedAtEnd) {
  StopStringMatcher m({"xyz"});
  EXPECT_EQ(FeedAll(m, {"abcx", "y"}), "abcxy");
  EXPECT_FALSE(m.matched());
}

TEST(StopStringMatcherTest, IncludeStopKeepsTheStopStringAndNothingAfter) {
  StopStringMatcher m({"END"}, /*include_stop=*/true);
  EXPECT_EQ(m.Feed("abc E"), "abc ");
  EXPECT_EQ(m.Feed("NDxyz"), "END");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.Feed("more"), "");
}

TEST(StopStringMatcherTest, TextBeforeMinTokensIsNeverSearched) {
  StopStringMatcher m({"ab"});
  EXPECT_EQ(m.Feed("xab", /*may_match=*/false), "xab");  // passes through unmatched
  EXPECT_FALSE(m.matched());
  EXPECT_EQ(m.Feed("a", true), "");  // a later match still counts
  EXPECT_EQ(m.Feed("b!", true), "");
  EXPECT_TRUE(m.matched());
}

}  // namespace
}  // namespace para
