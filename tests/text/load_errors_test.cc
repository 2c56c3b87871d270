// Load errors: every refusal names the file and the JSON path of what is wrong (the project's
// rule: what is not implemented is refused, never ignored).
#include <gtest/gtest.h>

#include <gmock/gmock.h>

#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

std::string ErrorOfText(const std::string& text) {
  auto t = ParseHfTokenizer(text, "models/x/tokenizer.json");
  EXPECT_FALSE(t.ok()) << "loaded: " << text.substr(0, 200);
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("models/x/tokenizer.json: "));
  return std::string(t.status().message());
}

std::string ErrorOf(const Json& doc) { return ErrorOfText(doc.dump()); }

Json Good() { return Doc(Bpe({"a", "b", "ab"}, {"a b"})); }

TEST(LoadErrorsTest, MalformedDocument) {
  EXPECT_THAT(ErrorOfText("{\"model\": "), HasSubstr("malformed JSON"));
  EXPECT_THAT(ErrorOfText("[1, 2]"), HasSubstr("expected an object"));
  Json doc = Good();
  doc["version"] = "2.0";
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("version"), HasSubstr("2.0")));
  doc = Good();
  doc.erase("model");
  EXPECT_THAT(ErrorOf(doc), HasSubstr("model: missing"));
}

TEST(LoadErrorsTest, OtherModelTypesAreNamed) {
  for (const char* type : {"WordPiece", "Unigram", "WordLevel"}) {
    Json doc = Good();
    doc["model"]["type"] = type;
    EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("model.type"), HasSubstr(type)));
  }
}

TEST(LoadErrorsTest, UnknownComponentTypes) {
  Json doc = Good();
  doc["normalizer"] = {{"type", "Sequence"},
                       {"normalizers", {{{"type", "NFC"}}, {{"type", "Precompiled"}}}}};
  EXPECT_THAT(ErrorOf(doc),
              AllOf(HasSubstr("normalizer.normalizers[1].type"), HasSubstr("Precompiled")));
  doc = Good();
  doc["pre_tokenizer"] = {{"type", "UnicodeScripts"}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("pre_tokenizer.type"), HasSubstr("UnicodeScripts")));
  doc = Good();
  doc["decoder"] = {{"type", "WordPiece"}, {"prefix", "##"}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("decoder.type"), HasSubstr("WordPiece")));
  doc = Good();
  doc["post_processor"] = {{"type", "Fancy"}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("post_processor.type"), HasSubstr("Fancy")));
  doc = Good();
  doc["decoder"] = {{"kind", "ByteLevel"}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("decoder.type: missing"));
}

TEST(LoadErrorsTest, VocabAndMerges) {
  EXPECT_THAT(ErrorOf(Doc(Bpe({"a", "b", "ab"}, {"a b", "a c"}))),
              AllOf(HasSubstr("model.merges[1]"), HasSubstr("'c'"), HasSubstr("not in the vocab")));
  EXPECT_THAT(ErrorOf(Doc(Bpe({"a", "b"}, {"a b"}))),
              AllOf(HasSubstr("model.merges[0]"), HasSubstr("'ab'")));
  EXPECT_THAT(ErrorOf(Doc(Bpe({"a", "b", "ab"}, {"a b c"}))),
              AllOf(HasSubstr("model.merges[0]"), HasSubstr("one space")));
  Json doc = Good();
  doc["model"]["merges"] = Json::array({Json::array({"a"})});
  EXPECT_THAT(ErrorOf(doc), HasSubstr("model.merges[0]"));
  doc = Good();
  doc["model"]["vocab"]["c"] = -1;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("model.vocab[\"c\"]"));
  doc = Good();
  doc["model"]["vocab"]["c"] = 1;
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("id 1"), HasSubstr("'b'")));
  doc = Good();
  doc["model"].erase("merges");
  EXPECT_THAT(ErrorOf(doc), HasSubstr("model.merges: missing"));
  doc = Good();
  doc["model"]["unk_token"] = "<unk>";
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("model.unk_token"), HasSubstr("<unk>")));
  doc = Good();
  doc["model"]["dropout"] = 0.1;
  EXPECT_THAT(ErrorOf(doc), HasSubstr("model.dropout"));
  doc = Good();
  doc["model"]["byte_fallback"] = "yes";
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("model.byte_fallback"), HasSubstr("boolean")));
}

TEST(LoadErrorsTest, ComponentFields) {
  Json doc = Good();
  doc["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"},
                             {"pattern", {{"Regex", "(unclosed"}}},
                             {"behavior", "Isolated"},
                             {"invert", false}}}}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("pre_tokenizer.pretokenizers[0].pattern.Regex"),
                                  HasSubstr("(unclosed")));
  doc = Good();
  doc["pre_tokenizer"] = {{"type", "Split"},
                          {"pattern", {{"String", " "}}},
                          {"behavior", "Sideways"},
                          {"invert", false}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("pre_tokenizer.behavior"), HasSubstr("Sideways")));
  doc = Good();
  doc["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "ab"}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("pre_tokenizer.replacement"));
  doc = Good();
  doc["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "_"}, {"prepend_scheme", "often"}};
  EXPECT_THAT(ErrorOf(doc), AllOf(HasSubstr("pre_tokenizer.prepend_scheme"), HasSubstr("often")));
  doc = Good();
  doc["normalizer"] = {{"type", "Replace"}, {"pattern", {{"Glob", "*"}}}, {"content", ""}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("normalizer.pattern"));
  doc = Good();
  doc["post_processor"] = {{"type", "TemplateProcessing"},
                           {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}}},
                           {"special_tokens", Json::object()}};
  EXPECT_THAT(ErrorOf(doc),
              AllOf(HasSubstr("post_processor.single[0].SpecialToken.id"), HasSubstr("<s>")));
  doc = Good();
  doc["decoder"] = {{"type", "Strip"}, {"content", " "}, {"start", -1}, {"stop", 0}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("decoder.start"));
}

TEST(LoadErrorsTest, AddedTokens) {
  Json doc = Good();
  doc["added_tokens"] = {{{"id", 3}, {"special", true}}};
  EXPECT_THAT(ErrorOf(doc), HasSubstr("added_tokens[0].content: missing"));
  doc = Good();
  doc["added_tokens"] = Json::array({"<s>"});
  EXPECT_THAT(ErrorOf(doc), HasSubstr("added_tokens[0]: expected an object"));
  doc = Good();
  doc["added_tokens"] = Json::object();
  EXPECT_THAT(ErrorOf(doc), HasSubstr("added_tokens: expected an array"));
}

TEST(LoadErrorsTest, MissingFileIsNotFound) {
  auto t = LoadHfTokenizer("/nonexistent/tokenizer.json");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(t.status().message()), HasSubstr("/nonexistent/tokenizer.json"));
}

}  // namespace
}  // namespace para::text_test
