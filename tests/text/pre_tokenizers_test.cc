// Pre-tokenizers: the vocabulary holds every expected pre-token whole and every single character,
// and ignore_merges makes a pre-token that is in the vocabulary one token; a pre-token split
// differently from the expectation shows as different pieces. Expected splits come from the
// `tokenizers` documentation and by hand.
#include <gtest/gtest.h>

#include "tests/text/text_test_util.h"

namespace para::text_test {
namespace {

using Pieces_t = std::vector<std::string>;

Pieces_t Split(const Json& pre_tokenizer, const std::string& input, const Pieces_t& expected,
               Json added = Json::array()) {
  std::vector<std::string> texts = expected;
  texts.push_back(input);
  Json model = Bpe(CharsOf(texts, expected));
  model["ignore_merges"] = true;
  model["unk_token"] = "<unk>";
  auto tok = Load(Doc(model, nullptr, pre_tokenizer, nullptr, nullptr, added));
  if (tok == nullptr) return {"<load failed>"};
  return Pieces(*tok, input);
}

Json SplitOn(const std::string& pattern, const std::string& behavior, bool regex = false,
             bool invert = false) {
  return {{"type", "Split"},
          {"pattern", {{regex ? "Regex" : "String", pattern}}},
          {"behavior", behavior},
          {"invert", invert}};
}

TEST(PreTokenizersTest, SplitBehaviours) {
  // The example of the `tokenizers` documentation of SplitDelimiterBehavior.
  const std::string s = "the-final--countdown";
  Pieces_t removed = {"the", "final", "countdown"};
  Pieces_t isolated = {"the", "-", "final", "-", "-", "countdown"};
  Pieces_t previous = {"the-", "final-", "-", "countdown"};
  Pieces_t next = {"the", "-final", "-", "-countdown"};
  Pieces_t contiguous = {"the", "-", "final", "--", "countdown"};
  EXPECT_EQ(Split(SplitOn("-", "Removed"), s, removed), removed);
  EXPECT_EQ(Split(SplitOn("-", "Isolated"), s, isolated), isolated);
  EXPECT_EQ(Split(SplitOn("-", "MergedWithPrevious"), s, previous), previous);
  EXPECT_EQ(Split(SplitOn("-", "MergedWithNext"), s, next), next);
  EXPECT_EQ(Split(SplitOn("-", "Contiguous"), s, contiguous), contiguous);
}

TEST(PreTokenizersTest, SplitRegexAndInvert) {
  Pieces_t digits = {"12", "3"};
  EXPECT_EQ(Split(SplitOn("\\d+", "Removed", true, true), "ab12cd3", digits), digits);
  Pieces_t words = {"ab", "12", "cd", "3"};
  EXPECT_EQ(Split(SplitOn("\\d+", "Isolated", true), "ab12cd3", words), words);
  // Oniguruma semantics: \s is White_Space, '$' ends a line only before "\n".
  Pieces_t spaces = {"a", "b", "c", "d"};
  EXPECT_EQ(Split(SplitOn("\\s", "Removed", true),
                  "a\x0b"
                  "b\u0085c\u00a0d",
                  spaces),
            spaces);
  Pieces_t lines = {"a", "\nb a\r\nc ", "a"};
  EXPECT_EQ(Split(SplitOn("a$", "Isolated", true), "a\nb a\r\nc a", lines), lines);
  // Case-insensitive groups, as in Llama 3's pattern.
  Pieces_t contractions = {"IT", "'S", " it", "'s"};
  EXPECT_EQ(Split(SplitOn("(?i:'s|'t)", "Isolated", true), "IT'S it's", contractions),
            contractions);
}

TEST(PreTokenizersTest, ByteLevelMapsBytesAndSplitsLikeGpt2) {
  Json bl = {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"use_regex", true}};
  Pieces_t hello = {"\u0120Hello", "\u0120my", "\u0120friend"};  // Ġ is the space byte
  EXPECT_EQ(Split(bl, "Hello my friend", hello), hello);
  // Two spaces before a word: the first stands alone (\s+(?!\S)), the second joins the word.
  bl["add_prefix_space"] = false;
  Pieces_t contraction = {"I", "'m", "\u0120", "\u0120fine", "!"};
  EXPECT_EQ(Split(bl, "I'm  fine!", contraction), contraction);
  // é is the bytes C3 A9, shown as Ã and ©.
  Pieces_t accented = {"caf\u00c3\u00a9"};
  EXPECT_EQ(Split(bl, "caf\u00e9", accented), accented);
  bl["use_regex"] = false;
  Pieces_t whole = {"a\u0120b"};
  EXPECT_EQ(Split(bl, "a b", whole), whole);
}

TEST(PreTokenizersTest, MetaspacePrependSchemes) {
  Json ms = {{"type", "Metaspace"},
             {"replacement", "\u2581"},
             {"prepend_scheme", "always"},
             {"split", true}};
  Pieces_t hey = {"\u2581Hey", "\u2581friend"};
  EXPECT_EQ(Split(ms, "Hey friend", hey), hey);
  ms["split"] = false;
  Pieces_t unsplit = {"\u2581Hey\u2581friend"};
  EXPECT_EQ(Split(ms, "Hey friend", unsplit), unsplit);
  // "first" prepends only to the piece that starts the input: not after an added token.
  ms["split"] = true;
  Json added = Json::array({Added(0, "<s>", true, false)});
  ms["prepend_scheme"] = "first";
  Pieces_t first = {"<s>", "hi", "\u2581there"};
  EXPECT_EQ(Split(ms, "<s>hi there", first, added), first);
  Pieces_t first_at_start = {"\u2581hi", "<s>"};
  EXPECT_EQ(Split(ms, "hi<s>", first_at_start, added), first_at_start);
  ms["prepend_scheme"] = "always";
  Pieces_t always = {"<s>", "\u2581hi", "\u2581there"};
  EXPECT_EQ(Split(ms, "<s>hi there", always, added), always);
  ms["prepend_scheme"] = "never";
  Pieces_t never = {"hi", "\u2581there"};
  EXPECT_EQ(Split(ms, "hi there", never), never);
}

TEST(PreTokenizersTest, DigitsWhitespacePunctuationAndSequence) {
  Pieces_t individual = {"a", "1", "2", "3", "b", "\u0663"};  // Arabic-Indic three is numeric
  EXPECT_EQ(Split({{"type", "Digits"}, {"individual_digits", true}}, "a123b\u0663", individual),
            individual);
  Pieces_t grouped = {"a", "123", "b"};
  EXPECT_EQ(Split({{"type", "Digits"}, {"individual_digits", false}}, "a123b", grouped), grouped);
  Pieces_t ws = {"Hey", "man", "!"};
  EXPECT_EQ(Split({{"type", "Whitespace"}}, "Hey man!", ws), ws);
  Pieces_t wss = {"Hey", "man!"};
  EXPECT_EQ(Split({{"type", "WhitespaceSplit"}}, "Hey \u3000man!", wss), wss);
  Pieces_t punct = {"Hey", ",", " man", "!"};
  EXPECT_EQ(Split({{"type", "Punctuation"}, {"behavior", "Isolated"}}, "Hey, man!", punct), punct);
  Json seq = {{"type", "Sequence"},
              {"pretokenizers",
               {{{"type", "WhitespaceSplit"}}, {{"type", "Digits"}, {"individual_digits", true}}}}};
  Pieces_t both = {"ab", "1", "2", "c"};
  EXPECT_EQ(Split(seq, "ab12 c", both), both);
}

}  // namespace
}  // namespace para::text_test
