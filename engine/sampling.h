// Per-sequence sampling: repetition penalty, temperature, top-k, top-p, greedy, and logprobs.
//
// The order is the one Hugging Face's generate uses: repetition penalty on the raw logits, then
// temperature, then top-k, then top-p (on the distribution top-k left), then a draw from the
// sequence's own RNG. Logprobs are always those of the raw model distribution (log-softmax of
// the unmodified logits). Functions are pure given their arguments; a SamplerScratch belongs to
// one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <vector>

#include "absl/status/status.h"

namespace para {

struct SamplingParams {
  float temperature = 1.0f;                // 0 = greedy
  int32_t top_k = 0;                       // 0 (or -1) = off
  float top_p = 1.0f;                      // (0, 1]; 1 = off
  float repetition_penalty = 1.0f;         // > 0; 1 = off. Applies to prompt and generated tokens.
  std::optional<uint64_t> seed;            // same seed => same tokens, whatever shares the batch
  std::optional<int32_t> logprobs;         // per generated token: chosen token + top-n (n may be 0)
  std::optional<int32_t> prompt_logprobs;  // per prompt token after the first: same shape
};

absl::Status ValidateSamplingParams(const SamplingParams& p, int32_t max_logprobs);

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct LogprobEntry {
  int32_t token;                  // the token this entry is about
  float logprob;                  // its logprob
  std::vector<TokenLogprob> top;  // the top-n, highest first
};

struct SamplerScratch {
  std::vector<float> values;
  std::vector<int32_t> ids;
};

// Picks the next token. `penalized` lists distinct token ids to apply the repetition penalty to.
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params,
                    std::span<const int32_t> penalized, std::mt19937_64* rng,
                    SamplerScratch* scratch);

// log-softmax entry for `token` with the top `top_n` alternatives, from raw logits.
LogprobEntry ComputeLogprobs(std::span<const float> logits, int32_t token, int32_t top_n,
                             SamplerScratch* scratch);

// Uniform double in [0, 1) from the generator (portable: same sequence on every platform).
inline double UniformDouble(std::mt19937_64* rng) {
  return static_cast<double>((*rng)() >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace para
