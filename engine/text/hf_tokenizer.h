// Tokenizers described by Hugging Face's tokenizer.json, conformant with the `tokenizers`
// library (the PyPI package, 0.23): a BPE model (byte-level or sentencepiece-style with byte
// fallback), normalizers, pre-tokenizers, added tokens, post-processors and decoders; see the
// headers of this folder for what each accepts. Whatever the file holds that is not implemented
// (another model type, an unknown component, BPE dropout) is refused at load with an error that
// names the file and the JSON path.
//
// The returned para::Tokenizer is immutable apart from an internally locked, bounded BPE word
// cache: all its methods are const and may be called from any number of threads at once. The
// caller owns it.
//
// Behaviour of the para::Tokenizer methods:
//  - Encode(text): encode(text, add_special_tokens=False).ids. Text that is not valid UTF-8 is
//    first made valid (each ill-formed sequence becomes U+FFFD).
//  - ApplyPostProcessor(ids): the post-processor's special tokens (add_special_tokens=True);
//    false when the file has no post-processor (null), which also adds nothing in `tokenizers`.
//  - Decode(ids, skip_special_tokens): decode(ids, skip_special_tokens); ids that name no token
//    are dropped, as `tokenizers` does. Decode(ids) is Decode(ids, false).
//  - TokenBytes(id): what the token adds to a stream of generated text, as raw bytes: the
//    decoder chain applied to that one token as if it were in the middle of a sequence (bytes of
//    byte-level tokens, the byte of <0xNN>, the Metaspace marker as a space); "" for special
//    tokens. Concatenated (and completed as UTF-8 by the IncrementalDetokenizer) this is the
//    decoded text, except where whole-sequence decoding differs on purpose: (1) at the very start
//    of a sequence, a Metaspace decoder drops the markers of the first token and a Strip decoder
//    after Fuse strips the first character(s); a streamed continuation keeps them, as HF decodes
//    a continuation after earlier text; (2) bytes that are not valid UTF-8: HF's ByteLevel decoder
//    replaces each maximal ill-formed subsequence by one U+FFFD and ByteFallback replaces every
//    byte of an invalid run of <0xNN> tokens, while the IncrementalDetokenizer replaces bytes one
//    lead byte at a time; (3) a Replace decoder after Fuse whose pattern spans token boundaries,
//    and Strip's trailing characters at the end of a sequence; (4) BPEDecoder turns the suffix of
//    the last token of a sequence into nothing, of a streamed token into a space; (5) with no
//    decoder, `tokenizers` joins tokens with spaces and TokenBytes is the bare token.
//  - IdToPiece(id): the token's string ("" if none); PieceToId: added tokens first, then the
//    model's vocab; IsSpecial: added tokens marked special.
//  - vocab_size(): 1 + the largest id of the model's vocab and the added tokens.
// The file's "truncation" and "padding" are not applied (transformers turns them off for its
// encode calls too; the server limits lengths itself).
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"

namespace para {

// Loads a tokenizer.json file.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& tokenizer_json_path);

// Parses a tokenizer.json document held in memory; errors start with `name`.
absl::StatusOr<std::unique_ptr<Tokenizer>> ParseHfTokenizer(std::string_view json_text,
                                                            const std::string& name);

}  // namespace para
