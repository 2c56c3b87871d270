// A loaded LLaMA-family model: its config, its checkpoint tensors as stored (memory-mapped and
// validated: every tensor present with its shape and a float dtype; no weight is converted or
// copied here — a backend lays them out as it likes), its tokenizer when the directory has one
// (tokenizer.json first, as transformers does, else sentencepiece's tokenizer.model) and its chat
// format when it has a chat template.
// Immutable after Load; shared read-only by the engine and its backend (safe from any thread).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/safetensors.h"
#include "engine/text/chat_format.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"

namespace para {

// One decoder layer's checkpoint tensors ([out, in] matrices, [hidden] norm weights), pointing
// into the model's memory-mapped files.
struct LayerTensors {
  const TensorView* attn_norm = nullptr;
  const TensorView *q = nullptr, *k = nullptr, *v = nullptr, *o = nullptr;
  const TensorView* ffn_norm = nullptr;
  const TensorView *gate = nullptr, *up = nullptr, *down = nullptr;
};

struct ModelTensors {
  const TensorView* embed = nullptr;  // [vocab, hidden]
  std::vector<LayerTensors> layers;
  const TensorView* final_norm = nullptr;  // [hidden]
  const TensorView* lm_head = nullptr;     // [vocab, hidden]; the embedding when tied
};

class Model {
 public:
  // Loads config, tensors and tokenizer from a Hugging Face model directory.
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const ModelTensors& tensors() const { return tensors_; }
  // The dtype most of the weight bytes are stored in (F32, F16 or BF16).
  DType stored_dtype() const { return stored_dtype_; }
  // Null when the directory has neither tokenizer.json nor tokenizer.model.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  // Null when the model has no chat template.
  const text::ChatFormat* chat_format() const { return chat_ ? &*chat_ : nullptr; }
  const std::string& dir() const { return dir_; }

  // Tokenizes a prompt as transformers' tokenizer(text) does: the tokenizer's own post-processor
  // adds its special tokens (tokenizer.json); without one, BOS is added when the model's
  // tokenizer config asks for it.
  absl::StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& text) const;
  // Renders a conversation (a JSON array of {role, content, ...}) with the model's chat template
  // and tokenizes it without adding special tokens (the template writes them), as
  // apply_chat_template(tokenize=True) does. FAILED_PRECONDITION without a chat template or a
  // tokenizer; INVALID_ARGUMENT for a conversation the template refuses.
  absl::StatusOr<std::vector<int32_t>> EncodeChat(const nlohmann::ordered_json& messages,
                                                  const text::ChatOptions& options) const;
  // The longest text one token stands for, in bytes (its raw bytes or its piece, whichever is
  // longer; 0 without a tokenizer). A text of more than max_model_len × this × 2 bytes cannot fit
  // in the context (the 2 allows for normalizers that compose characters), so it is refused
  // before the (costly) tokenization.
  int64_t max_token_bytes() const { return max_token_bytes_; }
  // Token ids that end an assistant turn besides the model's EOS ids (the chat template's
  // eos_token when it is a token of its own that config.json does not list as EOS).
  const std::vector<int32_t>& end_of_turn_ids() const { return end_of_turn_ids_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::unique_ptr<TensorStore> store_;
  ModelTensors tensors_;
  DType stored_dtype_ = DType::kF32;
  absl::Status LoadText();  // tokenizer and chat format, after the config

  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<text::ChatFormat> chat_;
  std::vector<int32_t> end_of_turn_ids_;
  int64_t max_token_bytes_ = 0;
};

// Loads `dir`/tokenizer.json (Hugging Face tokenizers) or else `dir`/tokenizer.model
// (sentencepiece); returns null (and OK) when neither exists.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

}  // namespace para
