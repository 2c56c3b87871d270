// Decoders of tokenizer.json ("decoder"): ByteLevel, Metaspace, ByteFallback, Fuse, Strip,
// Replace, BPEDecoder and Sequence, with the semantics of the Rust `tokenizers` library (its
// decode_chain over the token strings, then a join). Any other type (WordPiece, CTC, ...) is
// refused at load.
//
// Besides whole-sequence decoding, each decoder says what one token adds to a stream of text
// (StreamToken): the same per-token transformation, without the effects that only exist at the
// edges of a whole sequence (Metaspace's dropped leading marker in the first token, Strip after
// the tokens were fused) and keeping raw bytes (byte-level and <0xNN> tokens) for the caller's
// UTF-8 assembly. A Decoder is immutable after parsing and safe to share between threads.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_fields.h"

namespace para::text {

class Decoder {
 public:
  virtual ~Decoder() = default;
  // `tokenizers`' decode_chain: transforms the list of token strings.
  virtual void DecodeChain(std::vector<std::string>* tokens) const = 0;
  // Transforms the bytes of one token in the middle of a stream. *fused is true once an earlier
  // decoder of the chain has joined the tokens into one text.
  virtual void StreamToken(std::string* bytes, bool* fused) const = 0;
};

// Parses the decoder object at `path`; returns nullptr for JSON null.
absl::StatusOr<std::unique_ptr<Decoder>> ParseDecoder(const Json& j, const std::string& path);

// The decoded text of `tokens`: the chain, then the pieces joined; with no decoder, the tokens
// joined by spaces (as `tokenizers` does).
std::string DecodeTokens(const Decoder* decoder, std::vector<std::string> tokens);

}  // namespace para::text
