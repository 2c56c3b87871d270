// The sentencepiece tokenizer of the tiny model: round trips, byte fallback, and streaming that
// never emits half a character.
#include <gtest/gtest.h>

#include "engine/text/detokenizer.h"
#include "engine/model.h"
#include "tests/engine/test_model.h"

namespace para {
namespace {

const char* kTexts[] = {"Hello world", "café naïve über 你好 世界 🙂 €5",
                        "numbers 12345 and    spaces", "Ünïcödé façade — tail", "x"};

std::unique_ptr<Tokenizer> Tiny() {
  auto t = LoadTokenizer(testing::DefaultTinyModelDir());
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? *std::move(t) : nullptr;
}

bool IsValidUtf8(const std::string& s) {
  std::string copy = s;
  return TakeCompleteUtf8(&copy) == s && copy.empty();
}

TEST(TokenizerTest, RoundTripsIncludingByteFallback) {
  auto tok = Tiny();
  ASSERT_NE(tok, nullptr);
  for (const char* text : kTexts) {
    auto ids = tok->Encode(text);
    EXPECT_FALSE(ids.empty());
    EXPECT_EQ(tok->Decode(ids), text);
  }
}

TEST(TokenizerTest, TokenBytesConcatenateToTheTextWithItsDummyPrefix) {
  auto tok = Tiny();
  ASSERT_NE(tok, nullptr);
  for (const char* text : kTexts) {
    std::string bytes;
    for (int32_t id : tok->Encode(text)) bytes += tok->TokenBytes(id);
    EXPECT_EQ(bytes, std::string(" ") + text);
  }
  EXPECT_EQ(tok->TokenBytes(1), "");  // BOS is a control token: no text
  EXPECT_EQ(tok->TokenBytes(2), "");  // EOS
}

TEST(TokenizerTest, StreamingNeverEmitsPartialCharacters) {
  auto tok = Tiny();
  ASSERT_NE(tok, nullptr);
  const std::string text = "日本 🚀 жß café 世界";  // 日本, 🚀, ж, ß are not in the training text
  auto ids = tok->Encode(text);
  int byte_tokens = 0;
  for (int32_t id : ids) byte_tokens += tok->IdToPiece(id).rfind("<0x", 0) == 0;
  EXPECT_GT(byte_tokens, 0) << "the test text should exercise byte fallback";
  IncrementalDetokenizer d(tok.get());
  std::string out;
  for (int32_t id : ids) {
    std::string delta = d.Append(id);
    EXPECT_TRUE(IsValidUtf8(delta)) << "delta for id " << id;
    out += delta;
  }
  out += d.Flush();
  EXPECT_EQ(out, " " + text);
}

TEST(TokenizerTest, PromptGetsBosFromConfig) {
  EngineOptions o;
  ThreadPool pool(1);
  auto model = Model::Load(testing::DefaultTinyModelDir());
  ASSERT_TRUE(model.ok()) << model.status();
  auto ids = (*model)->EncodePrompt("Hello");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ((*ids)[0], (*model)->config().bos_token_id);
  EXPECT_EQ(std::vector<int32_t>(ids->begin() + 1, ids->end()),
            (*model)->tokenizer()->Encode("Hello"));
}

}  // namespace
}  // namespace para
