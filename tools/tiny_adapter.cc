#include "tools/tiny_adapter.h"

#include <cmath>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "engine/model_config.h"
#include "nlohmann/json.hpp"
#include "tools/safetensors_writer.h"
#include "tools/tiny_model.h"

namespace para::tools {

absl::Status MakeTinyParaAdapter(const std::string& dir, const std::string& model_dir,
                                 const TinyParaOptions& o) {
  ASSIGN_OR_RETURN(ModelConfig c, LoadModelConfig(model_dir));
  if (o.r <= 0) return absl::InvalidArgumentError("--r must be positive");
  RETURN_IF_ERROR(MakeDirectories(dir));
  nlohmann::ordered_json cfg = {{"peft_type", "PARA"},
                                {"base_model_name_or_path", model_dir},
                                {"r", o.r},
                                {"pooler", ParaPoolerName(o.pooler)},
                                {"activation", ParaActivationName(o.activation)},
                                {"target_modules", {"q_proj", "v_proj", "up_proj"}}};
  std::ofstream(std::filesystem::path(dir) / "adapter_config.json") << cfg.dump(2) << "\n";

  const int64_t d_out = c.q_dim() + c.kv_dim() + c.intermediate_size;
  std::vector<TensorSpec> specs;
  auto add = [&](int64_t layer, const char* which, std::vector<int64_t> shape, float mean,
                 float stddev) {
    const uint64_t stream = static_cast<uint64_t>(layer) * 16 + specs.size() % 3;
    specs.push_back({ParaTensorName(layer, which), o.dtype, std::move(shape),
                     [seed = o.seed, stream, mean, stddev](float* dst, int64_t n) {
                       FillUniform(seed ^ 0xADA9u, stream, mean, stddev, dst, n);
                     }});
  };
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) {
    add(i, "down.weight", {o.r, c.hidden_size}, 0.f,
        1.0f / std::sqrt(static_cast<float>(c.hidden_size)));
    if (o.identity) {
      add(i, "up.weight", {d_out, o.r}, 0.f, 0.f);
      add(i, "up.bias", {d_out}, 1.f, 0.f);
    } else {
      add(i, "up.weight", {d_out, o.r}, 0.f,
          0.3f * o.strength / std::sqrt(static_cast<float>(o.r)));
      add(i, "up.bias", {d_out}, 1.f, 0.1f * o.strength);
    }
  }
  return WriteSafetensors((std::filesystem::path(dir) / "adapter_model.safetensors").string(),
                          specs);
}

}  // namespace para::tools
