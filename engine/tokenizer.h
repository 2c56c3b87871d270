// Tokenizer interface of the engine, and its sentencepiece implementation's factory. The
// tokenizer.json implementation lives in engine/text/hf_tokenizer.h.
//
// This header deliberately includes no abseil header: Debian's sentencepiece_processor.h
// declares its own absl::string_view, so the one file that includes it
// (sentencepiece_tokenizer.cc) sees only this interface. Errors are reported as strings here and
// turned into absl::Status by LoadTokenizer (tokenizer_loader.h).
// A Tokenizer is immutable after loading; all methods are const and safe from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace para {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  // Text -> ids, without BOS/EOS (the caller adds BOS as the model config says).
  virtual std::vector<int32_t> Encode(std::string_view text) const = 0;
  // Ids -> text, the way the tokenizer library decodes a whole sequence.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
  // The raw bytes token `id` adds to a stream of text: "▁" becomes a space, byte-fallback pieces
  // <0xNN> become that single byte (possibly part of a multi-byte UTF-8 character), control
  // tokens (BOS, EOS, ...) add nothing. Concatenating TokenBytes of generated ids is the text.
  virtual std::string TokenBytes(int32_t id) const = 0;
  virtual std::string IdToPiece(int32_t id) const = 0;
  virtual int32_t vocab_size() const = 0;

  // Ids -> text as Hugging Face's decode(ids, skip_special_tokens) does; special tokens are
  // dropped when `skip_special_tokens`. The default ignores the flag (sentencepiece's decoder
  // drops control tokens itself).
  virtual std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const {
    return Decode(ids);
  }
  // Adds the special tokens of the tokenizer's own post-processor around the ids of one sequence
  // (what encode(text, add_special_tokens=True) adds) and returns true; returns false, leaving
  // `ids` alone, when the tokenizer defines none, so that the caller adds BOS as the model config
  // says.
  virtual bool ApplyPostProcessor(std::vector<int32_t>* ids) const { return false; }
  // Whether `id` is a special token (skipped by Decode with skip_special_tokens).
  virtual bool IsSpecial(int32_t id) const { return false; }
  // The id of the token spelled `piece` (special tokens included, e.g. "<|im_end|>"), -1 if none.
  virtual int32_t PieceToId(std::string_view piece) const { return -1; }
};

// Loads a sentencepiece model file (LLaMA's tokenizer.model). On failure returns nullptr and
// sets *error. Sentencepiece itself lives in libpara_sentencepiece.so, loaded on first use with
// its own symbol scope (sentencepiece_shim.cc); a missing library is an error here too.
std::unique_ptr<Tokenizer> LoadSentencePieceTokenizer(const std::string& path, std::string* error);

// Trains a BPE sentencepiece model with byte fallback, LLaMA-style special ids
// (unk=0, bos=1, eos=2), from a text file with one sentence per line. Writes
// `model_prefix`.model and `model_prefix`.vocab. Returns false and sets *error on failure.
bool TrainSentencePieceBpe(const std::string& corpus_path, const std::string& model_prefix,
                           int vocab_size, std::string* error);

}  // namespace para
