// PEFT LoRA adapter loading: PEFT's layout and config keys load; per-module rank and alpha
// follow rank_pattern / alpha_pattern and rsLoRA; every unsupported or broken adapter is refused
// with a message naming the file and tensor or key.
#include "engine/lora_adapter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/safetensors.h"
#include "nlohmann/json.hpp"
#include "tests/engine/test_model.h"
#include "tools/safetensors_writer.h"
#include "tools/tiny_lora.h"

namespace para {
namespace {

using ::testing::HasSubstr;

ModelConfig Tiny() { return *LoadModelConfig(testing::DefaultTinyModelDir()); }

std::string Make(const tools::TinyLoraOptions& o = {}) {
  const std::string dir = testing::MakeTempDir("lora_");
  EXPECT_TRUE(tools::MakeTinyLoraAdapter(dir, testing::DefaultTinyModelDir(), o).ok());
  return dir;
}

// Changes one key of adapter_config.json.
void SetKey(const std::string& dir, const std::string& key, const nlohmann::json& value) {
  const std::string path = dir + "/adapter_config.json";
  nlohmann::json j = nlohmann::json::parse(std::ifstream(path));
  j[key] = value;
  std::ofstream(path, std::ios::trunc) << j.dump();
}

absl::Status LoadStatus(const std::string& dir, int64_t max_rank = 64) {
  return LoraAdapter::Load(dir, Tiny(), max_rank).status();
}

TEST(LoraAdapterTest, LoadsAllSevenProjectionsIntoSites) {
  tools::TinyLoraOptions o;
  o.targets = *tools::ParseLoraTargets("all");
  o.r = 8;
  o.alpha = 16;
  auto a = LoraAdapter::Load(Make(o), Tiny(), 64);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->targets().size(), 7u);
  const LoraLayer& l = (*a)->layer(1);
  const LoraSiteWeights& qkv = l.sites[static_cast<int>(LoraSite::kQkv)];
  ASSERT_EQ(qkv.modules.size(), 3u);
  EXPECT_EQ(qkv.total_rank, 24);
  EXPECT_EQ(qkv.in_dim, 64);
  EXPECT_EQ(qkv.modules[1].target, LoraTarget::kK);
  EXPECT_EQ(qkv.modules[1].a_offset, 8);
  EXPECT_EQ(qkv.modules[1].out_offset, 64);     // k columns follow q's 64
  EXPECT_EQ(qkv.modules[2].out_offset, 96);     // v follows k's 32
  EXPECT_FLOAT_EQ(qkv.modules[0].scale, 2.0f);  // alpha / r
  EXPECT_EQ(l.sites[static_cast<int>(LoraSite::kGateUp)].modules[1].out_offset, 128);
  EXPECT_EQ(l.sites[static_cast<int>(LoraSite::kDown)].in_dim, 128);
  EXPECT_EQ((*a)->num_parameters(),
            2 * 8 * ((64 + 64) + (64 + 32) * 2 + (64 + 64) + (64 + 128) * 3));
}

TEST(LoraAdapterTest, RsLoraAndPatternsSetPerModuleRankAndScale) {
  tools::TinyLoraOptions o;
  o.targets = *tools::ParseLoraTargets("q_proj,v_proj");
  o.r = 16;
  o.alpha = 32;
  o.rslora = true;
  o.rank_pattern = {{"q_proj", 4}};
  const std::string dir = Make(o);
  SetKey(dir, "alpha_pattern", {{"layers\\.1\\.self_attn\\.v_proj", 8.0}});
  auto a = LoraAdapter::Load(dir, Tiny(), 64);
  ASSERT_TRUE(a.ok()) << a.status();
  const auto& l0 = (*a)->layer(0).sites[0].modules;
  const auto& l1 = (*a)->layer(1).sites[0].modules;
  EXPECT_EQ(l0[0].rank, 4);
  EXPECT_FLOAT_EQ(l0[0].scale, 32.0f / 2.0f);  // alpha / sqrt(4)
  EXPECT_EQ(l0[1].rank, 16);
  EXPECT_FLOAT_EQ(l0[1].scale, 32.0f / 4.0f);  // alpha / sqrt(16)
  EXPECT_FLOAT_EQ(l1[1].scale, 8.0f / 4.0f);   // alpha_pattern hits layer 1's v_proj only
}

TEST(LoraAdapterTest, OverlappingPatternsTakeTheFirstKeyInFileOrder) {
  tools::TinyLoraOptions o;
  o.targets = *tools::ParseLoraTargets("q_proj,k_proj");
  o.r = 4;
  const std::string dir = Make(o);
  // Written by hand so the keys stay in this (unsorted) order.
  std::ofstream(dir + "/adapter_config.json", std::ios::trunc)
      << R"({"peft_type":"LORA","r":4,"lora_alpha":8,"target_modules":["q_proj","k_proj"],)"
      << R"("alpha_pattern":{"k_proj":2.5,".*_proj":9}})";
  auto a = LoraAdapter::Load(dir, Tiny(), 64);
  ASSERT_TRUE(a.ok()) << a.status();
  const auto& mods = (*a)->layer(0).sites[0].modules;
  EXPECT_FLOAT_EQ(mods[0].scale, 9.0f / 4);  // q_proj: only ".*_proj" matches
  EXPECT_FLOAT_EQ(mods[1].scale, 2.5f / 4);  // k_proj: "k_proj" comes first in the file
}

struct BadCase {
  const char* name;
  std::function<void(const std::string& dir)> edit;
  absl::StatusCode code;
  const char* message;
  friend void PrintTo(const BadCase& c, std::ostream* os) { *os << c.name; }
};

class LoraBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(LoraBadTest, Refused) {
  const std::string dir = Make();
  GetParam().edit(dir);
  absl::Status s = LoadStatus(dir, 32);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), GetParam().code) << s;
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().message));
}

auto Key(const char* key, nlohmann::json value) {
  return [key, value](const std::string& dir) { SetKey(dir, key, value); };
}

auto Tensors(std::function<void(std::vector<tools::TensorSpec>&)> edit) {
  return [edit](const std::string& dir) {
    testing::EditSafetensors(dir + "/adapter_model.safetensors", edit);
  };
}

const char* kQA0 = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

INSTANTIATE_TEST_SUITE_P(
    Adapters, LoraBadTest,
    ::testing::Values(
        BadCase{"para_type", Key("peft_type", "PARA"), absl::StatusCode::kInvalidArgument,
                "expected \"LORA\""},
        BadCase{"no_r",
                [](const std::string& d) {
                  nlohmann::json j =
                      nlohmann::json::parse(std::ifstream(d + "/adapter_config.json"));
                  j.erase("r");
                  std::ofstream(d + "/adapter_config.json", std::ios::trunc) << j.dump();
                },
                absl::StatusCode::kInvalidArgument, "missing 'r'"},
        BadCase{"dora", Key("use_dora", true), absl::StatusCode::kUnimplemented, "DoRA"},
        BadCase{"bias", Key("bias", "all"), absl::StatusCode::kUnimplemented, "LoRA bias"},
        BadCase{"modules_to_save", Key("modules_to_save", {"lm_head"}),
                absl::StatusCode::kUnimplemented, "modules_to_save"},
        BadCase{"fan_in_fan_out", Key("fan_in_fan_out", true), absl::StatusCode::kUnimplemented,
                "fan_in_fan_out"},
        BadCase{"alpha_string", Key("lora_alpha", "big"), absl::StatusCode::kInvalidArgument,
                "'lora_alpha' must be a number"},
        BadCase{"alpha_huge", Key("lora_alpha", 1e308), absl::StatusCode::kInvalidArgument,
                "'lora_alpha' must be a number in (0, 65536], got 1e+308"},
        BadCase{"alpha_negative", Key("lora_alpha", -16), absl::StatusCode::kInvalidArgument,
                "'lora_alpha' must be a number in (0, 65536], got -16"},
        BadCase{"alpha_pattern_negative", Key("alpha_pattern", {{"q_proj", -1}}),
                absl::StatusCode::kInvalidArgument, "alpha_pattern['q_proj'] must be a number in"},
        BadCase{"not_targeted", Key("target_modules", {"k_proj"}),
                absl::StatusCode::kInvalidArgument, "which target_modules in"},
        BadCase{"lm_head_tensor", Tensors([](auto& s) {
                  s.push_back({"base_model.model.lm_head.lora_A.weight",
                               DType::kF32,
                               {8, 64},
                               [](float* d, int64_t n) { std::fill(d, d + n, 0.f); }});
                }),
                absl::StatusCode::kInvalidArgument,
                "unsupported tensor 'base_model.model.lm_head.lora_A.weight'"},
        BadCase{"wrong_parent", Tensors([](auto& s) {
                  for (auto& t : s)
                    if (t.name == kQA0)
                      t.name = "base_model.model.model.layers.0.mlp.q_proj.lora_A.weight";
                }),
                absl::StatusCode::kInvalidArgument, "puts q_proj under mlp"},
        BadCase{"layer_out_of_range", Tensors([](auto& s) {
                  for (auto& t : s)
                    if (t.name == kQA0)
                      t.name = "base_model.model.model.layers.9.self_attn.q_proj.lora_A.weight";
                }),
                absl::StatusCode::kInvalidArgument,
                "is for layer 9 but the base model has 2 layers"},
        BadCase{"missing_b", Tensors([](auto& s) {
                  std::erase_if(s, [](auto& t) {
                    return t.name ==
                           "base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight";
                  });
                }),
                absl::StatusCode::kInvalidArgument,
                "'base_model.model.model.layers.1.self_attn.v_proj.lora_B.weight' is missing"},
        BadCase{"wrong_shape", Tensors([](auto& s) {
                  for (auto& t : s)
                    if (t.name == kQA0) t.shape = {8, 32};
                }),
                absl::StatusCode::kInvalidArgument, "has shape [8, 32], expected [8, 64]"},
        BadCase{"nan", Tensors([](auto& s) {
                  for (auto& t : s)
                    if (t.name == kQA0) {
                      auto f = t.fill;
                      t.fill = [f](float* d, int64_t n) {
                        f(d, n);
                        d[5] = INFINITY;
                      };
                    }
                }),
                absl::StatusCode::kInvalidArgument, "non-finite value (inf) at flat index 5"},
        BadCase{"empty", Tensors([](auto& s) { s.clear(); }), absl::StatusCode::kInvalidArgument,
                "holds no LoRA tensors"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(LoraAdapterTest, RankAboveTheServerMaximumIsRefused) {
  tools::TinyLoraOptions o;
  o.r = 48;
  absl::Status s = LoadStatus(Make(o), 32);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("LoRA rank 48"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("exceeds the server's maximum LoRA rank 32"));
}

}  // namespace
}  // namespace para
