// Added tokens: matched before the model runs, raw or normalized, longest first, with
// single_word, lstrip and rstrip; ids as `tokenizers` assigns them; special tokens in decoding.
#include <gtest/gtest.h>

#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

using Strings = std::vector<std::string>;

// A character model over lowercase letters, digits, space and a few signs, with `added`.
std::unique_ptr<Tokenizer> WithAdded(Json added, Json normalizer = nullptr) {
  Json model = Bpe(CharsOf({"abcdefghijklmnopqrstuvwxyz0123456789 <>|[]_.-"}));
  model["unk_token"] = "<unk>";
  return Load(Doc(model, normalizer, nullptr, nullptr, nullptr, added));
}

TEST(AddedTokensTest, RawTokensMatchBeforeTheNormalizerNormalizedOnesAfter) {
  Json lower = {{"type", "Lowercase"}};
  auto t = WithAdded(
      Json::array({Added(100, "<S>", true, false), Added(101, "hello", false, true)}), lower);
  ASSERT_NE(t, nullptr);
  // "<S>" (normalized=false) matches only as written; "hello" (normalized=true) matches HELLO
  // once lowercased.
  EXPECT_EQ(Pieces(*t, "<S>HELLO<s>"), (Strings{"<S>", "hello", "<", "s", ">"}));
}

TEST(AddedTokensTest, LongestMatchWinsAndTokensAreNeverSplit) {
  auto t =
      WithAdded(Json::array({Added(0, "<|im", true, false), Added(0, "<|im_end|>", true, false)}));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(Pieces(*t, "a<|im_end|>b<|imx"), (Strings{"a", "<|im_end|>", "b", "<|im", "x"}));
}

TEST(AddedTokensTest, SingleWordLstripRstrip) {
  auto t = WithAdded(Json::array({Added(0, "foo", false, false, false, false, true),
                                  Added(0, "[m]", true, false, true, false),
                                  Added(0, "<e>", true, false, false, true)}));
  ASSERT_NE(t, nullptr);
  // single_word: only between non-word characters.
  EXPECT_EQ(Pieces(*t, "foo bar"), (Strings{"foo", " ", "b", "a", "r"}));
  EXPECT_EQ(Pieces(*t, "foobar"), (Strings{"f", "o", "o", "b", "a", "r"}));
  EXPECT_EQ(Pieces(*t, "x_foo"), (Strings{"x", "_", "f", "o", "o"}));
  // lstrip takes the spaces before the token, rstrip the spaces after it.
  EXPECT_EQ(Pieces(*t, "a  [m] b"), (Strings{"a", "[m]", " ", "b"}));
  EXPECT_EQ(Pieces(*t, "a <e>  b"), (Strings{"a", " ", "<e>", "b"}));
}

TEST(AddedTokensTest, IdsFollowTheModelVocabLikeTokenizers) {
  // "a" is in the model's vocab: it keeps the model's id. The others get ids after the vocab, in
  // file order, whatever id the file gives them.
  Json model = Bpe({"<unk>", "a", "b"});
  Json added = Json::array(
      {Added(7, "a", false, false), Added(9, "<x>", true, false), Added(8, "<y>", true, false)});
  auto t = Load(Doc(model, nullptr, nullptr, nullptr, nullptr, added));
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->Encode("<y>a<x>"), (std::vector<int32_t>{4, 1, 3}));
  EXPECT_EQ(t->PieceToId("<x>"), 3);
  EXPECT_EQ(t->PieceToId("b"), 2);
  EXPECT_EQ(t->PieceToId("zz"), -1);
  EXPECT_TRUE(t->IsSpecial(3));
  EXPECT_FALSE(t->IsSpecial(1));
  EXPECT_EQ(t->IdToPiece(4), "<y>");
  EXPECT_EQ(t->vocab_size(), 5);
}

TEST(AddedTokensTest, DecodeSkipsSpecialTokensOnRequest) {
  auto t = WithAdded(Json::array({Added(0, "<s>", true, false), Added(0, "<t>", false, false)}));
  ASSERT_NE(t, nullptr);
  const std::vector<int32_t> ids = t->Encode("<s>ab<t>");
  // No decoder: `tokenizers` joins the tokens with spaces.
  EXPECT_EQ(t->Decode(ids, false), "<s> a b <t>");
  EXPECT_EQ(t->Decode(ids, true), "a b <t>");
  EXPECT_EQ(t->Decode(ids), "<s> a b <t>");
}

TEST(AddedTokensTest, TemplatePostProcessorAddsBosAndEos) {
  Json model = Bpe({"<s>", "</s>", "a", "b"});
  Json tpl = {{"type", "TemplateProcessing"},
              {"single",
               {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}},
                {{"Sequence", {{"id", "A"}, {"type_id", 0}}}},
                {{"SpecialToken", {{"id", "</s>"}, {"type_id", 0}}}}}},
              {"pair", Json::array()},
              {"special_tokens",
               {{"<s>", {{"id", "<s>"}, {"ids", {0}}, {"tokens", {"<s>"}}}},
                {"</s>", {{"id", "</s>"}, {"ids", {1}}, {"tokens", {"</s>"}}}}}}};
  auto t = Load(Doc(model, nullptr, nullptr, nullptr, tpl));
  ASSERT_NE(t, nullptr);
  std::vector<int32_t> ids = t->Encode("ab");
  EXPECT_EQ(ids, (std::vector<int32_t>{2, 3}));
  EXPECT_TRUE(t->ApplyPostProcessor(&ids));
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 2, 3, 1}));
  Json roberta = {{"type", "RobertaProcessing"}, {"sep", {"</s>", 1}}, {"cls", {"<s>", 0}}};
  auto r = Load(Doc(model, nullptr, nullptr, nullptr, roberta));
  ids = {2};
  EXPECT_TRUE(r->ApplyPostProcessor(&ids));
  EXPECT_EQ(ids, (std::vector<int32_t>{0, 2, 1}));
  // No post-processor: nothing added, and the caller is told so.
  auto none = Load(Doc(model));
  ids = {2};
  EXPECT_FALSE(none->ApplyPostProcessor(&ids));
  EXPECT_EQ(ids, (std::vector<int32_t>{2}));
}

}  // namespace
}  // namespace para::text_test
