// Writes a random-initialised LLaMA model in the Hugging Face directory layout
// (config.json, generation_config.json, tokenizer_config.json, model.safetensors or shards,
// tokenizer.model trained with sentencepiece on text generated here). It is the project's
// embedded default model and the tests' fixture. Deterministic for a given seed.
#pragma once

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "engine/dtype.h"

namespace para::tools {

struct TinyModelOptions {
  int64_t layers = 2;
  int64_t hidden = 64;
  int64_t heads = 4;
  int64_t kv_heads = 2;
  int64_t head_dim = 0;  // 0 = hidden / heads
  int64_t ffn = 128;
  int64_t vocab = 512;
  int64_t max_pos = 2048;
  double rope_theta = 10000.0;
  bool tie_embeddings = false;
  uint64_t seed = 0;
  DType dtype = DType::kF32;
  int shards = 1;
  bool tokenizer = true;  // train and write tokenizer.model
};

absl::Status MakeTinyModel(const std::string& dir, const TinyModelOptions& options);

// Deterministic pseudo-text (words, numbers, punctuation, accented letters, CJK, emoji), one
// sentence per line, used to train the tiny tokenizer.
std::string GenerateCorpus(uint64_t seed, int lines);

// Fills dst with uniform values of the given mean and standard deviation, deterministically
// from (seed, stream); parallel-safe (no shared state).
void FillUniform(uint64_t seed, uint64_t stream, float mean, float stddev, float* dst, int64_t n);

}  // namespace para::tools
