// A loaded LLaMA-family model: its config, its weights in float32 (F16/BF16 checkpoints are
// widened at load), and its tokenizer when the directory has one.
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
#include "engine/thread_pool.h"
#include "engine/tokenizer.h"

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
  // Null when the directory has no tokenizer.model.
  const Tokenizer* tokenizer() const { return tokenizer_.get(); }
  const std::string& dir() const { return dir_; }

  // Tokenizes a prompt, with BOS first when the model's tokenizer config asks for it.
  absl::StatusOr<std::vector<int32_t>> EncodePrompt(const std::string& text) const;

 private:
  std::string dir_;
  ModelConfig config_;
  ModelWeights weights_;
  std::unique_ptr<Tokenizer> tokenizer_;
};

// Loads `dir`/tokenizer.model; returns null (and OK) when the file does not exist.
absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir);

}  // namespace para
