// Pre-tokenizers of tokenizer.json ("pre_tokenizer"): Split (regex or string pattern, the five
// split behaviours, invert), ByteLevel, Metaspace, Digits, Whitespace, WhitespaceSplit,
// Punctuation, CharDelimiterSplit, BertPreTokenizer and Sequence, with the semantics of the Rust
// `tokenizers` library. Any other type is refused at load with an error naming it.
// A PreTokenizer is immutable after parsing and safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_fields.h"
#include "engine/text/normalized_string.h"

namespace para::text {

// One piece of the input on its way to the model: text still to be split and tokenized, or an
// added token already matched (id >= 0), which nothing splits or changes.
struct Piece {
  NormalizedString normalized;
  int32_t id = -1;
};

// Replaces each piece that is not an added token by the pieces `split` makes of it, dropping
// empty ones.
template <typename SplitFn>
void SplitPieces(std::vector<Piece>* pieces, SplitFn&& split) {
  std::vector<Piece> out;
  out.reserve(pieces->size());
  for (Piece& p : *pieces) {
    if (p.id >= 0) {
      out.push_back(std::move(p));
      continue;
    }
    for (NormalizedString& s : split(std::move(p.normalized))) {
      if (!s.empty()) out.push_back(Piece{std::move(s), -1});
    }
  }
  *pieces = std::move(out);
}

class PreTokenizer {
 public:
  virtual ~PreTokenizer() = default;
  virtual void PreTokenize(std::vector<Piece>* pieces) const = 0;
};

// Parses the pre-tokenizer object at `path`; returns nullptr for JSON null.
absl::StatusOr<std::unique_ptr<PreTokenizer>> ParsePreTokenizer(const Json& j,
                                                                const std::string& path);

}  // namespace para::text
