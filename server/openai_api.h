// The OpenAI-compatible completions protocol: turns a /v1/completions JSON body into para.v1
// GenerateRequests (one per prompt, so the HTTP and gRPC paths share validation and give equal
// results for equal seeds) and builds the JSON responses, SSE chunks and OpenAI-style error
// bodies. Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/tokenizer.h"
#include "nlohmann/json.hpp"
#include "para/v1/generation.pb.h"
#include "scheduler/engine_loop.h"

namespace para::server::openai {

// Which OpenAI API a request came through (they differ in their response shapes only).
enum class Api { kCompletions, kChat };

struct CompletionRequest {
  Api api = Api::kCompletions;
  std::string model;                         // the base model's name or an adapter's
  std::vector<v1::GenerateRequest> prompts;  // one per prompt (choice index = position)
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool echo = false;
  std::optional<int32_t> logprobs;         // top-n per token (0..kMaxLogprobs); chat: top_logprobs
  std::optional<int32_t> prompt_logprobs;  // vLLM's prompt_logprobs: top-n per prompt token
  int32_t n = 1;  // choices per prompt (choice index = prompt index × n + k)
};

inline constexpr int32_t kMaxLogprobs = 20;
inline constexpr int32_t kMaxChoices = 16;  // n, best_of and beam widths
inline constexpr size_t kMaxPrompts = 64;

// INVALID_ARGUMENT naming the field for anything malformed, unknown or unsupported.
// `base_names` are the names that mean "no adapter" (the base model and its aliases).
absl::StatusOr<CompletionRequest> ParseCompletionRequest(
    const std::string& body, const std::vector<std::string>& base_names);
inline absl::StatusOr<CompletionRequest> ParseCompletionRequest(const std::string& body,
                                                                const std::string& base_model) {
  return ParseCompletionRequest(body, std::vector<std::string>{base_model});
}

// One choice's outcome, as the HTTP front door collects it.
struct ChoiceResult {
  std::string prompt_text;  // for echo
  std::vector<int32_t> prompt_ids;
  sched::RequestResult result;
};

// The OpenAI finish reason ("stop" for stop strings, stop tokens and EOS; "length").
const char* OpenAiFinishReason(FinishReason reason);

// The display text of a token in logprobs (its bytes, or its piece for control tokens). A model
// without a tokenizer (`tok` null) shows ids the way vLLM's return_tokens_as_token_ids does:
// "token_id:42".
std::string TokenText(const Tokenizer* tok, int32_t id);
// The bytes token `id` adds to the text (0 for every token when `tok` is null: no text).
size_t TokenByteCount(const Tokenizer* tok, int32_t id);

// A choice's "logprobs" object for `entries`, offsets counted from `offset` bytes.
nlohmann::json LogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries,
                            size_t offset);

// vLLM's "prompt_logprobs": null for the first prompt token, then per token an object keyed by
// token id (the prompt's own token and the top-n alternatives) of {logprob, rank,
// decoded_token}.
nlohmann::json PromptLogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries);

// The whole non-streaming response.
nlohmann::json CompletionJson(const Tokenizer* tok, const CompletionRequest& req,
                              const std::string& id, int64_t created,
                              const std::vector<ChoiceResult>& choices);

// A streaming chunk for one choice (text and logprobs of the tokens since the last chunk).
nlohmann::json ChunkJson(const std::string& id, int64_t created, const std::string& model,
                         size_t index, const std::string& text, const nlohmann::json& logprobs,
                         const char* finish_reason, bool include_usage);
// The usage chunk sent last when stream_options.include_usage is set.
nlohmann::json UsageChunkJson(const std::string& id, int64_t created, const std::string& model,
                              int64_t prompt_tokens, int64_t completion_tokens);

// The HTTP status for a status code (400, 401, 403, 404, 429, 503, 504, 500, ...).
int HttpStatusOf(absl::StatusCode code);
// {"error": {"message", "type", "param", "code"}}.
nlohmann::json ErrorJson(const absl::Status& status);
nlohmann::json ErrorJson(int http_status, const std::string& message);

// Serialises JSON (invalid UTF-8 in token bytes is replaced, never thrown).
std::string Dump(const nlohmann::json& j);

}  // namespace para::server::openai
