// The interface between the engine and a compute backend (CPU today, CUDA where built).
//
// A backend runs the decoder forward pass for one engine step over a batch that mixes
// sequences of any lengths: prefill sequences (many new tokens) and decode sequences (one new
// token) side by side. It reads and writes the paged KV cache through each sequence's block
// table. One call at a time (the engine thread); a backend owns its scratch memory and the
// storage of the pool's blocks (the engine keeps their accounting: BlockPool, block tables).
#pragma once

#include <cstdint>
#include <span>

#include "absl/status/status.h"
#include "engine/lora_adapter.h"
#include "engine/para_adapter.h"
#include "engine/sampling.h"

namespace para {

class AdapterDeviceTier;

// One sequence's part of a step.
struct ForwardSeq {
  std::span<const int32_t> tokens;  // the new tokens, at positions start_pos, start_pos+1, ...
  int32_t start_pos = 0;            // positions already in the KV cache
  std::span<const int32_t> blocks;  // block table covering start_pos + tokens.size() positions
  bool all_logits = false;          // logits for every new token (else only for the last)

  // PARA: the sequence's adapter (null = none) and its vector pages. When generate_vectors is
  // set (the sequence's first prefill, start_pos == 0), the backend computes the vectors from the
  // first prompt_len rows of this step, writes them to the pages, then scales with them; later
  // steps only read them.
  const ParaAdapter* para = nullptr;
  std::span<const int32_t> vector_pages;
  bool generate_vectors = false;
  int32_t prompt_len = 0;

  // LoRA: the sequence's adapter (null = none); its deltas are added after the shared GEMMs.
  const LoraAdapter* lora = nullptr;
};

// Counters a backend keeps for tests and metrics.
struct BackendStats {
  int64_t forward_calls = 0;
  int64_t para_generator_runs = 0;  // one per sequence whose vectors were generated
};

// One draw made on the backend's device from a row of the step's logits (backends whose
// SamplesOnDevice() is true). The host takes the uniform number from the sequence's RNG, so a
// seeded request draws the same stream of numbers wherever it is sampled.
struct DeviceDraw {
  int64_t logit_row = 0;
  const SamplingParams* params = nullptr;
  SamplingHistory history;
  double uniform = 0;  // UniformDouble of the sequence's RNG; read only when the draw is random
  int32_t top_n = -1;  // -1: no log-probabilities; else the token's entry with top_n alternatives
  int32_t forced_token = -1;  // >= 0: nothing is drawn; this token's entry is wanted instead
};

struct DeviceDrawResult {
  bool finite = true;  // false: the row held NaN or infinity, and nothing was drawn
  int32_t token = -1;
  LogprobEntry entry{};  // when top_n >= 0
};

// Rows of logits a batch produces, in order: per sequence, tokens.size() rows when all_logits,
// else one row.
int64_t NumLogitRows(std::span<const ForwardSeq> batch);

class Backend {
 public:
  virtual ~Backend() = default;
  // Runs the forward pass, writes new K/V into the cache, and writes NumLogitRows(batch) rows of
  // vocab_size logits to `logits`.
  virtual absl::Status Forward(std::span<const ForwardSeq> batch, float* logits) = 0;
  // Whether ForwardSample is available: logits processing and sampling on the backend's device,
  // so that only tokens and log-probabilities come back.
  virtual bool SamplesOnDevice() const { return false; }
  // Runs the forward pass like Forward, then makes `draws` (in logit-row order) from the logits
  // where they are and fills `results` (one per draw); the logits themselves are not returned.
  virtual absl::Status ForwardSample(std::span<const ForwardSeq> batch,
                                     std::span<const DeviceDraw> draws,
                                     std::span<DeviceDrawResult> results) {
    (void)batch;
    (void)draws;
    (void)results;
    return absl::UnimplementedError("this backend samples on the host");
  }
  // Copies one pool block's contents (keys, values or PARA vectors) into another.
  virtual void CopyBlock(int32_t src, int32_t dst) = 0;
  virtual const char* name() const = 0;
  virtual const BackendStats& stats() const = 0;
  // Where the adapter store's device tier lives (adapter_device_tier.h); null (the default) when
  // the backend computes from host memory, where host and device tiers are the same RAM.
  virtual AdapterDeviceTier* adapter_device_tier() { return nullptr; }
};

}  // namespace para
