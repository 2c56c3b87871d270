// libFuzzer target: tokenizer.json loading (ParseHfTokenizer) on arbitrary text. A document must
// load or be refused with a status, never crash; a tokenizer that loads must encode and decode
// text and answer for every id in its vocabulary range without crashing.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "engine/text/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto tok = para::ParseHfTokenizer(text, "fuzz/tokenizer.json");
  if (!tok.ok()) return 0;
  const para::Tokenizer& t = **tok;
  std::vector<int32_t> ids = t.Encode("Hello, world! 12 ÿ日本 \n\t <s> ");
  (void)t.ApplyPostProcessor(&ids);
  (void)t.Decode(ids);
  (void)t.Decode(ids, /*skip_special_tokens=*/true);
  const int32_t n = std::min<int32_t>(t.vocab_size(), 512);
  std::vector<int32_t> all;
  for (int32_t id = -1; id <= n; ++id) {
    (void)t.TokenBytes(id);
    (void)t.IdToPiece(id);
    (void)t.IsSpecial(id);
    all.push_back(id);
  }
  (void)t.Decode(all);
  return 0;
}
