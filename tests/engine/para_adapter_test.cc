// PARA adapter loading: a valid adapter loads; each kind of broken or hostile adapter directory
// is refused with a message naming the file and the tensor or field.
#include "engine/para_adapter.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "engine/safetensors.h"
#include "tests/engine/test_model.h"
#include "tools/safetensors_writer.h"
#include "tools/tiny_adapter.h"

namespace para {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

ModelConfig TinyConfig() { return *LoadModelConfig(testing::DefaultTinyModelDir()); }

std::string GoodAdapter(const tools::TinyParaOptions& o = {}) {
  const std::string dir = testing::MakeTempDir("para_");
  EXPECT_TRUE(tools::MakeTinyParaAdapter(dir, testing::DefaultTinyModelDir(), o).ok());
  return dir;
}

void WriteConfig(const std::string& dir, const std::string& json) {
  std::ofstream(dir + "/adapter_config.json", std::ios::trunc) << json;
}

TEST(ParaAdapterTest, LoadsAValidAdapterInEveryDtype) {
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    tools::TinyParaOptions o;
    o.dtype = t;
    o.r = 12;
    o.pooler = ParaPooler::kMean;
    o.activation = ParaActivation::kGeluTanh;
    auto a = ParaAdapter::Load(GoodAdapter(o), TinyConfig());
    ASSERT_TRUE(a.ok()) << a.status();
    EXPECT_EQ((*a)->config().r, 12);
    EXPECT_EQ((*a)->config().pooler, ParaPooler::kMean);
    EXPECT_EQ((*a)->config().activation, ParaActivation::kGeluTanh);
    EXPECT_EQ((*a)->num_layers(), 2);
    EXPECT_EQ((*a)->d_out(), 64 + 32 + 128);
    EXPECT_EQ((*a)->num_parameters(), 2 * (12 * 64 + 224 * 12 + 224));
  }
}

TEST(ParaAdapterTest, DefaultsForOptionalConfigKeys) {
  auto c = ParseParaConfig(R"({"peft_type":"PARA","r":4,"some_future_key":1})", "c");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->pooler, ParaPooler::kLast);
  EXPECT_EQ(c->activation, ParaActivation::kGelu);
}

TEST(ParaAdapterTest, ActivationsMatchTheirDefinitions) {
  EXPECT_NEAR(ParaActivate(ParaActivation::kGelu, 1.0f), 0.8413447460685429, 1e-6);
  EXPECT_NEAR(ParaActivate(ParaActivation::kGeluTanh, 1.0f), 0.8411919906082768, 1e-6);
  EXPECT_EQ(ParaActivate(ParaActivation::kRelu, -2.0f), 0.0f);
  EXPECT_NEAR(ParaActivate(ParaActivation::kSilu, 2.0f), 2.0 / (1.0 + std::exp(-2.0)), 1e-6);
}

struct BadConfigCase {
  const char* name;
  const char* json;
  const char* message;
};

class ParaBadConfigTest : public ::testing::TestWithParam<BadConfigCase> {};

TEST_P(ParaBadConfigTest, Refused) {
  const std::string dir = GoodAdapter();
  WriteConfig(dir, GetParam().json);
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr("adapter_config.json"));
  EXPECT_THAT(std::string(a.status().message()), HasSubstr(GetParam().message));
}

INSTANTIATE_TEST_SUITE_P(
    Configs, ParaBadConfigTest,
    ::testing::Values(
        BadConfigCase{"not_json", "{", "not a valid JSON object"},
        BadConfigCase{"no_peft_type", R"({"r":8})", "missing 'peft_type'"},
        BadConfigCase{"lora", R"({"peft_type":"LORA","r":8})", "expected \"PARA\""},
        BadConfigCase{"no_r", R"({"peft_type":"PARA"})", "missing 'r'"},
        BadConfigCase{"zero_r", R"({"peft_type":"PARA","r":0})", "'r' must be a positive integer"},
        BadConfigCase{"string_r", R"({"peft_type":"PARA","r":"8"})",
                      "'r' must be a positive integer"},
        BadConfigCase{"pooler", R"({"peft_type":"PARA","r":8,"pooler":"max"})", "pooler 'max'"},
        BadConfigCase{"activation", R"({"peft_type":"PARA","r":8,"activation":"tanh"})",
                      "activation 'tanh'"},
        BadConfigCase{"targets",
                      R"({"peft_type":"PARA","r":8,"target_modules":["q_proj","k_proj"]})",
                      "target_modules is"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ParaAdapterTest, RMismatchNamesTheTensor) {
  const std::string dir = GoodAdapter();
  WriteConfig(dir, R"({"peft_type":"PARA","r":4})");
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("'base_model.model.model.layers.0.para.down.weight'"));
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("has rank 8 but adapter_config.json says r = 4"));
}

TEST(ParaAdapterTest, MissingTensorIsNamed) {
  const std::string dir = GoodAdapter();
  testing::EditSafetensors(dir + "/adapter_model.safetensors", [](auto& specs) {
    std::erase_if(specs,
                  [](auto& s) { return s.name == "base_model.model.model.layers.1.para.up.bias"; });
  });
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("'base_model.model.model.layers.1.para.up.bias' is missing"));
}

TEST(ParaAdapterTest, ExtraTensorIsNamed) {
  const std::string dir = GoodAdapter();
  testing::EditSafetensors(dir + "/adapter_model.safetensors", [](auto& specs) {
    specs.push_back({"base_model.model.model.layers.2.para.up.bias",
                     DType::kF32,
                     {224},
                     [](float* d, int64_t n) { std::fill(d, d + n, 1.f); }});
  });
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("unexpected tensor 'base_model.model.model.layers.2.para.up.bias'"));
}

TEST(ParaAdapterTest, WrongShapeIsNamed) {
  const std::string dir = GoodAdapter();
  testing::EditSafetensors(dir + "/adapter_model.safetensors", [](auto& specs) {
    for (auto& s : specs)
      if (s.name == "base_model.model.model.layers.0.para.up.weight") s.shape = {200, 8};
  });
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("'base_model.model.model.layers.0.para.up.weight'"));
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("has shape [200, 8], expected [224, 8]"));
}

TEST(ParaAdapterTest, NonFiniteValueIsNamedWithItsIndex) {
  const std::string dir = GoodAdapter();
  testing::EditSafetensors(dir + "/adapter_model.safetensors", [](auto& specs) {
    for (auto& s : specs)
      if (s.name == "base_model.model.model.layers.1.para.down.weight") {
        auto fill = s.fill;
        s.fill = [fill](float* d, int64_t n) {
          fill(d, n);
          d[37] = std::numeric_limits<float>::quiet_NaN();
        };
      }
  });
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("'base_model.model.model.layers.1.para.down.weight'"));
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("non-finite value (nan) at flat index 37"));
}

TEST(ParaAdapterTest, AdapterForAnotherModelIsRefused) {
  tools::TinyModelOptions bigger;
  bigger.layers = 3;
  const std::string dir = testing::MakeTempDir("other_");
  ASSERT_TRUE(tools::MakeTinyParaAdapter(dir, testing::TinyModelDir(bigger), {}).ok());
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()),
              HasSubstr("unexpected tensor 'base_model.model.model.layers.2."));
}

TEST(ParaAdapterTest, TruncatedOrMissingFilesAreRefused) {
  std::string dir = GoodAdapter();
  const fs::path p = fs::path(dir) / "adapter_model.safetensors";
  fs::resize_file(p, fs::file_size(p) - 64);
  auto a = ParaAdapter::Load(dir, TinyConfig());
  ASSERT_FALSE(a.ok());
  EXPECT_THAT(std::string(a.status().message()), HasSubstr(p.string()));
  fs::remove(p);
  EXPECT_EQ(ParaAdapter::Load(dir, TinyConfig()).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ParaAdapter::Load("/nonexistent/adapter", TinyConfig()).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace para
