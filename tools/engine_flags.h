// The engine flags every tool shares (--model, --block-size, --kv-cache-blocks,
// --kv-cache-bytes, --threads, --max-model-len) and their translation to EngineOptions.
#pragma once

#include <set>
#include <string>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "tools/args.h"

namespace para::tools {

inline const std::set<std::string> kEngineFlags = {
    "model",          "block-size", "kv-cache-blocks", "kv-cache-bytes",
    "kv-cache-dtype", "threads",    "max-model-len",   "max-lora-rank",
    "device",         "dtype",      "prefix-caching"};
inline constexpr const char* kEngineFlagsHelp =
    "  --model DIR             Hugging Face LLaMA model directory (required)\n"
    "  --block-size N          KV cache positions per block (default 16)\n"
    "  --kv-cache-blocks N     KV cache size in blocks (default: from --kv-cache-bytes)\n"
    "  --kv-cache-bytes N      KV cache budget in bytes (default 1073741824)\n"
    "  --kv-cache-dtype T      auto|f32|f16|bf16 (default auto: f16 for 16-bit weights)\n"
    "  --dtype T               weights in memory: auto (as stored, memory-mapped)|f32|bf16|f16\n"
    "  --device D              auto|cpu|cuda (default auto)\n"
    "  --prefix-caching on|off reuse cached prompt blocks across requests (default off)\n"
    "  --threads N             compute threads (default: all cores)\n"
    "  --max-model-len N       context limit (default: max_position_embeddings)\n"
    "  --max-lora-rank N       largest LoRA rank accepted (default 64)\n";

absl::StatusOr<EngineOptions> EngineOptionsFromArgs(const Args& args);

std::set<std::string> Union(std::set<std::string> a, const std::set<std::string>& b);

}  // namespace para::tools
