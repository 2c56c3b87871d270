// Safetensors parsing: valid files round-trip; every malformed header is a precise error.
#include "engine/safetensors.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "nlohmann/json.hpp"
#include "tests/engine/test_model.h"
#include "tools/safetensors_writer.h"

namespace para {
namespace {

using ::testing::HasSubstr;

// A safetensors image from a header JSON string and a data section of `data_bytes` bytes.
std::string Image(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  std::string out(8, '\0');
  const uint64_t len = claimed_len ? claimed_len : header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(len >> (8 * i));
  out += header;
  out.append(data_bytes, '\0');
  return out;
}

absl::Status ParseImage(const std::string& img) {
  return ParseSafetensors(reinterpret_cast<const unsigned char*>(img.data()), img.size(),
                          "x.safetensors")
      .status();
}

TEST(SafetensorsTest, ParsesValidHeader) {
  const std::string img = Image(
      R"({"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("b":{"dtype":"BF16","shape":[4],"data_offsets":[24,32]}})",
      32);
  auto views =
      ParseSafetensors(reinterpret_cast<const unsigned char*>(img.data()), img.size(), "x");
  ASSERT_TRUE(views.ok()) << views.status();
  ASSERT_EQ(views->size(), 2u);
  EXPECT_EQ((*views)[0].name, "a");
  EXPECT_EQ((*views)[0].shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ((*views)[1].dtype, DType::kBF16);
  EXPECT_EQ((*views)[1].nbytes, 8u);
}

struct BadCase {
  const char* name;
  std::string image;
  const char* message;
};

class SafetensorsBadTest : public ::testing::TestWithParam<BadCase> {};

TEST_P(SafetensorsBadTest, RejectsWithPreciseMessage) {
  absl::Status s = ParseImage(GetParam().image);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("x.safetensors"));
  EXPECT_THAT(std::string(s.message()), HasSubstr(GetParam().message));
}

const std::string kGood = R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";

INSTANTIATE_TEST_SUITE_P(
    Malformed, SafetensorsBadTest,
    ::testing::Values(
        BadCase{"short", std::string("\x01\x02\x03", 3), "shorter than the 8-byte header length"},
        BadCase{"header_past_eof", Image(kGood, 8, 1000), "exceeds the file size"},
        BadCase{"header_2gb", Image(kGood, 8, 2ull << 30), "exceeds the 104857600-byte limit"},
        BadCase{"header_u64_max", Image(kGood, 8, ~0ull), "exceeds the"},
        BadCase{"not_json", Image("{not json", 8), "not valid JSON"},
        BadCase{"not_object", Image("[1,2]", 8), "not a JSON object"},
        BadCase{"truncated_data", Image(kGood, 4),
                "tensor 'w' has data_offsets end 8 beyond the data section"},
        BadCase{"offsets_reversed",
                Image(R"({"w":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})", 8),
                "begin 8 > end 0"},
        BadCase{"size_mismatch",
                Image(R"({"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", 8),
                "tensor 'w' has 8 bytes of data but shape [3] of F32 needs 12"},
        BadCase{
            "shape_overflow",
            Image(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})",
                  8),
            "overflows"},
        BadCase{"negative_dim",
                Image(R"({"w":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", 8),
                "not a non-negative integer"},
        BadCase{"negative_offset",
                Image(R"({"w":{"dtype":"F32","shape":[2],"data_offsets":[-8,0]}})", 8),
                "no valid 'data_offsets'"},
        BadCase{"unknown_dtype",
                Image(R"({"w":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}})", 8),
                "unknown dtype 'Q4'"},
        BadCase{"missing_dtype", Image(R"({"w":{"shape":[2],"data_offsets":[0,8]}})", 8),
                "no string 'dtype'"},
        BadCase{"overlap",
                Image(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                      R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                      12),
                "overlap"}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SafetensorsTest, WriterOutputReadsBackExactlyInEveryDtype) {
  const std::string dir = testing::MakeTempDir("st_rt_");
  const std::string path = dir + "/t.safetensors";
  std::vector<float> values = {1.0f, -2.5f, 0.15625f, 3e-5f, 65504.0f, -0.0f};
  std::vector<tools::TensorSpec> specs;
  for (DType t : {DType::kF32, DType::kF16, DType::kBF16}) {
    tools::TensorSpec s;
    s.name = std::string("t_") + DTypeName(t);
    s.dtype = t;
    s.shape = {2, 3};
    s.fill = [&](float* dst, int64_t n) { std::copy(values.begin(), values.end(), dst); };
    specs.push_back(s);
  }
  ASSERT_TRUE(tools::WriteSafetensors(path, specs).ok());
  auto f = SafetensorsFile::Open(path);
  ASSERT_TRUE(f.ok()) << f.status();
  for (const auto& s : specs) {
    const TensorView* v = (*f)->Find(s.name);
    ASSERT_NE(v, nullptr);
    std::vector<float> got(6);
    ConvertToF32(v->dtype, v->data, 6, got.data());
    for (int i = 0; i < 6; ++i) {
      // Exact for F32; the test values are chosen representable in F16 too, BF16 within its
      // precision.
      const float tol = s.dtype == DType::kBF16 ? std::abs(values[i]) / 128
                                                : (s.dtype == DType::kF16 ? 1e-7f : 0.f);
      EXPECT_NEAR(got[i], values[i], tol) << s.name << "[" << i << "]";
    }
  }
}

TEST(SafetensorsTest, TruncatedFileOnDiskNamesTheFile) {
  const std::string dir = testing::MakeTempDir("st_trunc_");
  const std::string path = dir + "/model.safetensors";
  tools::TensorSpec s{
      "w", DType::kF32, {256}, [](float* d, int64_t n) { std::fill(d, d + n, 1.f); }};
  ASSERT_TRUE(tools::WriteSafetensors(path, {s}).ok());
  std::filesystem::resize_file(path, std::filesystem::file_size(path) - 100);
  auto f = SafetensorsFile::Open(path);
  ASSERT_FALSE(f.ok());
  EXPECT_THAT(std::string(f.status().message()), HasSubstr(path));
  EXPECT_THAT(std::string(f.status().message()), HasSubstr("tensor 'w'"));
}

TEST(SafetensorsTest, IndexErrors) {
  const std::string dir = testing::MakeTempDir("st_idx_");
  tools::TensorSpec s{"w", DType::kF32, {4}, [](float* d, int64_t n) { std::fill(d, d + n, 1.f); }};
  ASSERT_TRUE(tools::WriteSafetensors(dir + "/a.safetensors", {s}).ok());
  auto write_index = [&](const std::string& text) {
    std::ofstream(dir + "/model.safetensors.index.json") << text;
  };

  write_index(R"({"weight_map":{"w":"missing.safetensors"}})");
  auto st = TensorStore::OpenDirectory(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("missing.safetensors"));

  write_index(R"({"weight_map":{"w":"../a.safetensors"}})");
  st = TensorStore::OpenDirectory(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("not a plain file name"));

  write_index(R"({"weight_map":{"v":"a.safetensors"}})");
  st = TensorStore::OpenDirectory(dir);
  ASSERT_FALSE(st.ok());
  EXPECT_THAT(std::string(st.status().message()), HasSubstr("maps tensor 'v'"));

  write_index(R"({"weight_map":{"w":"a.safetensors"}})");
  st = TensorStore::OpenDirectory(dir);
  ASSERT_TRUE(st.ok()) << st.status();
  auto bad_shape = (*st)->Get("w", {2, 2});
  ASSERT_FALSE(bad_shape.ok());
  EXPECT_THAT(std::string(bad_shape.status().message()),
              HasSubstr("has shape [4], expected [2, 2]"));
  EXPECT_THAT(std::string(bad_shape.status().message()), HasSubstr("a.safetensors"));
  auto missing = (*st)->Get("nope", {4});
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
}

TEST(SafetensorsTest, EmptyDirectoryIsNotFound) {
  auto st = TensorStore::OpenDirectory(testing::MakeTempDir("st_empty_"));
  EXPECT_EQ(st.status().code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace para
