// A loaded LLaMA-family model: its config, its weights in float32 (F16/BF16 checkpoints are
// widened at load), its tokenizer when the directory has one (tokenizer.json first, as
// transformers does, else sentencepiece's tokenizer.model) and its chat format when it has a chat
// template.
//
// Weights are laid out for the CPU kernels: Q, K and V projections fused into one [q+2kv, hidden]
// matrix, gate and up fused into one [2*ffn, hidden] matrix (gate rows first). Everything else
// keeps the Hugging Face layout ([out, in], row-major).
// Immutable after Load; shared read-only by the engine (safe from any thread).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/aligned_buffer.h"
#include "engine/model_config.h"
#include "engine/text/chat_format.h"
#include "engine/thread_pool.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"

namespace para {

struct LayerWeights {
  AlignedBuffer attn_norm;  // [hidden]
  AlignedBuffer wqkv;       // [q_dim + 2*kv_dim, hidden]
  AlignedBuffer wo;         // [hidden, q_dim]
  AlignedBuffer ffn_norm;   // [hidden]
  AlignedBuffer w_gate_up;  // [2*ffn, hidden]
  AlignedBuffer w_down;     // [hidden, ffn]
};

struct ModelWeights {
  AlignedBuffer embed;  // [vocab, hidden]
  std::vector<LayerWeights> layers;
  AlignedBuffer final_norm;  // [hidden]
  AlignedBuffer lm_head;     // [vocab, hidden]; empty when tied to `embed`
  const float* lm_head_data() const { return lm_head.empty() ? embed.data() : lm_head.data(); }
};

class Model {
 public:
  // Loads config, weights and tokenizer from a Hugging Face model directory. `pool` parallelises
  // the conversion (may be null).
  static absl::StatusOr<std::unique_ptr<Model>> Load(const std::string& dir, ThreadPool* pool);

  const ModelConfig& config() const { return config_; }
  const ModelWeights& weights() const { return weights_; }
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
  // Token ids that end an assistant turn besides the model's EOS ids (the chat template's
  // eos_token when it is a token of its own that config.json does not list as EOS).
  const std::vector<int32_t>& end_of_turn_ids() const { return end_of_turn_ids_; }

 private:
  std::string dir_;
  ModelConfig config_;
  ModelWeights weights_;
  absl::Status LoadText();  // tokenizer and chat format, after the config

  std::unique_ptr<Tokenizer> tokenizer_;
  std::optional<text::ChatFormat> chat_;
  std::vector<int32_t> end_of_turn_ids_;
};

// Loads `dir`/tokenizer.json (Hugging Face tokenizers) or else `dir`/tokenizer.model
// (sentencepiece); returns null (and OK) when neither exists.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

}  // namespace para
