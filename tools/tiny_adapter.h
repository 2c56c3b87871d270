// Writes random PARA adapters shaped for a given base model, in the on-disk format of
// docs/para-adapter-format.md: the fixtures of the adapter tests and the demo's tenants.
// Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/dtype.h"
#include "engine/para_adapter.h"

namespace para::tools {

struct TinyParaOptions {
  int64_t r = 8;
  ParaPooler pooler = ParaPooler::kLast;
  ParaActivation activation = ParaActivation::kGelu;
  uint64_t seed = 0;
  DType dtype = DType::kF32;
  bool identity = false;  // W_up = 0, b_up = 1: the base model exactly
  // Scales the random deviation from the identity (W_up and b_up - 1); small values give an
  // adapter that nudges a real model without derailing it (the demo's tenants).
  float strength = 1.0f;
};

absl::Status MakeTinyParaAdapter(const std::string& dir, const std::string& model_dir,
                                 const TinyParaOptions& options);

}  // namespace para::tools
