#include "tools/tiny_lora.h"

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "engine/model_config.h"
#include "nlohmann/json.hpp"
#include "tools/safetensors_writer.h"
#include "tools/tiny_model.h"

namespace para::tools {
namespace {

std::pair<int64_t, int64_t> InOut(const ModelConfig& c, LoraTarget t) {
  switch (t) {
    case LoraTarget::kQ:
      return {c.hidden_size, c.q_dim()};
    case LoraTarget::kK:
    case LoraTarget::kV:
      return {c.hidden_size, c.kv_dim()};
    case LoraTarget::kO:
      return {c.q_dim(), c.hidden_size};
    case LoraTarget::kGate:
    case LoraTarget::kUp:
      return {c.hidden_size, c.intermediate_size};
    case LoraTarget::kDown:
      return {c.intermediate_size, c.hidden_size};
  }
  return {0, 0};
}

}  // namespace

absl::StatusOr<std::vector<LoraTarget>> ParseLoraTargets(const std::string& text) {
  std::vector<LoraTarget> out;
  if (text == "all") {
    for (int t = 0; t < kNumLoraTargets; ++t) out.push_back(static_cast<LoraTarget>(t));
    return out;
  }
  for (absl::string_view name : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    bool found = false;
    for (int t = 0; t < kNumLoraTargets; ++t) {
      if (name == LoraTargetName(static_cast<LoraTarget>(t))) {
        out.push_back(static_cast<LoraTarget>(t));
        found = true;
      }
    }
    if (!found) return absl::InvalidArgumentError(absl::StrCat("unknown LoRA target '", name, "'"));
  }
  if (out.empty()) return absl::InvalidArgumentError("no LoRA targets given");
  return out;
}

absl::Status MakeTinyLoraAdapter(const std::string& dir, const std::string& model_dir,
                                 const TinyLoraOptions& o) {
  ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(model_dir));
  if (o.r <= 0) return absl::InvalidArgumentError("--r must be positive");
  RETURN_IF_ERROR(MakeDirectories(dir));
  std::vector<std::string> names;
  for (LoraTarget t : o.targets) names.push_back(LoraTargetName(t));
  // The keys PEFT's LoraConfig writes (values for a plain inference adapter).
  nlohmann::ordered_json cfg = {{"alpha_pattern", nlohmann::json::object()},
                                {"auto_mapping", nullptr},
                                {"base_model_name_or_path", model_dir},
                                {"bias", "none"},
                                {"fan_in_fan_out", false},
                                {"inference_mode", true},
                                {"init_lora_weights", true},
                                {"layer_replication", nullptr},
                                {"layers_pattern", nullptr},
                                {"layers_to_transform", nullptr},
                                {"loftq_config", nlohmann::json::object()},
                                {"lora_alpha", o.alpha},
                                {"lora_dropout", 0.0},
                                {"megatron_config", nullptr},
                                {"megatron_core", "megatron.core"},
                                {"modules_to_save", nullptr},
                                {"peft_type", "LORA"},
                                {"r", o.r},
                                {"rank_pattern", nlohmann::ordered_json::object()},
                                {"revision", nullptr},
                                {"target_modules", names},
                                {"task_type", "CAUSAL_LM"},
                                {"use_dora", false},
                                {"use_rslora", o.rslora}};
  for (const auto& [pattern, rank] : o.rank_pattern) cfg["rank_pattern"][pattern] = rank;
  std::ofstream(std::filesystem::path(dir) / "adapter_config.json") << cfg.dump(2) << "\n";

  std::vector<TensorSpec> specs;
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    for (LoraTarget t : o.targets) {
      const auto [in, out] = InOut(c, t);
      const std::string key =
          absl::StrCat("model.layers.", i, ".", t <= LoraTarget::kO ? "self_attn" : "mlp", ".",
                       LoraTargetName(t));
      int64_t r = o.r;
      for (const auto& [pattern, rank] : o.rank_pattern)
        if (std::regex_match(key, std::regex("(.*\\.)?(" + pattern + ")"))) {
          r = rank;
          break;
        }
      const uint64_t stream = static_cast<uint64_t>(i) * 64 + static_cast<uint64_t>(t) * 2;
      const float a_std = 1.0f / std::sqrt(static_cast<float>(in));
      const float b_std = o.zero_b ? 0.0f : 0.2f / std::sqrt(static_cast<float>(r));
      const uint64_t seed = o.seed ^ 0x10EAull;
      specs.push_back({LoraTensorName(i, t, 'A'), o.dtype, {r, in}, [=](float* d, int64_t n) {
                         FillUniform(seed, stream, 0.f, a_std, d, n);
                       }});
      specs.push_back({LoraTensorName(i, t, 'B'), o.dtype, {out, r}, [=](float* d, int64_t n) {
                         FillUniform(seed, stream + 1, 0.f, b_std, d, n);
                       }});
    }
  }
  return WriteSafetensors((std::filesystem::path(dir) / "adapter_model.safetensors").string(),
                          specs, {{"format", "pt"}});
}

}  // namespace para::tools
