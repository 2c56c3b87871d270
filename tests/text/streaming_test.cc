// Streaming: TokenBytes through the engine's IncrementalDetokenizer gives the decoded text for a
// byte-level tokenizer; for Metaspace and Llama-2-style decoders it differs only at the start of a
// sequence, where whole-sequence decoding drops the first space (see hf_tokenizer.h).
#include <gtest/gtest.h>

#include "engine/text/detokenizer.h"
#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

std::string Stream(const Tokenizer& t, const std::vector<int32_t>& ids) {
  IncrementalDetokenizer detok(&t);
  std::string out;
  for (int32_t id : ids) out += detok.Append(id);
  return out + detok.Flush();
}

// Character-level byte-level tokenizer: the 256 byte characters, no merges.
Json ByteLevelDoc() {
  std::vector<std::string> vocab = {"<|eot|>"};
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
  Json bl = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}};
  return Doc(Bpe(vocab), nullptr, bl, bl, nullptr, Json::array({Added(0, "<|eot|>", true, false)}));
}

TEST(StreamingTest, ByteLevelStreamIsTheDecodedText) {
  auto t = Load(ByteLevelDoc());
  ASSERT_NE(t, nullptr);
  const std::string text =
      "Hi \u4f60\u597d \U0001F469\u200d\U0001F469\u200d\U0001F467 <|eot|>e\u0301 \t\n";
  const std::vector<int32_t> ids = t->Encode(text);
  EXPECT_EQ(Stream(*t, ids), t->Decode(ids, true));
  EXPECT_EQ(t->Decode(ids, true),
            "Hi \u4f60\u597d \U0001F469\u200d\U0001F469\u200d\U0001F467 e\u0301 \t\n");
  // A byte token adds one byte; a special token adds nothing.
  EXPECT_EQ(t->TokenBytes(t->PieceToId("\u00e4")), "\xE4");
  EXPECT_EQ(t->TokenBytes(t->PieceToId("<|eot|>")), "");
}

TEST(StreamingTest, SentencepieceStyleDiffersOnlyByTheFirstSpace) {
  std::vector<std::string> vocab = {"<unk>", "<s>"};
  for (int b = 0; b < 256; ++b) {
    char buf[8];
    snprintf(buf, sizeof buf, "<0x%02X>", b);
    vocab.push_back(buf);
  }
  for (const char* p : {"\u2581", "a", "b", "\u2581a", "\u2581b"}) vocab.push_back(p);
  Json model = Bpe(vocab, {"\u2581 a", "\u2581 b"});
  model["byte_fallback"] = true;
  model["unk_token"] = "<unk>";
  Json norm = {{"type", "Sequence"},
               {"normalizers",
                {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                 {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  Json dec = {{"type", "Sequence"},
              {"decoders",
               {{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                {{"type", "ByteFallback"}},
                {{"type", "Fuse"}},
                {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}};
  auto t =
      Load(Doc(model, norm, nullptr, dec, nullptr, Json::array({Added(1, "<s>", true, false)})));
  ASSERT_NE(t, nullptr);
  const std::vector<int32_t> ids = t->Encode("a b \u4f60a");
  EXPECT_EQ(t->Decode(ids), "a b \u4f60a");
  EXPECT_EQ(Stream(*t, ids), " a b \u4f60a");
  EXPECT_EQ(t->TokenBytes(t->PieceToId("<0xE4>")), "\xE4");
  EXPECT_EQ(t->TokenBytes(t->PieceToId("\u2581b")), " b");
}

}  // namespace
}  // namespace para::text_test
