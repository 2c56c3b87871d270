// The shape and hyper-parameters of a LLaMA-family model, read from a Hugging Face model
// directory (config.json, optional generation_config.json and tokenizer_config.json).
//
// Plain value type; copy freely. Parsing is pure and thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace para {

struct RopeScaling {
  enum class Type { kNone, kLinear, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;                     // llama3
  double high_freq_factor = 4.0;                    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3
};

// Defaults for sampling a model's card ships in generation_config.json.
struct GenerationDefaults {
  bool do_sample = false;
  std::optional<float> temperature;
  std::optional<int> top_k;
  std::optional<float> top_p;
  std::optional<float> repetition_penalty;
  std::optional<int32_t> max_new_tokens;  // the default for requests that set no max_tokens
};

struct ModelConfig {
  std::string architecture = "LlamaForCausalLM";
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;
  int64_t num_hidden_layers = 0;
  int64_t num_attention_heads = 0;
  int64_t num_key_value_heads = 0;
  int64_t head_dim = 0;
  double rms_norm_eps = 1e-6;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  int64_t vocab_size = 0;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = 1;
  std::vector<int32_t> eos_token_ids = {2};
  bool add_bos_token = true;  // from tokenizer_config.json when present
  GenerationDefaults generation;

  int64_t q_dim() const { return num_attention_heads * head_dim; }
  int64_t kv_dim() const { return num_key_value_heads * head_dim; }
  // Parameter count of the decoder (embeddings and LM head included).
  int64_t NumParameters() const;
};

// Parses config.json text, in the transformers 4 layout (top-level rope_theta, rope_scaling) or
// the transformers 5 one (rope_parameters). Fields that change the math and that the engine does
// not implement (other rope types, biases, sliding windows, quantization) are errors naming the
// field, as are sizes past sane limits. `source` names the file in errors.
absl::StatusOr<ModelConfig> ParseModelConfig(const std::string& json_text,
                                             const std::string& source);
// Applies generation_config.json text (eos/bos ids and sampling defaults) to `config`.
absl::Status ApplyGenerationConfig(const std::string& json_text, const std::string& source,
                                   ModelConfig* config);
// Reads config.json, and generation_config.json / tokenizer_config.json when present, from `dir`.
absl::StatusOr<ModelConfig> LoadModelConfig(const std::string& dir);
// Serialises the fields above as a Hugging Face config.json.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace para
