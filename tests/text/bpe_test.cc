// The BPE model: merge order, byte fallback, unknown tokens, ignore_merges, subword prefix and
// suffix, both merges spellings, concurrency and speed. Expected pieces are worked out by hand
// from the merge ranks.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

using Strings = std::vector<std::string>;

std::unique_ptr<Tokenizer> Model(Json model) { return Load(Doc(std::move(model))); }

TEST(BpeTest, LowestRankMergesFirst) {
  // (b, c) has rank 0 and goes first; then (a, bc) applies.
  auto t = Model(Bpe({"a", "b", "c", "ab", "bc", "abc"}, {"b c", "a b", "a bc"}));
  EXPECT_EQ(Pieces(*t, "abc"), (Strings{"abc"}));
  // With (a, b) first, (ab, c) is no merge: two pieces.
  auto u = Model(Bpe({"a", "b", "c", "ab", "bc", "abc"}, {"a b", "b c", "a bc"}));
  EXPECT_EQ(Pieces(*u, "abc"), (Strings{"ab", "c"}));
}

TEST(BpeTest, EqualRanksMergeLeftmostFirst) {
  auto t = Model(Bpe({"a", "aa"}, {"a a"}));
  EXPECT_EQ(Pieces(*t, "aaa"), (Strings{"aa", "a"}));
  EXPECT_EQ(Pieces(*t, "aaaa"), (Strings{"aa", "aa"}));
}

TEST(BpeTest, MergesAsPairsEqualMergesAsStrings) {
  Json pairs = Bpe({"a", "b", "c", "ab", "bc", "abc"});
  pairs["merges"] = Json::array({{"b", "c"}, {"a", "bc"}});
  auto t = Model(pairs);
  EXPECT_EQ(Pieces(*t, "abcab"), (Strings{"abc", "a", "b"}));
  // A "#version" first line of a merges.txt is skipped.
  auto u = Model(Bpe({"a", "b", "c", "ab", "bc", "abc"}, {"#version: 0.2", "b c", "a bc"}));
  EXPECT_EQ(Pieces(*u, "abcab"), (Strings{"abc", "a", "b"}));
}

TEST(BpeTest, ByteFallbackUsesByteTokens) {
  Strings vocab = {"<unk>", "a"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab.push_back(buf);
  }
  Json m = Bpe(vocab);
  m["byte_fallback"] = true;
  m["unk_token"] = "<unk>";
  auto t = Model(m);
  // 你 is E4 BD A0.
  EXPECT_EQ(Pieces(*t, "a\u4f60"), (Strings{"a", "<0xE4>", "<0xBD>", "<0xA0>"}));
  // Without all the bytes of a character, it is unknown.
  Json partial = Bpe({"<unk>", "a", "<0xE4>", "<0xBD>"});
  partial["byte_fallback"] = true;
  partial["unk_token"] = "<unk>";
  auto u = Model(partial);
  EXPECT_EQ(Pieces(*u, "a\u4f60"), (Strings{"a", "<unk>"}));
}

TEST(BpeTest, UnknownCharacters) {
  Json m = Bpe({"<unk>", "a", "b"});
  m["unk_token"] = "<unk>";
  EXPECT_EQ(Pieces(*Model(m), "axyb"), (Strings{"a", "<unk>", "<unk>", "b"}));
  m["fuse_unk"] = true;
  EXPECT_EQ(Pieces(*Model(m), "axyb"), (Strings{"a", "<unk>", "b"}));
  // No unk_token: unknown characters are dropped.
  EXPECT_EQ(Pieces(*Model(Bpe({"a", "b"})), "axyb"), (Strings{"a", "b"}));
}

TEST(BpeTest, IgnoreMergesTakesWholeWordsFromTheVocab) {
  Json m = Bpe({"a", "b", "c", "ab", "abc"}, {"a b"});
  EXPECT_EQ(Pieces(*Model(m), "abc"), (Strings{"ab", "c"}));
  m["ignore_merges"] = true;
  EXPECT_EQ(Pieces(*Model(m), "abc"), (Strings{"abc"}));
}

TEST(BpeTest, ContinuingSubwordPrefixAndEndOfWordSuffix) {
  // The merge of a and ##b is "ab": the right side loses its prefix.
  Json m = Bpe({"a", "##b", "##c", "ab"}, {"a ##b"});
  m["continuing_subword_prefix"] = "##";
  EXPECT_EQ(Pieces(*Model(m), "abc"), (Strings{"ab", "##c"}));
  Json s = Bpe({"a", "b</w>", "b", "ab</w>"}, {"a b</w>"});
  s["end_of_word_suffix"] = "</w>";
  EXPECT_EQ(Pieces(*Model(s), "ab"), (Strings{"ab</w>"}));
}

// A byte-level tokenizer with the GPT-2 pattern: all 256 byte characters and a few merges.
Json ByteLevelDoc() {
  Strings vocab;
  // The 256 byte characters: printable Latin-1 as themselves, the rest from U+0100 on.
  int n = 0;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    const char32_t c = printable ? b : 256 + n++;
    std::string s;
    if (c < 0x80) {
      s.push_back(static_cast<char>(c));
    } else {
      s.push_back(static_cast<char>(0xC0 | (c >> 6)));
      s.push_back(static_cast<char>(0x80 | (c & 0x3F)));
    }
    vocab.push_back(s);
  }
  vocab.insert(vocab.end(), {"\u0120t", "he", "\u0120the", "in", "\u0120a"});
  Json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  return Doc(Bpe(vocab, {"\u0120 t", "h e", "\u0120t he", "i n", "\u0120 a"}), nullptr, bl, bl);
}

std::string LongText(size_t bytes) {
  const Strings words = {"the ",          "cat ",   "in\n",
                         "\u4f60\u597d ", "42 ",    "\u00e9t\u00e9  ",
                         "\U0001F600 ",   "x=1;\t", "\u05e9\u05dc\u05d5\u05dd "};
  std::string s;
  for (size_t i = 0; s.size() < bytes; ++i) s += words[(i * 7 + i / 3) % words.size()];
  return s;
}

TEST(BpeTest, ConcurrentEncodesAgreeWithASingleThread) {
  auto t = Load(ByteLevelDoc());
  ASSERT_NE(t, nullptr);
  std::vector<std::string> texts;
  for (int i = 0; i < 64; ++i) texts.push_back(LongText(200 + 37 * i));
  std::vector<std::vector<int32_t>> want;
  for (const auto& s : texts) want.push_back(t->Encode(s));
  std::vector<std::thread> threads;
  std::vector<int> mismatches(8, 0);
  for (int k = 0; k < 8; ++k) {
    threads.emplace_back([&, k] {
      for (int round = 0; round < 5; ++round) {
        for (size_t i = 0; i < texts.size(); ++i) {
          if (t->Encode(texts[(i + k) % texts.size()]) != want[(i + k) % texts.size()]) {
            ++mismatches[k];
          }
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int k = 0; k < 8; ++k) EXPECT_EQ(mismatches[k], 0) << "thread " << k;
  // And the round trip holds.
  for (size_t i = 0; i < texts.size(); ++i) EXPECT_EQ(t->Decode(want[i]), texts[i]);
}

// Long runs (one 1 MiB word, 1 MiB of spaces) go through the word cache and the merge queue
// without loss. (Speed is measured by benchmarks, not asserted here: ~0.13 s per MiB.)
TEST(BpeTest, OneMebibytePromptsRoundTrip) {
  auto t = Load(ByteLevelDoc());
  ASSERT_NE(t, nullptr);
  for (const std::string& text :
       {LongText(1 << 20), std::string(1 << 20, ' '), std::string(1 << 20, 'a')}) {
    const std::vector<int32_t> ids = t->Encode(text);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(t->Decode(ids), text);
  }
}

}  // namespace
}  // namespace para::text_test
