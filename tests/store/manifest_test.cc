// The adapter manifest's parser (adapters_store/manifest.h): entries read back, and every refusal
// an INVALID_ARGUMENT that names the manifest file (the fuzzer found one that did not).
#include "adapters_store/manifest.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace para::store {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

TEST(ManifestTest, ReadsEntries) {
  auto specs = ParseManifest(R"({"adapters": [
      {"name": "a", "tenant": "t", "path": "p/a", "type": "lora", "sha256": "ab"},
      {"name": "b", "tenant": "u", "path": "/x/b"}]})",
                             "m.json");
  ASSERT_TRUE(specs.ok()) << specs.status();
  ASSERT_EQ(specs->size(), 2u);
  EXPECT_EQ((*specs)[0].name, "a");
  EXPECT_EQ((*specs)[0].tenant, "t");
  EXPECT_EQ((*specs)[0].path, "p/a");
  EXPECT_EQ((*specs)[0].type, AdapterType::kLora);
  EXPECT_EQ((*specs)[0].sha256, "ab");
  EXPECT_EQ((*specs)[1].type, AdapterType::kAuto);
}

TEST(ManifestTest, EveryRefusalNamesTheFile) {
  for (const char* text :
       {"", "[]", R"({"adapters": {}})", R"({"adapters": [{"name": 1}]})",
        R"({"adapters": [{"name": "a", "tenant": "t"}]})",
        R"({"adapters": [{"name": "a", "tenant": "t", "path": "p", "type": "loh"}]})"}) {
    auto specs = ParseManifest(text, "dir/manifest.json");
    ASSERT_FALSE(specs.ok()) << text;
    EXPECT_EQ(specs.status().code(), absl::StatusCode::kInvalidArgument) << text;
    EXPECT_THAT(std::string(specs.status().message()), StartsWith("dir/manifest.json: ")) << text;
  }
}

TEST(ManifestTest, AnUnknownTypeNamesTheAdapterAndTheType) {
  auto specs = ParseManifest(
      R"({"adapters": [{"name": "acme", "tenant": "t", "path": "p", "type": "gguf"}]})", "m.json");
  ASSERT_FALSE(specs.ok());
  EXPECT_THAT(std::string(specs.status().message()), HasSubstr("adapter 'acme'"));
  EXPECT_THAT(std::string(specs.status().message()), HasSubstr("'gguf'"));
}

}  // namespace
}  // namespace para::store
