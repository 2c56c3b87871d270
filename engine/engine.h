// The engine: a loaded model, its paged KV cache, a compute backend and sampling, driven one
// step at a time.
//
// Step() runs one forward pass over a batch of sequences (prefill and decode mixed), samples
// one token for each and updates their state. Forward() is the lower-level teacher-forced pass
// (given tokens in, logits out) used by tools and tests. The engine has no threads of its own
// besides its compute pool and must be driven from one thread; it owns the model, cache and
// backend. Sequences are owned by the caller, who must Release() them to return their blocks.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/adapter_device_tier.h"
#include "engine/adapter_ref.h"
#include "engine/backend.h"
#include "engine/kv_cache.h"
#include "engine/model.h"
#include "engine/sequence.h"
#include "engine/thread_pool.h"

namespace para {

struct EngineOptions {
  std::string model_dir;
  // The compute device: "cpu", "cuda" or "auto" (CUDA when built and a device is present).
  std::string device = "auto";
  // The dtype weights are held and read in; nullopt keeps each tensor as stored (no copy).
  std::optional<DType> dtype;
  // The KV cache's element type; nullopt: F16 when the weights are 16-bit, else F32. (It
  // overrides kv_cache.dtype.)
  std::optional<DType> kv_cache_dtype;
  KvCacheOptions kv_cache;
  int num_threads = 0;         // 0 = all cores
  int64_t max_model_len = 0;   // context limit; 0 = max_position_embeddings
  int32_t max_logprobs = 20;   // largest top-n a request may ask for
  int64_t max_lora_rank = 64;  // LoRA adapters with a larger rank are refused
  // Sample on the backend's device when it can (CUDA): only tokens and log-probabilities come
  // back (prompt log-probabilities and beam candidates included).
  bool device_sampling = true;
};

// The most sequences one request's group may run (n, best_of, beam_width).
inline constexpr int32_t kMaxGroupWidth = 16;
// INVALID_ARGUMENT naming the problem with a request's n / best_of / beam search options.
absl::Status ValidateGroupParams(const GenerationRequest& request);

// "auto" → nullopt; "f32", "f16", "bf16" → that type; anything else INVALID_ARGUMENT naming
// `what` (a flag's name).
absl::StatusOr<std::optional<DType>> ParseDTypeChoice(std::string_view text, const char* what);

// What one Step did to one sequence.
struct SequenceUpdate {
  Sequence* seq;
  int32_t token = -1;      // the sampled token (-1 for a beam search step: see candidates)
  std::string text_delta;  // text that may be streamed now
  bool finished = false;
  // Not OK when this sequence's step failed (its logits were not finite, or its part of the batch
  // was refused): nothing was sampled or appended, and the request must end with this status. The
  // other sequences of the step are unaffected.
  absl::Status status;
  // A sampling group's first step (seq->fanout > 1): draws 1 .. fanout-1 from the same logits,
  // each with its branch's RNG, for the group to fork siblings with.
  struct Draw {
    int32_t token;
    float logprob;                         // of the token (raw distribution)
    std::optional<LogprobEntry> logprobs;  // when the request asks for logprobs
    std::mt19937_64 rng;                   // the branch's RNG after the draw
  };
  std::vector<Draw> fanout;
  // A beam search step (seq->beam_candidates > 0): the most likely next tokens, best first.
  std::vector<TokenLogprob> candidates;
};

// One sequence's part of a teacher-forced Forward().
struct ForwardItem {
  KvSequence* kv;
  std::span<const int32_t> tokens;  // appended at positions kv->num_cached, ...
  bool all_logits = false;
  // PARA adapter (null = none). Its vectors are generated on the item's first prefill
  // (kv->num_cached == 0) from the first prompt_len tokens (0 = all of them), then reused.
  const ParaAdapter* para = nullptr;
  int32_t prompt_len = 0;
  const LoraAdapter* lora = nullptr;  // LoRA adapter (null = none)
};

class Engine {
 public:
  static absl::StatusOr<std::unique_ptr<Engine>> Create(const EngineOptions& options);
  ~Engine();

  const Model& model() const { return *model_; }
  const ModelConfig& config() const { return model_->config(); }
  KvCache& kv_cache() { return *cache_; }
  const KvCache& kv_cache() const { return *cache_; }
  int64_t max_model_len() const { return max_model_len_; }
  ThreadPool& thread_pool() { return *pool_; }

  // Checks a request against the model and limits: INVALID_ARGUMENT naming the problem.
  absl::Status ValidateRequest(const GenerationRequest& request) const;
  // A new sequence for a validated request (no blocks yet). Seeds its RNG from the request's
  // seed, or from a random device when it has none.
  std::unique_ptr<Sequence> NewSequence(GenerationRequest request);
  // Pool blocks a request can need over its whole life: KV for prompt + max_tokens (capped by the
  // context) for each sequence of its group, the prompt's full blocks counted once, plus its
  // PARA vector pages.
  int32_t MaxBlocksFor(const GenerationRequest& request) const;
  // Loads and validates a PARA adapter against this engine's model.
  absl::StatusOr<std::shared_ptr<const ParaAdapter>> LoadParaAdapter(const std::string& dir) const;
  // Loads and validates a PEFT LoRA adapter against this engine's model and max_lora_rank.
  absl::StatusOr<std::shared_ptr<const LoraAdapter>> LoadLoraAdapter(const std::string& dir) const;
  // Loads either kind, by adapter_config.json's peft_type ("PARA" or "LORA").
  absl::StatusOr<AdapterRef> LoadAdapter(const std::string& dir) const;
  const BackendStats& backend_stats() const { return backend_->stats(); }
  // The backend's adapter device tier (adapter_device_tier.h), for the adapter store; null when
  // the backend has none (CPU).
  AdapterDeviceTier* adapter_device_tier() const { return backend_->adapter_device_tier(); }
  // What the engine runs on, for logs and ModelInfo: e.g. "cpu, weights bf16, KV cache f16".
  const std::string& device_summary() const { return device_summary_; }
  // The dtype the backend holds and reads the weights in.
  DType weights_dtype() const { return weights_dtype_; }

  // Runs one step: each unfinished sequence processes its uncached tokens (its whole prompt at
  // first, then one token) and samples one new token. Allocates the blocks it needs; fails with
  // RESOURCE_EXHAUSTED (and changes nothing) when the pool cannot supply them. A failure of one
  // sequence alone (non-finite logits, an item the backend refuses) is reported in that
  // sequence's update (`status`) and leaves the others' results unchanged.
  absl::Status Step(std::span<Sequence* const> seqs, std::vector<SequenceUpdate>* updates);
  // Teacher-forced forward pass; writes NumLogitRows rows of logits into `logits`. Reserves the
  // blocks (and PARA vector pages) each item needs; on failure nothing changes.
  absl::Status Forward(std::span<const ForwardItem> items, std::vector<float>* logits);
  // Returns a sequence's blocks to the pool.
  void Release(Sequence* seq) { cache_->Release(&seq->kv()); }
  // A sibling of `parent` for branch `branch` of its group: the parent's state, its paged KV
  // shared (the partly filled last block copied), its PARA vectors shared, and the RNG seed
  // `rng`. RESOURCE_EXHAUSTED when no block is free for the copy.
  absl::StatusOr<std::unique_ptr<Sequence>> ForkSequence(const Sequence& parent, int32_t branch,
                                                         const std::mt19937_64& rng);
  // A forked continuation of `parent`'s paged state (KvCache::Fork, with the partial last block
  // copied by the backend).
  absl::StatusOr<KvSequence> ForkKv(const KvSequence& parent) {
    return cache_->Fork(parent,
                        [this](int32_t src, int32_t dst) { backend_->CopyBlock(src, dst); });
  }
  // Preemption by recompute: frees the sequence's KV blocks (keeping its PARA vectors); its next
  // Step prefills all its tokens (prompt and generated) again.
  void ReleaseKv(Sequence* seq) { cache_->ReleaseKv(&seq->kv()); }
  // Whether Step samples on the backend's device.
  bool samples_on_device() const { return device_sampling_ && backend_->SamplesOnDevice(); }
  // Tests: replaces the backend with wrap(the current one).
  void WrapBackendForTesting(
      const std::function<std::unique_ptr<Backend>(std::unique_ptr<Backend>)>& wrap) {
    backend_ = wrap(std::move(backend_));
  }

 private:
  Engine() = default;
  absl::Status CheckParaAdapter(const ParaAdapter& adapter) const;
  absl::Status CheckLoraAdapter(const LoraAdapter& adapter) const;
  absl::Status Reserve(std::span<const ForwardItem> items);
  absl::Status CheckItem(const ForwardItem& item) const;
  // Marks the sequences whose logits rows hold NaN or infinity as failed.
  void FailNonFinite(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                     const std::vector<int64_t>& num_rows, std::span<SequenceUpdate> updates);
  static uint64_t PrefixSalt(const Sequence& s);
  void ReusePrefix(Sequence* s);
  void SampleAll(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                 const std::vector<int32_t>& cached_before, std::span<SequenceUpdate> updates);
  // Fills batch_ from checked, reserved items; after the backend ran, counts their tokens cached.
  absl::Status PrepareBatch(std::span<const ForwardItem> items);
  void CommitBatch(std::span<const ForwardItem> items);
  // Device sampling (engine_draws.cc): the draws for the step's sequences (taking uniform
  // numbers from their RNGs); the forward pass with the draws; sequences with a non-finite row
  // failed; the results applied like SampleAll.
  void PlanDraws(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                 const std::vector<int32_t>& cached_before,
                 std::span<const SequenceUpdate> updates);
  absl::Status ForwardDraws(std::span<const ForwardItem> items);
  void FailNonFiniteDraws(std::span<Sequence* const> seqs, std::span<SequenceUpdate> updates);
  void ApplyDraws(std::span<Sequence* const> seqs, std::span<SequenceUpdate> updates);
  static absl::Status NonFiniteError(const Sequence& s);

  std::unique_ptr<ThreadPool> pool_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<KvCache> cache_;
  std::unique_ptr<Backend> backend_;
  int64_t max_model_len_ = 0;
  std::string device_summary_;
  DType weights_dtype_ = DType::kF32;
  int32_t max_logprobs_ = 20;
  int64_t max_lora_rank_ = 64;
  int64_t next_id_ = 0;
  std::vector<float> logits_;
  std::vector<ForwardSeq> batch_;
  std::vector<SamplerScratch> scratch_;  // one per thread
  bool device_sampling_ = true;
  // This step's device draws: per draw its sequence's RNG after the draw (fanout branches), and
  // per sequence the index of its first draw (-1: none).
  std::vector<DeviceDraw> draws_;
  std::vector<DeviceDrawResult> draw_results_;
  std::vector<std::mt19937_64> draw_rngs_;
  std::vector<int32_t> draw_first_;
  std::vector<int32_t> draw_count_;   // per sequence: its draws
  std::vector<int32_t> draw_prompt_;  // per sequence: its prompt-logprob draws (first ones)
};

}  // namespace para
