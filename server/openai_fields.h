// JSON field readers and the options shared by the OpenAI-compatible request parsers
// (/v1/completions and /v1/chat/completions): every reader names its field in the
// INVALID_ARGUMENT it returns. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "para/v1/generation.pb.h"

namespace para::server::openai {

absl::Status Invalid(const std::string& what);
// "'field' must be <what>".
absl::Status NotA(const char* field, const char* what);

// Optional fields: null or absent leaves `out` as it is.
absl::Status GetInt(const nlohmann::json& body, const char* field, int64_t lo, int64_t hi,
                    std::optional<int64_t>* out);
absl::Status GetUint64(const nlohmann::json& body, const char* field, std::optional<uint64_t>* out);
absl::Status GetNumber(const nlohmann::json& body, const char* field, std::optional<double>* out);
absl::Status GetBool(const nlohmann::json& body, const char* field, bool* out);

// A non-empty array of integers.
bool IsTokenArray(const nlohmann::json& v);
// Appends `v`'s ids (each in [0, 2^31)) to `out`.
absl::Status TokenIds(const nlohmann::json& v, v1::TokenIds* out, const char* field = "prompt");

// The request body: a JSON object whose fields are all in `known` (else OpenAI's
// "Unrecognized request argument supplied: X").
absl::StatusOr<nlohmann::json> ParseBody(const std::string& text,
                                         const std::set<std::string>& known);

// A field this server does not implement: refused unless absent, null or `is_neutral`.
using NeutralTest = bool (*)(const nlohmann::json&);
absl::Status RequireNeutral(const nlohmann::json& body, const char* field, NeutralTest is_neutral);
bool IsEmpty(const nlohmann::json& v);

// What both APIs share, read into `common` (adapter, sampling, stopping, priority) and the
// outputs: model (required), user, max_tokens (or its alias), min_tokens, ignore_eos, stop,
// stop_token_ids, include_stop_str_in_output, skip_special_tokens, temperature, top_p, top_k,
// min_p, seed, repetition_penalty, presence_penalty, frequency_penalty, logit_bias, priority,
// stream and stream_options.include_usage; n, and beam search: beam_width (or vLLM's
// use_beam_search, whose width is best_of or n), length_penalty, early_stopping.
struct CommonOptions {
  std::string model;
  bool stream = false;
  bool include_usage = false;
  std::optional<int32_t> prompt_logprobs;  // also set in common's LogprobsOptions
  int32_t n = 1;                           // choices per prompt (also set in common)
};
// `base_names` are the names that mean "no adapter" (the base model and its aliases).
absl::Status ParseCommonOptions(const nlohmann::json& body,
                                const std::vector<std::string>& base_names,
                                const char* max_tokens_alias, CommonOptions* out,
                                v1::GenerateRequest* common);

}  // namespace para::server::openai
