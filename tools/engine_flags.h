// The engine flags every tool shares (--model, --block-size, --kv-cache-blocks,
// --kv-cache-bytes, --threads, --max-model-len, ...) with their help and defaults, and their
// translation to EngineOptions. Pure; thread-safe.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "tools/args.h"

namespace para::tools {

inline const std::vector<FlagSpec> kEngineFlagSpecs = {
    {"model", "DIR", "none; required", "Hugging Face LLaMA model directory"},
    {"block-size", "N", "16", "KV cache positions per block"},
    {"kv-cache-blocks", "N", "0 = from --kv-cache-bytes", "KV cache size in blocks"},
    {"kv-cache-bytes", "N", "1073741824", "KV cache budget in bytes"},
    {"kv-cache-dtype", "T", "auto: f16 for 16-bit weights, else f32",
     "KV cache elements: auto|f32|f16|bf16"},
    {"dtype", "T", "auto: as stored, memory-mapped", "weights in memory: auto|f32|bf16|f16"},
    {"device", "D", "auto", "compute device: auto|cpu|cuda"},
    {"device-sampling", "on|off", "on",
     "sample on the compute device when it can (cuda): only tokens come back"},
    {"prefix-caching", "on|off", "off", "reuse cached prompt blocks across requests"},
    {"threads", "N", "0 = all cores", "compute threads"},
    {"max-model-len", "N", "0 = max_position_embeddings", "context limit"},
    {"max-lora-rank", "N", "64", "largest LoRA rank accepted"},
};
inline const std::set<std::string> kEngineFlags = ValueFlagNames(kEngineFlagSpecs);

absl::StatusOr<EngineOptions> EngineOptionsFromArgs(const Args& args);

std::set<std::string> Union(std::set<std::string> a, const std::set<std::string>& b);

}  // namespace para::tools
