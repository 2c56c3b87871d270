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
                  absl::StatusCode::kUnimplemented, "rope_scaling type 'yarn' is not supported"},
        BadConfig{"gelu", R"({"model_type":"llama",)" BASE R"(,"hidden_act":"gelu"})",
                  absl::StatusCode::kUnimplemented, "hidden_act 'gelu'"},
        BadConfig{"bias", R"({"model_type":"llama",)" BASE R"(,"attention_bias":true})",
                  absl::StatusCode::kUnimplemented, "'attention_bias': true is not supported"},
        BadConfig{"eos_outside", R"({"model_type":"llama",)" BASE R"(,"eos_token_id":100})",
                  absl::StatusCode::kInvalidArgument,
                  "eos_token_id 100 is outside the vocabulary"}),
    [](const auto& info) { return std::string(info.param.name); });
#undef BASE

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
