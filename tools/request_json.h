// JSON forms of generation requests and results for the offline tools (`para-cli --requests`,
// `--json` output). Field names follow the OpenAI/vLLM completion vocabulary.
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/batch_runner.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"

namespace para::tools {

// Resolves an adapter directory to a loaded adapter, PARA or LoRA (loading each directory once).
using AdapterResolver = std::function<absl::StatusOr<AdapterRef>(const std::string& dir)>;

// A request line: {"prompt": "..." | "prompt_ids": [..], "adapter": DIR (PARA or LoRA),
// "max_tokens", "temperature", "top_k", "top_p", "seed", "repetition_penalty", "stop": str|[str],
// "stop_token_ids", "ignore_eos", "logprobs", "prompt_logprobs"}. `defaults` supplies fields the
// line leaves out ("adapter": "" or null means the base model). Unknown keys are errors (they are
// usually typos).
absl::StatusOr<GenerationRequest> ParseRequestJson(const nlohmann::json& j, const Model& model,
                                                   const GenerationRequest& defaults,
                                                   const AdapterResolver& adapters);

nlohmann::json ResultToJson(const GenerationResult& r);
nlohmann::json LogprobsToJson(const std::vector<LogprobEntry>& entries);

}  // namespace para::tools
