// The tenants file: keys authenticate to the right tenant, adapters belong to one tenant, and
// every malformed file is refused with a message naming the problem.
#include "server/tenants.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/engine/test_model.h"
#include "tools/tiny_adapter.h"
#include "tools/tiny_lora.h"

namespace para::server {
namespace {

using ::testing::HasSubstr;

// A model without a tokenizer: this binary links gRPC's libprotobuf, and tokenizer training is
// not needed here.
struct Fixture {
  std::string model, para, lora;
  std::unique_ptr<Engine> engine;
  Fixture() {
    tools::TinyModelOptions o;
    o.tokenizer = false;
    model = para::testing::TinyModelDir(o);
    para = para::testing::MakeTempDir("tp_");
    lora = para::testing::MakeTempDir("tl_");
    EXPECT_TRUE(tools::MakeTinyParaAdapter(para, model, {}).ok());
    EXPECT_TRUE(tools::MakeTinyLoraAdapter(lora, model, {}).ok());
    engine = para::testing::MakeEngine(model);
  }
  std::string Config(const std::string& extra_tenant = "") const {
    return R"({"admin_api_keys": ["admin-key-0001"], "tenants": {
      "acme": {"api_keys": ["acme-key-0001", "acme-key-0002"], "weight": 2, "max_inflight": 3,
               "adapters": {"acme-para": ")" +
           para + R"("}},
      "globex": {"api_keys": ["globex-key-001"], "adapters": {"globex-lora": ")" +
           lora + R"("}})" + extra_tenant + "}}";
  }
};

Fixture& F() {
  static Fixture* f = new Fixture();
  return *f;
}

TEST(TenantsTest, KeysAuthenticateTheirTenant) {
  auto reg = TenantRegistry::Parse(F().Config());
  ASSERT_TRUE(reg.ok()) << reg.status();
  EXPECT_EQ((*reg)->Authenticate("acme-key-0002")->tenant, "acme");
  EXPECT_FALSE((*reg)->Authenticate("acme-key-0002")->admin);
  EXPECT_TRUE((*reg)->Authenticate("admin-key-0001")->admin);
  EXPECT_EQ((*reg)->Authenticate("acme-key-0003").status().code(),
            absl::StatusCode::kUnauthenticated);
  EXPECT_EQ((*reg)->Authenticate("").status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(BearerToken("Bearer abc"), "abc");
  EXPECT_EQ(BearerToken("Basic abc"), "");
  EXPECT_EQ(BearerToken("Bearer "), "");
}

TEST(TenantsTest, AdaptersAndLimitsAreListedForTheStore) {
  auto reg = *TenantRegistry::Parse(F().Config());
  ASSERT_EQ(reg->adapters().size(), 2u);
  EXPECT_EQ(reg->adapters()[0].name, "acme-para");
  EXPECT_EQ(reg->adapters()[0].tenant, "acme");
  EXPECT_EQ(reg->adapters()[0].path, F().para);
  EXPECT_EQ(reg->adapters()[1].tenant, "globex");
  EXPECT_TRUE(reg->HasTenant("globex"));
  EXPECT_FALSE(reg->HasTenant("initech"));
  auto limits = reg->SchedulerTenants();
  EXPECT_EQ(limits["acme"].weight, 2);
  EXPECT_EQ(limits["acme"].max_inflight, 3);
}

TEST(TenantsTest, MalformedFilesAreRefused) {
  auto bad = [&](const std::string& text) { return TenantRegistry::Parse(text).status(); };
  EXPECT_THAT(std::string(bad("{").message()), HasSubstr("not a valid JSON object"));
  EXPECT_THAT(std::string(bad("{}").message()), HasSubstr("needs a 'tenants' object"));
  EXPECT_THAT(std::string(bad(R"({"tenants": {"a": {"api_keys": ["short"]}}})").message()),
              HasSubstr("at least 8 characters"));
  EXPECT_THAT(std::string(bad(R"({"tenants": {"a": {"weight": -1}}})").message()),
              HasSubstr("weight must be positive"));
  EXPECT_THAT(
      std::string(bad(F().Config(R"(, "initech": {"adapters": {"acme-para": "x"}})")).message()),
      HasSubstr("adapter name 'acme-para' is used by tenants 'acme' and 'initech'"));
  EXPECT_THAT(std::string(bad(R"({"tenants": {"a": {"adapters": {"x": 5}}}})").message()),
              HasSubstr("adapter 'x' of tenant 'a' needs a directory"));
  EXPECT_THAT(std::string(bad(R"({"tenants": {"a": {"api_keys": "not-a-list"}}})").message()),
              HasSubstr("must be a list"));
}

TEST(TenantsTest, AKeyBelongsToOnePrincipalOnly) {
  auto bad = [&](const std::string& text) { return TenantRegistry::Parse(text).status(); };
  const absl::Status two = bad(
      R"({"tenants": {"a": {"api_keys": ["own-key-0001", "shared-key-01"]},
                      "b": {"api_keys": ["shared-key-01"]}}})");
  EXPECT_EQ(two.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(two.message()),
              HasSubstr("tenant 'b' api_keys[0] is also a key of tenant 'a' api_keys"));
  EXPECT_THAT(std::string(two.message()), ::testing::Not(HasSubstr("shared-key-01")));
  const absl::Status admin = bad(
      R"({"admin_api_keys": ["shared-key-01"], "tenants": {"a": {"api_keys": ["shared-key-01"]}}})");
  EXPECT_THAT(std::string(admin.message()),
              HasSubstr("tenant 'a' api_keys[0] is also a key of admin_api_keys"));
  // A key listed twice by the same tenant names one principal: harmless.
  EXPECT_TRUE(TenantRegistry::Parse(
                  R"({"tenants": {"a": {"api_keys": ["same-key-0001", "same-key-0001"]}}})")
                  .ok());
}

// Found by tenants_fuzz (UBSan: a float outside int's range converted to int): every limit must
// be an integer in [0, 2^31), or the file is refused naming the tenant and field.
TEST(TenantsTest, LimitsOutsideTheirRangeAreRefused) {
  for (const char* value : {"2222222222222222222222222222222400", "1e30", "2147483648", "-1", "2.5",
                            "\"4\"", "18446744073709551615"}) {
    for (const char* field : {"max_inflight", "max_waiting"}) {
      const std::string text =
          std::string(R"({"tenants": {"a": {")") + field + "\": " + value + "}}}";
      auto r = TenantRegistry::Parse(text);
      ASSERT_FALSE(r.ok()) << text;
      EXPECT_THAT(std::string(r.status().message()),
                  HasSubstr(std::string("tenant 'a' ") + field + " must be an integer in [0, "))
          << text;
    }
  }
  auto ok = TenantRegistry::Parse(
      R"({"tenants": {"a": {"api_keys": ["a-key-0001"], "max_inflight": 2147483647, "max_waiting": 0}}})");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_EQ((*ok)->tenants().at("a").limits.max_inflight, 2147483647);
}

}  // namespace
}  // namespace para::server
