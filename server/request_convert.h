// Turns a para.v1.GenerateRequest into an engine submission for a tenant, validating every field
// and naming what is wrong (INVALID_ARGUMENT), the adapter (NOT_FOUND / PERMISSION_DENIED), and
// limits on sizes. Builds response messages from results. Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "google/protobuf/message.h"
#include "para/v1/generation.pb.h"
#include "scheduler/engine_loop.h"
#include "server/tenants.h"

namespace para::server {

struct RequestLimits {
  int64_t max_prompt_bytes = 1 << 20;
  // Prompts (text, or a chat's contents) longer than this are tokenized on the prepare pool.
  int64_t inline_prompt_bytes = 16 << 10;
  int64_t max_message_bytes = 4 << 20;  // largest gRPC message sent (--max_message_bytes)
  // Log-probabilities one response may carry: tokens × (1 + top-n), generated and prompt.
  int64_t max_response_logprobs = 1 << 17;
  int32_t max_stop_strings = 16;
  int32_t max_stop_bytes = 256;
  int32_t max_request_id_bytes = 128;
  int32_t max_priority = 100;
  int32_t default_max_tokens = 16;
  int32_t max_chat_messages = 4096;
  int32_t max_template_kwargs_bytes = 64 << 10;
};

// INVALID_ARGUMENT naming unknown field numbers anywhere in the message (a client built against a
// newer API asks for something this server does not do; silently ignoring it would be wrong).
absl::Status CheckNoUnknownFields(const google::protobuf::Message& message);

// INVALID_ARGUMENT when `bytes` of text (`what`, for the message) cannot fit in the model's context
// whatever they tokenize to (see Model::max_token_bytes): such text is refused untokenized.
absl::Status CheckTextFits(int64_t bytes, const char* what, const Engine& engine);

// `adapter` is the resolved adapter the request names (null for the base model).
absl::StatusOr<sched::Submission> ToSubmission(const v1::GenerateRequest& request,
                                               const Principal& who, const AdapterRef* adapter,
                                               const Engine& engine, const RequestLimits& limits);

v1::FinishReason ToProto(FinishReason reason);
void FillTokenInfo(const LogprobEntry& e, v1::TokenInfo* out);
void FillUsage(const sched::RequestResult& r, v1::Usage* out);
void FillResponse(const sched::RequestResult& r, const std::string& request_id,
                  v1::GenerateResponse* out);
// With the request's n results (choices) when it has several; usage counts all of them.
void FillResponse(const sched::DoneEvent& done, const std::string& request_id,
                  v1::GenerateResponse* out);
void FillChoice(const sched::RequestResult& r, v1::GenerateChoice* out);

}  // namespace para::server
