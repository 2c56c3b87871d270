// Loading checkpoints: every defect a user can hit is an error naming the file and tensor;
// dtypes and sharding load the same weights.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <limits>

#include "engine/model.h"
#include "engine/safetensors.h"
#include "tests/engine/test_model.h"
#include "tools/safetensors_writer.h"

namespace para {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// Copies the default tiny model into a new directory, letting `edit` change the tensor list.
std::string EditedModel(const std::function<void(std::vector<tools::TensorSpec>&)>& edit) {
  const std::string src = testing::DefaultTinyModelDir();
  const std::string dst = testing::MakeTempDir("edited_");
  for (const char* f :
       {"config.json", "generation_config.json", "tokenizer_config.json", "tokenizer.model"})
    fs::copy_file(fs::path(src) / f, fs::path(dst) / f);
  auto file = SafetensorsFile::Open(src + "/model.safetensors");
  EXPECT_TRUE(file.ok());
  std::vector<tools::TensorSpec> specs;
  for (const TensorView& t : (*file)->tensors()) {
    const TensorView* tp = &t;
    specs.push_back({t.name, DType::kF32, t.shape,
                     [tp](float* dst, int64_t n) { ConvertToF32(tp->dtype, tp->data, n, dst); }});
  }
  edit(specs);
  EXPECT_TRUE(tools::WriteSafetensors(dst + "/model.safetensors", specs).ok());
  return dst;
}

absl::Status LoadStatus(const std::string& dir) {
  ThreadPool pool(1);
  return Model::Load(dir).status();
}

TEST(ModelLoadTest, MissingTensorIsNamed) {
  const std::string dir = EditedModel([](auto& specs) {
    specs.erase(
        std::remove_if(specs.begin(), specs.end(),
                       [](auto& s) { return s.name == "model.layers.1.mlp.up_proj.weight"; }),
        specs.end());
  });
  absl::Status s = LoadStatus(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("'model.layers.1.mlp.up_proj.weight' is missing from"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(dir));
}

TEST(ModelLoadTest, WrongShapeIsNamedWithBothShapes) {
  const std::string dir = EditedModel([](auto& specs) {
    for (auto& s : specs)
      if (s.name == "model.layers.0.self_attn.k_proj.weight") s.shape = {16, 64};
  });
  absl::Status s = LoadStatus(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("'model.layers.0.self_attn.k_proj.weight'"));
  EXPECT_THAT(std::string(s.message()), HasSubstr("has shape [16, 64], expected [32, 64]"));
}

TEST(ModelLoadTest, TruncatedCheckpointNamesTheFile) {
  const std::string dir = EditedModel([](auto&) {});
  const fs::path p = fs::path(dir) / "model.safetensors";
  fs::resize_file(p, fs::file_size(p) / 2);
  absl::Status s = LoadStatus(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr(p.string()));
  EXPECT_THAT(std::string(s.message()), HasSubstr("beyond the data section"));
}

TEST(ModelLoadTest, UnsupportedArchitectureAndMissingFiles) {
  const std::string dir = EditedModel([](auto&) {});
  std::ofstream(dir + "/config.json")
      << R"({"architectures":["GPT2LMHeadModel"],"hidden_size":64})";
  absl::Status s = LoadStatus(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kUnimplemented);
  EXPECT_THAT(std::string(s.message()), HasSubstr("GPT2LMHeadModel"));
  fs::remove(dir + "/config.json");
  EXPECT_EQ(LoadStatus(dir).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadStatus("/nonexistent/model").code(), absl::StatusCode::kNotFound);
}

TEST(ModelLoadTest, CorruptTokenizerIsAnError) {
  const std::string dir = EditedModel([](auto&) {});
  std::ofstream(dir + "/tokenizer.model", std::ios::trunc) << "not a sentencepiece model";
  absl::Status s = LoadStatus(dir);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("tokenizer.model"));
}

TEST(ModelLoadTest, NonFloatWeightDtypeIsRejected) {
  const std::string dir = testing::MakeTempDir("i32_");
  const std::string src = testing::DefaultTinyModelDir();
  for (const char* f : {"config.json", "tokenizer.model"})
    fs::copy_file(fs::path(src) / f, fs::path(dir) / f);
  // A checkpoint whose norm weight is stored as I32 (as a mis-converted file might be).
  std::string header =
      R"({"model.embed_tokens.weight":{"dtype":"I32","shape":[512,64],"data_offsets":[0,131072]}})";
  std::ofstream out(dir + "/model.safetensors", std::ios::binary);
  uint64_t len = header.size();
  out.write(reinterpret_cast<const char*>(&len), 8);
  out << header << std::string(131072, '\0');
  out.close();
  absl::Status s = LoadStatus(dir);
  EXPECT_THAT(std::string(s.message()), HasSubstr("has dtype I32; supported: F32, F16, BF16"));
}

TEST(ModelLoadTest, NonFiniteWeightsAreRefusedNamingTensorAndIndex) {
  for (float bad :
       {std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::infinity()}) {
    const std::string dir = EditedModel([bad](auto& specs) {
      for (auto& s : specs)
        if (s.name == "model.layers.1.self_attn.o_proj.weight") {
          auto fill = s.fill;
          s.fill = [fill, bad](float* d, int64_t n) {
            fill(d, n);
            d[123] = bad;
          };
        }
    });
    absl::Status s = LoadStatus(dir);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("tensor 'model.layers.1.self_attn.o_proj.weight' in "));
    EXPECT_THAT(std::string(s.message()), HasSubstr("has a non-finite value"));
    EXPECT_THAT(std::string(s.message()), HasSubstr("at flat index 123"));
  }
}

TEST(ModelLoadTest, CheckFiniteFindsTheFirstBadElementOfEveryFloatType) {
  const uint16_t bf16[] = {0x3f80, 0x3f80, 0x7f80, 0x7fc0};  // 1, 1, +inf, nan
  const uint16_t f16[] = {0x3c00, 0xfc00};                   // 1, -inf
  const float f32[] = {1.f, 2.f, 3.f};
  const std::string file = "test.safetensors";
  TensorView t{"w", DType::kBF16, {4}, reinterpret_cast<const unsigned char*>(bf16), 8, &file};
  EXPECT_THAT(std::string(CheckFinite(t).message()), HasSubstr("(inf) at flat index 2"));
  t = {"w", DType::kF16, {2}, reinterpret_cast<const unsigned char*>(f16), 4, &file};
  EXPECT_THAT(std::string(CheckFinite(t).message()), HasSubstr("(-inf) at flat index 1"));
  t = {"w", DType::kF32, {3}, reinterpret_cast<const unsigned char*>(f32), 12, &file};
  EXPECT_TRUE(CheckFinite(t).ok());
}

}  // namespace
}  // namespace para
