// The OpenAI completions request parser: every accepted form maps onto the para.v1 request the
// gRPC API would get, and every malformed, unknown or unsupported field is refused by name.
#include "server/openai_api.h"

#include "gtest/gtest.h"

namespace para::server::openai {
namespace {

CompletionRequest ParseOk(const std::string& body) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(body, "base");
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : CompletionRequest{};
}

std::string ParseError(const std::string& body) {
  absl::StatusOr<CompletionRequest> r = ParseCompletionRequest(body, "base");
  EXPECT_FALSE(r.ok()) << body;
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  return std::string(r.status().message());
}

TEST(OpenAiApiTest, SeedTakesTheWholeRangeGrpcTakes) {
  CompletionRequest r = ParseOk(R"({"model": "m", "prompt": "hi", "seed": 18446744073709551615})");
  EXPECT_EQ(r.prompts[0].sampling().seed(), 18446744073709551615u);
}

TEST(OpenAiApiTest, MapsEveryFieldOntoTheGrpcRequest) {
  CompletionRequest r = ParseOk(
      R"({"model": "acme", "prompt": "hi", "max_tokens": 7, "temperature": 0.5, "top_p": 0.9,
          "top_k": -1, "seed": 42, "stop": ["a", "b"], "stop_token_ids": [3], "ignore_eos": true,
          "repetition_penalty": 1.1, "logprobs": 2, "echo": true, "priority": 3, "user": "u",
          "n": 1, "best_of": 1, "presence_penalty": 0, "frequency_penalty": 0.0,
          "logit_bias": {}})");
  ASSERT_EQ(r.prompts.size(), 1u);
  const v1::GenerateRequest& g = r.prompts[0];
  EXPECT_EQ(g.adapter(), "acme");
  EXPECT_EQ(g.text(), "hi");
  EXPECT_EQ(g.stopping().max_tokens(), 7);
  EXPECT_FLOAT_EQ(g.sampling().temperature(), 0.5f);
  EXPECT_FLOAT_EQ(g.sampling().top_p(), 0.9f);
  EXPECT_TRUE(g.sampling().has_top_k());
  EXPECT_EQ(g.sampling().top_k(), 0);  // -1 means no top-k
  EXPECT_EQ(g.sampling().seed(), 42u);
  EXPECT_FLOAT_EQ(g.sampling().repetition_penalty(), 1.1f);
  EXPECT_EQ(g.stopping().stop_size(), 2);
  EXPECT_EQ(g.stopping().stop_token_ids(0), 3);
  EXPECT_TRUE(g.stopping().ignore_eos());
  EXPECT_EQ(g.logprobs().top_n(), 2);
  EXPECT_EQ(g.logprobs().prompt_top_n(), 2);  // echo with logprobs: the prompt's too
  EXPECT_EQ(g.priority(), 3);
  EXPECT_TRUE(r.echo);
  EXPECT_FALSE(r.stream);
  r = ParseOk(
      R"({"model": "m", "prompt": "x", "presence_penalty": 0.5, "frequency_penalty": -1,
          "min_p": 0.1, "logit_bias": {"7": -100, "42": 2.5}, "min_tokens": 3,
          "include_stop_str_in_output": true, "skip_special_tokens": false, "prompt_logprobs": 4})");
  const v1::GenerateRequest& o = r.prompts[0];
  EXPECT_FLOAT_EQ(o.sampling().presence_penalty(), 0.5f);
  EXPECT_FLOAT_EQ(o.sampling().frequency_penalty(), -1.0f);
  EXPECT_FLOAT_EQ(o.sampling().min_p(), 0.1f);
  EXPECT_EQ(o.sampling().logit_bias().size(), 2u);
  EXPECT_FLOAT_EQ(o.sampling().logit_bias().at(7), -100.0f);
  EXPECT_EQ(o.stopping().min_tokens(), 3);
  EXPECT_TRUE(o.stopping().include_stop_str_in_output());
  EXPECT_FALSE(o.stopping().skip_special_tokens());
  EXPECT_EQ(o.logprobs().prompt_top_n(), 4);
  EXPECT_EQ(r.prompt_logprobs, 4);
  r = ParseOk(
      R"({"model": "m", "prompt": "x", "stream": true, "stream_options": {"include_usage": true}})");
  EXPECT_TRUE(r.stream && r.include_usage);
}

TEST(OpenAiApiTest, UnsetFieldsStayUnsetSoServerDefaultsApply) {
  CompletionRequest r = ParseOk(R"({"model": "base", "prompt": [1, 2, 3]})");
  const v1::GenerateRequest& g = r.prompts[0];
  EXPECT_EQ(g.adapter(), "");  // the base model's name means no adapter
  EXPECT_EQ(g.token_ids().ids_size(), 3);
  EXPECT_FALSE(g.sampling().has_temperature());
  EXPECT_FALSE(g.stopping().has_max_tokens());
  EXPECT_FALSE(g.has_logprobs());
}

TEST(OpenAiApiTest, PromptListsBecomeOneRequestEach) {
  EXPECT_EQ(ParseOk(R"({"model": "m", "prompt": ["a", "b", "c"]})").prompts.size(), 3u);
  CompletionRequest r = ParseOk(R"({"model": "m", "prompt": [[1, 2], [3]], "max_tokens": 2})");
  ASSERT_EQ(r.prompts.size(), 2u);
  EXPECT_EQ(r.prompts[1].token_ids().ids(0), 3);
  EXPECT_EQ(r.prompts[1].stopping().max_tokens(), 2);
}

TEST(OpenAiApiTest, RefusesWhatItCannotHonourByName) {
  EXPECT_NE(ParseError("{nope").find("not valid JSON"), std::string::npos);
  EXPECT_NE(ParseError("[]").find("JSON object"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "tools": 1})").find("tools"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"prompt": "x"})").find("'model'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m"})").find("'prompt'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": []})").find("'prompt'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": [1, "a"]})").find("'prompt'"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": [1, 4294967296]})").find("token ids"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "max_tokens": 1.5})").find("max_tokens"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "max_tokens": 0})").find("max_tokens"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "seed": -1})").find("seed"),
            std::string::npos);
  EXPECT_NE(
      ParseError(R"({"model": "m", "prompt": "x", "seed": 18446744073709551616})").find("'seed'"),
      std::string::npos);
  EXPECT_EQ(ParseError(R"({"model": "m", "prompt": "x", "stop_token_ids": [-1]})"),
            "'stop_token_ids' token ids must be in [0, 2^31)");
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "n": 17})").find("'n'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "n": 0})").find("'n'"), std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "n": 3, "best_of": 2})").find("best_of"),
            std::string::npos);
  EXPECT_NE(
      ParseError(R"({"model": "m", "prompt": "x", "logit_bias": {"one": 5}})").find("logit_bias"),
      std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "logit_bias": [5]})").find("logit_bias"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "min_tokens": -1})").find("min_tokens"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "logprobs": 21})").find("logprobs"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "stream_options": {}})").find("stream"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "stream": true, "echo": true,
                           "logprobs": 1})")
                .find("echo"),
            std::string::npos);
  EXPECT_NE(ParseError(R"({"model": "m", "prompt": "x", "stop": [1]})").find("'stop'"),
            std::string::npos);
}

TEST(OpenAiApiTest, StatusCodesMapToHttp) {
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInvalidArgument), 400);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnauthenticated), 401);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kPermissionDenied), 403);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kNotFound), 404);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kResourceExhausted), 429);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kUnavailable), 503);
  EXPECT_EQ(HttpStatusOf(absl::StatusCode::kInternal), 500);
  nlohmann::json e = ErrorJson(absl::NotFoundError("adapter 'x' is not loaded"));
  EXPECT_EQ(e["error"]["message"], "adapter 'x' is not loaded");
  EXPECT_EQ(e["error"]["type"], "not_found_error");
  EXPECT_EQ(e["error"]["code"], 404);
}

}  // namespace
}  // namespace para::server::openai
