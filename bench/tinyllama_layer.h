// The shape of one TinyLlama-1.1B decoder layer (hidden 2048, 32 query heads and 4 KV heads of
// 64, FFN 5632, vocab 32000), shared by the kernel benchmarks. Header-only constants.
#pragma once

#include <cstdint>

#include "engine/model_config.h"

namespace para::bench {

inline constexpr int64_t kHidden = 2048, kHeads = 32, kKvHeads = 4, kHeadDim = 64, kFfn = 5632;
inline constexpr int64_t kQ = kHeads * kHeadDim, kKv = kKvHeads * kHeadDim, kQkv = kQ + 2 * kKv;

// A one-layer model config of this shape (LoRA adapters are validated against it).
inline ModelConfig LayerConfig() {
  ModelConfig c;
  c.hidden_size = kHidden;
  c.intermediate_size = kFfn;
  c.num_hidden_layers = 1;
  c.num_attention_heads = kHeads;
  c.num_key_value_heads = kKvHeads;
  c.head_dim = kHeadDim;
  c.vocab_size = 32000;
  return c;
}

}  // namespace para::bench
