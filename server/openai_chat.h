// The OpenAI-compatible chat protocol: turns a /v1/chat/completions JSON body into one
// para.v1.GenerateRequest whose prompt is the conversation (GenerateRequest.chat, rendered by the
// model's chat template when the request is converted, exactly as for gRPC chat calls), and builds
// the chat response, its SSE chunks and its logprobs. Pure functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"
#include "server/openai_api.h"

namespace para::server::openai {

inline constexpr size_t kMaxChatMessages = 4096;

// INVALID_ARGUMENT naming the field for anything malformed, unknown or unsupported (tools,
// non-text content parts, n > 1, ...). `base_names` are the names that mean "no adapter".
absl::StatusOr<CompletionRequest> ParseChatRequest(const std::string& body,
                                                   const std::vector<std::string>& base_names);
inline absl::StatusOr<CompletionRequest> ParseChatRequest(const std::string& body,
                                                          const std::string& base_model) {
  return ParseChatRequest(body, std::vector<std::string>{base_model});
}

// The "logprobs" object of a chat choice: {"content": [{token, logprob, bytes, top_logprobs}]}.
nlohmann::json ChatLogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries);

// The whole non-streaming response (object "chat.completion").
nlohmann::json ChatCompletionJson(const Tokenizer* tok, const CompletionRequest& req,
                                  const std::string& id, int64_t created,
                                  const std::vector<ChoiceResult>& choices);

// A streaming chunk (object "chat.completion.chunk") for one choice with `delta`
// ({"role": "assistant", "content": ""} first, then {"content": text}, {} with the finish reason).
nlohmann::json ChatChunkJson(const std::string& id, int64_t created, const std::string& model,
                             size_t index, nlohmann::json delta, const nlohmann::json& logprobs,
                             const char* finish_reason, bool include_usage);
// The usage chunk sent last when stream_options.include_usage is set.
nlohmann::json ChatUsageChunkJson(const std::string& id, int64_t created, const std::string& model,
                                  int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace para::server::openai
