// Decoders: ByteLevel, Metaspace, ByteFallback, Fuse, Strip, Replace, BPEDecoder and sequences
// of them, on token lists whose decoded text is worked out by hand.
#include <gtest/gtest.h>

#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

const std::string kFffd = "\xEF\xBF\xBD";

// Decodes the tokens `pieces` (each one a vocabulary entry) with `decoder`.
std::string DecodePieces(const Json& decoder, const std::vector<std::string>& pieces,
                         bool skip_special = false) {
  std::vector<std::string> vocab = {"<s>"};
  for (const auto& p : pieces) {
    if (std::find(vocab.begin(), vocab.end(), p) == vocab.end()) vocab.push_back(p);
  }
  auto t = Load(Doc(Bpe(vocab), nullptr, nullptr, decoder, nullptr,
                    Json::array({Added(0, "<s>", true, false)})));
  if (t == nullptr) return "<load failed>";
  std::vector<int32_t> ids;
  for (const auto& p : pieces) ids.push_back(t->PieceToId(p));
  return t->Decode(ids, skip_special);
}

TEST(DecodersTest, ByteLevelMapsCharactersBackToBytesLossily) {
  Json bl = {{"type", "ByteLevel"}};
  EXPECT_EQ(DecodePieces(bl, {"\u0120Hello", "\u0120w", "orld", "\u010a"}), " Hello world\n");
  // E4 BD A0 is 你: the three byte characters ä ½ and U+00A0's stand-in U+0142.
  EXPECT_EQ(DecodePieces(bl, {"\u00e4", "\u00bd", "\u0142"}), "\u4f60");
  // An incomplete character is one U+FFFD; a byte that cannot start one is another.
  EXPECT_EQ(DecodePieces(bl, {"\u00e4", "\u00bd", "a"}), kFffd + "a");
  EXPECT_EQ(DecodePieces(bl, {"\u00ff", "a"}), kFffd + "a");
  // A token with a character outside the byte alphabet stands for its own UTF-8.
  EXPECT_EQ(DecodePieces(bl, {"\u4f60", "\u0120"}), "\u4f60 ");
}

TEST(DecodersTest, MetaspaceDropsTheMarkersOfTheFirstToken) {
  Json ms = {{"type", "Metaspace"},
             {"replacement", "\u2581"},
             {"prepend_scheme", "always"},
             {"split", true}};
  EXPECT_EQ(DecodePieces(ms, {"\u2581Hey", "\u2581friend"}), "Hey friend");
  EXPECT_EQ(DecodePieces(ms, {"\u2581\u2581a\u2581", "b"}), "ab");
  ms["prepend_scheme"] = "never";
  EXPECT_EQ(DecodePieces(ms, {"\u2581Hey", "\u2581friend"}), " Hey friend");
}

TEST(DecodersTest, Llama2Sequence) {
  Json seq = {{"type", "Sequence"},
              {"decoders",
               {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}},
                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  EXPECT_EQ(DecodePieces(seq, {"\u2581Hello", "\u2581world"}), "Hello world");
  EXPECT_EQ(DecodePieces(seq, {"\u2581\u2581a"}), " a");  // Strip takes one space only
  EXPECT_EQ(DecodePieces(seq, {"\u2581a", "<0xE4>", "<0xBD>", "<0xA0>"}), "a\u4f60");
  // A run of byte tokens that is not valid UTF-8 as a whole: every byte becomes U+FFFD, valid
  // ones included.
  EXPECT_EQ(DecodePieces(seq, {"x", "<0x41>", "<0xFF>", "y"}), "x" + kFffd + kFffd + "y");
  EXPECT_EQ(DecodePieces(seq, {"<s>", "\u2581a"}, true), "a");
  EXPECT_EQ(DecodePieces(seq, {"<s>", "\u2581a"}, false), "<s> a");
}

TEST(DecodersTest, StripBeforeFuseAppliesToEveryToken) {
  Json seq = {
      {"type", "Sequence"},
      {"decoders",
       {{{"type", "Strip"}, {"content", "x"}, {"start", 2}, {"stop", 1}}, {{"type", "Fuse"}}}}};
  EXPECT_EQ(DecodePieces(seq, {"xxxaxx", "xb"}), "xaxb");
}

TEST(DecodersTest, RegexReplaceAndBpeSuffixAndNoDecoder) {
  Json rep = {{"type", "Replace"}, {"pattern", {{"Regex", "[0-9]+"}}}, {"content", "#"}};
  EXPECT_EQ(DecodePieces(rep, {"a12b3", "c"}), "a#b#c");
  Json bpe = {{"type", "BPEDecoder"}, {"suffix", "</w>"}};
  EXPECT_EQ(DecodePieces(bpe, {"hel", "lo</w>", "world</w>"}), "hello world");
  EXPECT_EQ(DecodePieces(nullptr, {"a", "b"}), "a b");
}

TEST(DecodersTest, IdsOfNoTokenAreDropped) {
  auto t = Load(Doc(Bpe({"a", "b"}), nullptr, nullptr, {{"type", "Fuse"}}));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Decode({0, 7, -1, 1}), "ab");
}

}  // namespace
}  // namespace para::text_test
