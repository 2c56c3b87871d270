// Per-sequence sampling: logit bias, repetition / presence / frequency penalties, temperature,
// top-k, top-p, min-p, greedy, and logprobs.
//
// The order (vLLM's): tokens that may not be drawn yet (min_tokens) get -inf; logit_bias is added;
// the Hugging Face repetition penalty divides (or multiplies) the logits of every token seen in
// prompt and output; the OpenAI presence and frequency penalties subtract from the logits of
// tokens generated so far; then temperature; then top-k, top-p (on what top-k left) and min-p (on
// the probabilities after temperature); then a draw from the sequence's own RNG. Logprobs are
// always those of the raw model distribution (log-softmax of the unmodified logits). Functions are
// pure given their arguments; a SamplerScratch belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <span>
#include <utility>
#include <vector>

#include "absl/status/status.h"

namespace para {

struct SamplingParams {
  float temperature = 1.0f;         // 0 = greedy
  int32_t top_k = 0;                // 0 (or -1) = off
  float top_p = 1.0f;               // (0, 1]; 1 = off
  float repetition_penalty = 1.0f;  // > 0; 1 = off. Applies to prompt and generated tokens.
  float presence_penalty = 0.0f;    // [-2, 2]: minus this once for every generated token
  float frequency_penalty = 0.0f;   // [-2, 2]: minus this times its generated count
  float min_p = 0.0f;               // [0, 1]: drop tokens below min_p × the top probability
  std::vector<std::pair<int32_t, float>> logit_bias;  // added to a token's logit, [-100, 100]
  std::optional<uint64_t> seed;            // same seed => same tokens, whatever shares the batch
  std::optional<int32_t> logprobs;         // per generated token: chosen token + top-n (n may be 0)
  std::optional<int32_t> prompt_logprobs;  // per prompt token after the first: same shape
};

absl::Status ValidateSamplingParams(const SamplingParams& p, int32_t max_logprobs);

// True when no value is NaN or infinite (a row of logits that can be sampled from).
bool AllFinite(std::span<const float> values);

struct TokenLogprob {
  int32_t id;
  float logprob;
};

struct LogprobEntry {
  int32_t token;                  // the token this entry is about
  float logprob;                  // its logprob
  int32_t rank = 1;               // 1 + the number of tokens more likely than it
  std::vector<TokenLogprob> top;  // the top-n, highest first
};

struct SamplerScratch {
  std::vector<float> values;
  std::vector<int32_t> ids;
};

// What a sequence's history contributes to its next draw.
struct SamplingHistory {
  std::span<const int32_t> penalized;  // sorted distinct ids of prompt and output (repetition)
  std::span<const std::pair<int32_t, int32_t>> output_counts;  // (id, count) in the output
  std::span<const int32_t> suppressed;  // ids that may not be drawn now (min_tokens)
};

// Whether SampleToken with these parameters takes a number from the RNG (it does once, unless
// the choice is greedy: temperature 0 or top_k 1).
inline bool DrawIsRandom(const SamplingParams& p) {
  return !(p.temperature == 0.0f || p.top_k == 1);
}

// Picks the next token.
int32_t SampleToken(std::span<const float> logits, const SamplingParams& params,
                    const SamplingHistory& history, std::mt19937_64* rng, SamplerScratch* scratch);

// The `k` most likely tokens with their log-probabilities (raw logits), highest first; equal
// log-probabilities in id order.
std::vector<TokenLogprob> TopLogprobs(std::span<const float> logits, int32_t k,
                                      SamplerScratch* scratch);

// log-softmax entry for `token` with the top `top_n` alternatives, from raw logits.
LogprobEntry ComputeLogprobs(std::span<const float> logits, int32_t token, int32_t top_n,
                             SamplerScratch* scratch);

// Uniform double in [0, 1) from the generator (portable: same sequence on every platform).
inline double UniformDouble(std::mt19937_64* rng) {
  return static_cast<double>((*rng)() >> 11) * (1.0 / 9007199254740992.0);
}

}  // namespace para
