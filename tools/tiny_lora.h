// Writes random LoRA adapters in PEFT's save_pretrained layout (adapter_config.json with PEFT's
// keys, adapter_model.safetensors with base_model.model.model.layers.{i}.{self_attn|mlp}.
// {q,k,v,o,gate,up,down}_proj.lora_{A,B}.weight) shaped for a given base model: fixtures for the
// LoRA tests and benchmarks. Unlike PEFT's initialisation (B = 0), B is random so the adapter
// changes the model. Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/dtype.h"
#include "engine/lora_adapter.h"

namespace para::tools {

struct TinyLoraOptions {
  int64_t r = 8;
  double alpha = 16;
  bool rslora = false;
  std::vector<LoraTarget> targets = {LoraTarget::kQ, LoraTarget::kV};
  // PEFT rank_pattern (module-name regex -> rank), in order: the first matching key wins.
  std::vector<std::pair<std::string, int64_t>> rank_pattern;
  uint64_t seed = 0;
  DType dtype = DType::kF32;
  bool zero_b = false;  // B = 0, as PEFT initialises it: the base model exactly
};

absl::Status MakeTinyLoraAdapter(const std::string& dir, const std::string& model_dir,
                                 const TinyLoraOptions& options);

// Parses "q_proj,v_proj" (or "all" for the seven projections) into targets.
absl::StatusOr<std::vector<LoraTarget>> ParseLoraTargets(const std::string& text);

}  // namespace para::tools
