// Normalizers: each one on a hand-made document. The model is a character vocabulary (no merges,
// unknown characters become <unk>), so the pieces joined are exactly the normalized text.
#include <gtest/gtest.h>

#include "absl/strings/str_join.h"
#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

// The text `normalizer` makes of `input`, read back through a character model built from
// `expected` (any other character shows as <unk>).
std::string Normalize(const Json& normalizer, const std::string& input,
                      const std::string& expected) {
  Json model = Bpe(CharsOf({expected}));
  model["unk_token"] = "<unk>";
  auto tok = Load(Doc(model, normalizer));
  if (tok == nullptr) return "<load failed>";
  return absl::StrJoin(Pieces(*tok, input), "");
}

TEST(NormalizersTest, UnicodeNormalizationForms) {
  // é as e + U+0301 composes under NFC and stays decomposed under NFD (and vice versa).
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "e\u0301t\u00e9", "\u00e9t\u00e9"), "\u00e9t\u00e9");
  EXPECT_EQ(Normalize({{"type", "NFD"}}, "\u00e9", "e\u0301"), "e\u0301");
  // Compatibility forms: the fi ligature, a circled digit, fullwidth letters.
  EXPECT_EQ(Normalize({{"type", "NFKC"}}, "\ufb01 \u2460 \uff21", "fi 1 A"), "fi 1 A");
  EXPECT_EQ(Normalize({{"type", "NFKD"}}, "\ufb01\u00e9", "fie\u0301"), "fie\u0301");
  // NFC leaves compatibility characters alone.
  EXPECT_EQ(Normalize({{"type", "NFC"}}, "\ufb01", "\ufb01"), "\ufb01");
}

TEST(NormalizersTest, LowercaseIsPerCharacterWithFullMappings) {
  // Rust's char::to_lowercase: no final-sigma context, and U+0130 becomes i + U+0307.
  EXPECT_EQ(Normalize({{"type", "Lowercase"}}, "HeLLo \u03a3\u0391\u03a3 \u0130",
                      "hello \u03c3\u03b1\u03c3 i\u0307"),
            "hello \u03c3\u03b1\u03c3 i\u0307");
}

TEST(NormalizersTest, StripRemovesUnicodeWhitespaceOnTheChosenSides) {
  const std::string in = " \t\u3000hi there\u00a0\n ";
  EXPECT_EQ(
      Normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", true}}, in, "hi there"),
      "hi there");
  EXPECT_EQ(Normalize({{"type", "Strip"}, {"strip_left", true}, {"strip_right", false}}, in,
                      "hi there\u00a0\n "),
            "hi there\u00a0\n ");
  EXPECT_EQ(Normalize({{"type", "Strip"}, {"strip_left", false}, {"strip_right", true}}, in,
                      " \t\u3000hi there"),
            " \t\u3000hi there");
}

TEST(NormalizersTest, ReplaceWithStringAndRegexPatterns) {
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}},
                      "a b  c", "a\u2581b\u2581\u2581c"),
            "a\u2581b\u2581\u2581c");
  // A string pattern is literal: "." is not "any character".
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"String", "."}}}, {"content", "!"}},
                      "a.b", "a!b"),
            "a!b");
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", " {2,}"}}}, {"content", " "}},
                      "a   b  c d", "a b c d"),
            "a b c d");
  // Oniguruma's \s is Unicode White_Space: vertical tab, NEL and NBSP included.
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", "\\s"}}}, {"content", "_"}},
                      "a\x0b"
                      "b\u0085c\u00a0d",
                      "a_b_c_d"),
            "a_b_c_d");
  // Empty matches are replaced at every position except right after a match.
  EXPECT_EQ(Normalize({{"type", "Replace"}, {"pattern", {{"Regex", "b*"}}}, {"content", "x"}},
                      "abb\u00e9", "xax\u00e9x"),
            "xax\u00e9x");
}

TEST(NormalizersTest, PrependAddsOnlyToNonEmptyText) {
  Json prepend = {{"type", "Prepend"}, {"prepend", "\u2581"}};
  EXPECT_EQ(Normalize(prepend, "hi", "\u2581hi"), "\u2581hi");
  EXPECT_EQ(Normalize(prepend, "", ""), "");
}

TEST(NormalizersTest, SequenceAppliesInOrder) {
  // Llama 2's normalizer: prepend the marker, then spaces become markers.
  Json seq = {{"type", "Sequence"},
              {"normalizers",
               {{{"type", "Prepend"}, {"prepend", "\u2581"}},
                {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}}}}};
  EXPECT_EQ(Normalize(seq, "a b", "\u2581a\u2581b"), "\u2581a\u2581b");
  Json lower_then_nfkc = {{"type", "Sequence"},
                          {"normalizers", {{{"type", "NFKC"}}, {{"type", "Lowercase"}}}}};
  EXPECT_EQ(Normalize(lower_then_nfkc, "\uff21B", "ab"), "ab");
}

}  // namespace
}  // namespace para::text_test
