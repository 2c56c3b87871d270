// Writes safetensors files and sharded checkpoints (Hugging Face layout) from tensors whose
// float32 values are produced on demand, one tensor at a time, so multi-GB checkpoints never
// sit in memory at once. Stateless functions; safe from any thread for distinct paths.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/dtype.h"

namespace para::tools {

struct TensorSpec {
  std::string name;
  DType dtype = DType::kF32;  // F32, F16 or BF16 on disk
  std::vector<int64_t> shape;
  std::function<void(float* dst, int64_t numel)> fill;  // produces the float32 values
  int64_t numel() const;
  int64_t nbytes() const { return numel() * static_cast<int64_t>(DTypeSize(dtype)); }
};

absl::Status WriteSafetensors(const std::string& path, const std::vector<TensorSpec>& tensors,
                              const std::map<std::string, std::string>& metadata = {});

// `dir`/model.safetensors when num_shards == 1; else model-0000i-of-0000N.safetensors plus
// model.safetensors.index.json.
absl::Status WriteCheckpoint(const std::string& dir, const std::vector<TensorSpec>& tensors,
                             int num_shards);

}  // namespace para::tools
