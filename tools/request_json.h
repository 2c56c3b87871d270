// JSON forms of generation requests and results for the offline tools (`para-cli --requests`,
// `--json` output). Field names follow the OpenAI/vLLM completion vocabulary.
// Pure functions; thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/model.h"
#include "nlohmann/json.hpp"
#include "scheduler/engine_loop.h"

namespace para::tools {

// Resolves an adapter directory to a loaded adapter, PARA or LoRA (loading each directory once).
using AdapterResolver = std::function<absl::StatusOr<AdapterRef>(const std::string& dir)>;

// A request line: {"prompt": "..." | "prompt_ids": [..] | "messages": [{role, content}, ...]
// (rendered by the model's chat template; "add_generation_prompt" defaults to true),
// "adapter": DIR (PARA or LoRA),
// "max_tokens", "temperature", "top_k", "top_p", "seed", "repetition_penalty", "stop": str|[str],
// "stop_token_ids", "ignore_eos", "logprobs", "prompt_logprobs", "tenant", "priority"}. `defaults`
// supplies fields the line leaves out ("adapter": "" or null means the base model). Unknown keys
// are errors (they are usually typos).
absl::StatusOr<sched::Submission> ParseRequestJson(const nlohmann::json& j, const Model& model,
                                                   const sched::Submission& defaults,
                                                   const AdapterResolver& adapters);

nlohmann::json ResultToJson(const sched::RequestResult& r);
nlohmann::json LogprobsToJson(const std::vector<LogprobEntry>& entries);

}  // namespace para::tools
