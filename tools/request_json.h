// JSON forms of generation requests and results for the offline tools (`para-cli --requests`,
// `--json` output). Field names follow the OpenAI/vLLM completion vocabulary.
// Pure functions; thread-safe.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "engine/batch_runner.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace para::tools {

// A request line: {"prompt": "..." | "prompt_ids": [..], "max_tokens", "temperature", "top_k",
// "top_p", "seed", "repetition_penalty", "stop": str|[str], "stop_token_ids", "ignore_eos",
// "logprobs", "prompt_logprobs"}. `defaults` supplies fields the line leaves out. Unknown keys
// are errors (they are usually typos).
absl::StatusOr<GenerationRequest> ParseRequestJson(const nlohmann::json& j, const Model& model,
                                                   const GenerationRequest& defaults);

nlohmann::json ResultToJson(const GenerationResult& r);
nlohmann::json LogprobsToJson(const std::vector<LogprobEntry>& entries);

}  // namespace para::tools
