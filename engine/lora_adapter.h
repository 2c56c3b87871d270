// A LoRA adapter in PEFT's format (adapter_config.json + adapter_model.safetensors as
// `peft`'s save_pretrained writes them), prepared for batched application next to the shared
// base weights: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ per targeted projection, s = lora_alpha / r (or
// lora_alpha / sqrt(r) with rsLoRA), per-module r and alpha from rank_pattern / alpha_pattern.
//
// Layout for the CPU kernels: projections that read the same input are grouped into one "site"
// (q, k, v read the attention norm output; gate and up the MLP norm output; o and down their
// own inputs), and a site's A matrices are stacked into one [sum of ranks, in] matrix, so one
// shrink GEMM serves all of them; each module keeps its B with the scale folded in.
// Load validates everything against the base model first; errors name the file and tensor.
// Immutable after Load; shared read-only across requests and threads.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter_uid.h"
#include "engine/aligned_buffer.h"
#include "engine/model_config.h"

namespace para {

enum class LoraTarget { kQ = 0, kK, kV, kO, kGate, kUp, kDown };
inline constexpr int kNumLoraTargets = 7;
const char* LoraTargetName(LoraTarget t);  // "q_proj", ...

// Where a site's delta is added: the fused QKV output, the attention output projection (into the
// residual), the fused gate/up output, or the down projection (into the residual).
enum class LoraSite { kQkv = 0, kO = 1, kGateUp = 2, kDown = 3 };
inline constexpr int kNumLoraSites = 4;

struct LoraModule {
  LoraTarget target;
  int64_t rank = 0;
  int64_t a_offset = 0;    // first row of this module's A in the site's stacked A
  int64_t out_offset = 0;  // first column of its output in the site's output rows
  int64_t out_dim = 0;
  float scale = 0;  // already folded into b
  AlignedBuffer b;  // [out_dim, rank], scaled
};

struct LoraSiteWeights {
  int64_t in_dim = 0;
  int64_t total_rank = 0;  // rows of a
  AlignedBuffer a;         // [total_rank, in_dim]
  std::vector<LoraModule> modules;
  bool empty() const { return modules.empty(); }
};

struct LoraLayer {
  std::array<LoraSiteWeights, kNumLoraSites> sites;
};

struct LoraConfig {
  int64_t r = 0;
  double lora_alpha = 8;
  bool use_rslora = false;
  std::vector<std::pair<std::string, int64_t>> rank_pattern;  // in file order
  std::vector<std::pair<std::string, double>> alpha_pattern;
  std::vector<std::string> target_names;  // target_modules as a list
  std::string target_regex;               // target_modules as a string ("all-linear" or a regex)
};

absl::StatusOr<LoraConfig> ParseLoraConfig(const std::string& json_text, const std::string& source);

class LoraAdapter {
 public:
  static absl::StatusOr<std::shared_ptr<const LoraAdapter>> Load(const std::string& dir,
                                                                 const ModelConfig& model,
                                                                 int64_t max_rank);

  const std::string& dir() const { return dir_; }
  // This loaded object's identity (adapter_uid.h); never shared with another adapter.
  uint64_t uid() const { return uid_; }
  const LoraConfig& config() const { return config_; }
  const LoraLayer& layer(int64_t i) const { return layers_[i]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t max_rank() const { return max_rank_; }  // largest module rank
  int64_t num_parameters() const { return num_parameters_; }
  int64_t bytes() const { return num_parameters_ * static_cast<int64_t>(sizeof(float)); }
  // Targets present in at least one layer.
  std::vector<LoraTarget> targets() const;

 private:
  uint64_t uid_ = NextAdapterUid();
  std::string dir_;
  LoraConfig config_;
  std::vector<LoraLayer> layers_;
  int64_t max_rank_ = 0;
  int64_t num_parameters_ = 0;
  std::array<bool, kNumLoraTargets> present_{};
};

// The PEFT tensor name of a module's A or B matrix in layer `layer`.
std::string LoraTensorName(int64_t layer, LoraTarget target, char which /* 'A' or 'B' */);

}  // namespace para
