// config.json parsing: the fields LLaMA checkpoints use, and clear errors for the rest.
#include "engine/model_config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace para {
namespace {

using ::testing::HasSubstr;

constexpr const char* kTinyLlama = R"({
  "architectures": ["LlamaForCausalLM"], "hidden_size": 2048, "intermediate_size": 5632,
  "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4,
  "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "max_position_embeddings": 2048,
  "vocab_size": 32000, "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2,
  "hidden_act": "silu", "torch_dtype": "bfloat16", "rope_scaling": null})";

TEST(ModelConfigTest, ParsesTinyLlamaConfig) {
  auto c = ParseModelConfig(kTinyLlama, "config.json");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->hidden_size, 2048);
  EXPECT_EQ(c->num_key_value_heads, 4);
  EXPECT_EQ(c->head_dim, 64);
  EXPECT_EQ(c->q_dim(), 2048);
  EXPECT_EQ(c->kv_dim(), 256);
  EXPECT_DOUBLE_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{2});
  // TinyLlama-1.1B has 1,100,048,384 parameters.
  EXPECT_EQ(c->NumParameters(), 1100048384);
}

TEST(ModelConfigTest, DefaultsAndOptionalFields) {
  auto c = ParseModelConfig(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"head_dim":32,
    "eos_token_id":[2,7],"rope_scaling":{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,
    "high_freq_factor":4.0,"original_max_position_embeddings":8192}})",
                            "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->num_key_value_heads, 4);  // defaults to num_attention_heads
  EXPECT_EQ(c->head_dim, 32);            // explicit head_dim wins over hidden / heads
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 7}));
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(c->rope_scaling.factor, 8.0);
}

struct BadConfig {
  const char* name;
  const char* json;
  absl::StatusCode code;
  const char* message;
};

class ModelConfigBadTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ModelConfigBadTest, Rejects) {
  auto c = ParseModelConfig(GetParam().json, "dir/config.json");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), GetParam().code) << c.status();
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("dir/config.json"));
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(GetParam().message));
}

#define BASE \
  R"("hidden_size":64,"intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100)"
INSTANTIATE_TEST_SUITE_P(
    Bad, ModelConfigBadTest,
    ::testing::Values(
        BadConfig{"not_json", "{", absl::StatusCode::kInvalidArgument, "not a valid JSON object"},
        BadConfig{"mistral", R"({"architectures":["MistralForCausalLM"],)" BASE "}",
                  absl::StatusCode::kUnimplemented,
                  "unsupported architecture 'MistralForCausalLM'"},
        BadConfig{"no_arch", "{" BASE "}", absl::StatusCode::kInvalidArgument,
                  "identifies a LLaMA model"},
        BadConfig{
            "missing_hidden",
            R"({"model_type":"llama","intermediate_size":1,"num_hidden_layers":1,"num_attention_heads":1,"vocab_size":5})",
            absl::StatusCode::kInvalidArgument, "missing required field 'hidden_size'"},
        BadConfig{"gqa_mismatch", R"({"model_type":"llama",)" BASE R"(,"num_key_value_heads":3})",
                  absl::StatusCode::kInvalidArgument, "not a multiple of num_key_value_heads"},
        BadConfig{"negative", R"({"model_type":"llama",)" BASE R"(,"max_position_embeddings":-1})",
                  absl::StatusCode::kInvalidArgument,
                  "'max_position_embeddings' must be a positive integer"},
        BadConfig{"wrong_type", R"({"model_type":"llama",)" BASE R"(,"tie_word_embeddings":"yes"})",
                  absl::StatusCode::kInvalidArgument, "type must be boolean"},
        BadConfig{"yarn",
                  R"({"model_type":"llama",)" BASE R"(,"rope_scaling":{"type":"yarn","factor":2}})",
                  absl::StatusCode::kUnimplemented,
                  "rope type 'yarn' in 'rope_scaling' is not supported"},
        BadConfig{"yarn_v5",
                  R"({"model_type":"llama",)" BASE
                  R"(,"rope_parameters":{"rope_type":"yarn","rope_theta":1e4,"factor":2}})",
                  absl::StatusCode::kUnimplemented,
                  "rope type 'yarn' in 'rope_parameters' is not supported"},
        BadConfig{"dynamic",
                  R"({"model_type":"llama",)" BASE
                  R"(,"rope_scaling":{"rope_type":"dynamic","factor":2}})",
                  absl::StatusCode::kUnimplemented, "rope type 'dynamic'"},
        BadConfig{"linear_no_factor",
                  R"({"model_type":"llama",)" BASE
                  R"(,"rope_parameters":{"rope_type":"linear","rope_theta":1e4}})",
                  absl::StatusCode::kInvalidArgument, "needs a positive 'factor'"},
        BadConfig{"partial_rotary",
                  R"({"model_type":"llama",)" BASE
                  R"(,"rope_parameters":{"rope_theta":1e4,"partial_rotary_factor":0.5}})",
                  absl::StatusCode::kUnimplemented, "partial_rotary_factor"},
        BadConfig{"per_layer_rope",
                  R"({"model_type":"llama",)" BASE
                  R"(,"rope_parameters":{"full_attention":{"rope_theta":1e4},)"
                  R"("sliding_attention":{"rope_theta":1e6}}})",
                  absl::StatusCode::kUnimplemented, "differ between layer types"},
        BadConfig{"rope_params_not_object",
                  R"({"model_type":"llama",)" BASE R"(,"rope_parameters":5})",
                  absl::StatusCode::kInvalidArgument, "'rope_parameters' must be an object"},
        BadConfig{"sliding_window", R"({"model_type":"llama",)" BASE R"(,"sliding_window":4096})",
                  absl::StatusCode::kUnimplemented, "'sliding_window': 4096"},
        BadConfig{"layer_types",
                  R"({"model_type":"llama",)" BASE
                  R"(,"layer_types":["full_attention","sliding_attention"]})",
                  absl::StatusCode::kUnimplemented, "layer type \"sliding_attention\""},
        BadConfig{"mlp_bias", R"({"model_type":"llama",)" BASE R"(,"mlp_bias":true})",
                  absl::StatusCode::kUnimplemented, "'mlp_bias': true is not supported"},
        BadConfig{"quantized",
                  R"({"model_type":"llama",)" BASE
                  R"(,"quantization_config":{"quant_method":"gptq"}})",
                  absl::StatusCode::kUnimplemented, "quantized checkpoint"},
        BadConfig{"huge_vocab",
                  R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,)"
                  R"("num_hidden_layers":2,"num_attention_heads":4,"vocab_size":1099511627776})",
                  absl::StatusCode::kInvalidArgument, "'vocab_size' is 1099511627776; at most"},
        BadConfig{"huge_hidden",
                  R"({"model_type":"llama","hidden_size":1048576,"intermediate_size":128,)"
                  R"("num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100})",
                  absl::StatusCode::kInvalidArgument, "'hidden_size' is 1048576"},
        BadConfig{"gelu", R"({"model_type":"llama",)" BASE R"(,"hidden_act":"gelu"})",
                  absl::StatusCode::kUnimplemented, "hidden_act 'gelu'"},
        BadConfig{"bias", R"({"model_type":"llama",)" BASE R"(,"attention_bias":true})",
                  absl::StatusCode::kUnimplemented, "'attention_bias': true is not supported"},
        BadConfig{"eos_outside", R"({"model_type":"llama",)" BASE R"(,"eos_token_id":100})",
                  absl::StatusCode::kInvalidArgument,
                  "eos_token_id 100 is outside the vocabulary"}),
    [](const auto& info) { return std::string(info.param.name); });
#undef BASE

// transformers 5 writes RoPE as "rope_parameters" with the base frequency inside; it wins over a
// top-level rope_theta (SmolLM2-135M-Instruct saved by transformers 5 has theta 100000 there only).
TEST(ModelConfigTest, ReadsTransformers5RopeParameters) {
  auto c = ParseModelConfig(R"({"model_type":"llama","hidden_size":576,"intermediate_size":1536,
    "num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"vocab_size":49152,
    "rope_parameters":{"rope_theta":100000.0,"rope_type":"default"},"tie_word_embeddings":true,
    "attention_bias":false,"mlp_bias":false,"sliding_window":null,"pretraining_tp":1})",
                            "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_DOUBLE_EQ(c->rope_theta, 100000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c->head_dim, 64);

  auto llama3 = ParseModelConfig(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"rope_theta":10000.0,
    "rope_parameters":{"rope_type":"llama3","rope_theta":500000.0,"factor":32.0,
    "low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":8192}})",
                                 "c");
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_DOUBLE_EQ(llama3->rope_theta, 500000.0);
  EXPECT_EQ(llama3->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_DOUBLE_EQ(llama3->rope_scaling.factor, 32.0);

  // One set per layer type, all equal: accepted.
  auto per_type = ParseModelConfig(R"({"model_type":"llama","hidden_size":64,
    "intermediate_size":128,"num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,
    "rope_parameters":{"full_attention":{"rope_type":"linear","rope_theta":20000.0,"factor":2}}})",
                                   "c");
  ASSERT_TRUE(per_type.ok()) << per_type.status();
  EXPECT_DOUBLE_EQ(per_type->rope_theta, 20000.0);
  EXPECT_EQ(per_type->rope_scaling.type, RopeScaling::Type::kLinear);

  // transformers 4: top-level theta, rope_scaling without theta.
  auto v4 = ParseModelConfig(R"({"model_type":"llama","hidden_size":64,"intermediate_size":128,
    "num_hidden_layers":2,"num_attention_heads":4,"vocab_size":100,"rope_theta":40000.0,
    "rope_scaling":{"type":"linear","factor":4.0}})",
                             "c");
  ASSERT_TRUE(v4.ok()) << v4.status();
  EXPECT_DOUBLE_EQ(v4->rope_theta, 40000.0);
  EXPECT_DOUBLE_EQ(v4->rope_scaling.factor, 4.0);
}

TEST(ModelConfigTest, GenerationConfigOverridesEosAndSampling) {
  auto c = ParseModelConfig(kTinyLlama, "config.json");
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE(ApplyGenerationConfig(
                  R"({"eos_token_id":[2,5],"do_sample":true,"temperature":0.6,"top_p":0.9})",
                  "generation_config.json", &*c)
                  .ok());
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{2, 5}));
  EXPECT_TRUE(c->generation.do_sample);
  EXPECT_FLOAT_EQ(*c->generation.temperature, 0.6f);
  EXPECT_FLOAT_EQ(*c->generation.top_p, 0.9f);
  EXPECT_FALSE(c->generation.top_k.has_value());
  EXPECT_FALSE(c->generation.max_new_tokens.has_value());
  ASSERT_TRUE(ApplyGenerationConfig(R"({"max_new_tokens":256})", "g", &*c).ok());
  EXPECT_EQ(c->generation.max_new_tokens, 256);
  EXPECT_FALSE(ApplyGenerationConfig(R"({"max_new_tokens":-3})", "g", &*c).ok());
}

TEST(ModelConfigTest, JsonRoundTrip) {
  auto c = ParseModelConfig(kTinyLlama, "config.json");
  ASSERT_TRUE(c.ok());
  auto again = ParseModelConfig(ModelConfigToJson(*c), "round-trip");
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->NumParameters(), c->NumParameters());
  EXPECT_EQ(again->num_key_value_heads, 4);
}

}  // namespace
}  // namespace para
