// A PARA adapter (see docs/para-adapter-format.md): per layer, a bottleneck generator that turns
// the pooled prompt representation into scaling vectors for Q, V and the FFN up projection.
//
// ParaAdapter::Load reads an adapter directory and validates it completely against the base
// model before returning (config values, every tensor's presence, shape, dtype, finiteness, and
// r consistency); every error names the file and the tensor. Weights are held in float32.
// Immutable after Load and shared (shared_ptr<const>) by every request that uses it; safe to
// read from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter_uid.h"
#include "engine/aligned_buffer.h"
#include "engine/model_config.h"

namespace para {

enum class ParaPooler { kLast, kMean };
enum class ParaActivation { kGelu, kGeluTanh, kRelu, kSilu };

struct ParaConfig {
  int64_t r = 0;
  ParaPooler pooler = ParaPooler::kLast;
  ParaActivation activation = ParaActivation::kGelu;
};

// Parses adapter_config.json text (`source` names the file in errors).
absl::StatusOr<ParaConfig> ParseParaConfig(const std::string& json_text, const std::string& source);
const char* ParaPoolerName(ParaPooler p);
const char* ParaActivationName(ParaActivation a);
// act(x) for the adapter's activation.
float ParaActivate(ParaActivation a, float x);

struct ParaLayerWeights {
  AlignedBuffer down;  // [r, hidden]
  AlignedBuffer up;    // [d_out, r]
  AlignedBuffer bias;  // [d_out]
};

class ParaAdapter {
 public:
  static absl::StatusOr<std::shared_ptr<const ParaAdapter>> Load(const std::string& dir,
                                                                 const ModelConfig& model);

  const std::string& dir() const { return dir_; }
  // This loaded object's identity (adapter_uid.h); never shared with another adapter.
  uint64_t uid() const { return uid_; }
  const ParaConfig& config() const { return config_; }
  const ParaLayerWeights& layer(int64_t i) const { return layers_[i]; }
  int64_t num_layers() const { return static_cast<int64_t>(layers_.size()); }
  int64_t d_out() const { return d_out_; }
  int64_t num_parameters() const;
  int64_t bytes() const { return num_parameters() * static_cast<int64_t>(sizeof(float)); }

 private:
  uint64_t uid_ = NextAdapterUid();
  std::string dir_;
  ParaConfig config_;
  int64_t hidden_ = 0;
  int64_t d_out_ = 0;
  std::vector<ParaLayerWeights> layers_;
};

// The spec's tensor names.
std::string ParaTensorName(int64_t layer,
                           const char* which);  // which: "down.weight", "up.weight", "up.bias"

}  // namespace para
