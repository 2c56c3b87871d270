#include "engine/engine.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/file_util.h"
#include "common/status_macros.h"
#include "engine/cpu/cpu_backend.h"
#include "engine/device.h"
#include "nlohmann/json.hpp"

namespace para {

absl::StatusOr<std::optional<DType>> ParseDTypeChoice(std::string_view text, const char* what) {
  if (text == "auto") return std::optional<DType>();
  if (text == "f32") return std::optional<DType>(DType::kF32);
  if (text == "f16") return std::optional<DType>(DType::kF16);
  if (text == "bf16") return std::optional<DType>(DType::kBF16);
  return absl::InvalidArgumentError(
      absl::StrCat(what, " must be auto, f32, f16 or bf16, got '", std::string(text), "'"));
}

absl::StatusOr<std::unique_ptr<Engine>> Engine::Create(const EngineOptions& options) {
  if (options.device != "auto" && options.device != "cpu" && options.device != "cuda")
    return absl::InvalidArgumentError(
        absl::StrCat("--device must be auto, cpu or cuda, got '", options.device, "'"));
  std::string no_cuda;
  const bool cuda_present = options.device != "cpu" && CudaDeviceCount(&no_cuda) > 0;
  if (options.device == "cuda" && !cuda_present)
    return absl::FailedPreconditionError("--device cuda: " + no_cuda);
  const bool use_cuda = cuda_present;  // "cuda", or "auto" with a device present
  auto e = std::unique_ptr<Engine>(new Engine());
  e->pool_ = std::make_unique<ThreadPool>(options.num_threads);
  ASSIGN_OR_RETURN(e->model_, Model::Load(options.model_dir));
  const ModelConfig& c = e->model_->config();
  e->max_model_len_ = options.max_model_len > 0 ? options.max_model_len : c.max_position_embeddings;
  if (e->max_model_len_ > c.max_position_embeddings)
    return absl::InvalidArgumentError(absl::StrCat("max_model_len ", e->max_model_len_,
                                                   " exceeds the model's max_position_embeddings ",
                                                   c.max_position_embeddings));
  e->max_logprobs_ = options.max_logprobs;
  e->device_sampling_ = options.device_sampling;
  e->max_lora_rank_ = options.max_lora_rank;
  const DType weights = options.dtype.value_or(e->model_->stored_dtype());
  e->weights_dtype_ = weights;
  KvCacheOptions kv = options.kv_cache;
  kv.dtype = options.kv_cache_dtype.value_or(weights == DType::kF32 ? DType::kF32 : DType::kF16);
  ASSIGN_OR_RETURN(e->cache_, KvCache::Create(c, kv));
  if (use_cuda) {
    CudaBackendOptions co;
    co.max_step_rows = std::min<int64_t>(e->max_model_len_, 4096);
    co.max_lora_rank = options.max_lora_rank;
    std::string where;
    ASSIGN_OR_RETURN(e->backend_, CreateCudaBackend(e->model_.get(), e->cache_.get(), options.dtype,
                                                    co, e->pool_.get(), &where));
    e->device_summary_ = absl::StrCat(where, ", weights bf16, KV cache ",
                                      absl::AsciiStrToLower(DTypeName(kv.dtype)));
  } else {
    ASSIGN_OR_RETURN(e->backend_, cpu::CpuBackend::Create(e->model_.get(), e->cache_.get(),
                                                          options.dtype, e->pool_.get()));
    e->device_summary_ = absl::StrCat("cpu (", e->pool_->num_threads(), " threads), weights ",
                                      absl::AsciiStrToLower(DTypeName(weights)), ", KV cache ",
                                      absl::AsciiStrToLower(DTypeName(kv.dtype)));
  }
  e->scratch_.resize(e->pool_->num_threads());
  return e;
}

Engine::~Engine() = default;

absl::Status Engine::ValidateRequest(const GenerationRequest& r) const {
  const int64_t n = static_cast<int64_t>(r.prompt_ids.size());
  if (n == 0) return absl::InvalidArgumentError("prompt is empty");
  if (n >= max_model_len_)
    return absl::InvalidArgumentError(absl::StrCat("prompt has ", n,
                                                   " tokens; the context limit is ", max_model_len_,
                                                   " (prompt + at least one generated token)"));
  const int64_t vocab = config().vocab_size;
  for (int64_t i = 0; i < n; ++i) {
    if (r.prompt_ids[i] < 0 || r.prompt_ids[i] >= vocab)
      return absl::InvalidArgumentError(absl::StrCat("prompt token ", i, " has id ",
                                                     r.prompt_ids[i],
                                                     ", outside the vocabulary [0, ", vocab, ")"));
  }
  for (int32_t id : r.stopping.stop_token_ids)
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(
          absl::StrCat("stop token id ", id, " is outside the vocabulary"));
  if (r.stopping.max_tokens < 1)
    return absl::InvalidArgumentError(
        absl::StrCat("max_tokens must be >= 1, got ", r.stopping.max_tokens));
  if (r.stopping.min_tokens < 0 || r.stopping.min_tokens > r.stopping.max_tokens)
    return absl::InvalidArgumentError(
        absl::StrCat("min_tokens must be in [0, max_tokens = ", r.stopping.max_tokens, "], got ",
                     r.stopping.min_tokens));
  for (const auto& [id, bias] : r.sampling.logit_bias)
    if (id < 0 || id >= vocab)
      return absl::InvalidArgumentError(
          absl::StrCat("logit_bias names token ", id, ", outside the vocabulary [0, ", vocab, ")"));
  RETURN_IF_ERROR(ValidateGroupParams(r));
  if (r.para != nullptr && r.lora != nullptr)
    return absl::InvalidArgumentError("a request takes one adapter, PARA or LoRA, not both");
  if (r.para != nullptr) RETURN_IF_ERROR(CheckParaAdapter(*r.para));
  if (r.lora != nullptr) RETURN_IF_ERROR(CheckLoraAdapter(*r.lora));
  const int32_t pages = r.para != nullptr ? cache_->para_pages() : 0;
  if (cache_->BlocksFor(std::min<int64_t>(n + 1, max_model_len_)) + pages >
      cache_->pool().num_blocks())
    return absl::InvalidArgumentError(
        absl::StrCat("prompt of ", n, " tokens needs more KV blocks than the pool has (",
                     cache_->pool().num_blocks(), " blocks of ", cache_->block_size(), ")"));
  return ValidateSamplingParams(r.sampling, max_logprobs_);
}

absl::StatusOr<std::unique_ptr<Sequence>> Engine::ForkSequence(const Sequence& parent,
                                                               int32_t branch,
                                                               const std::mt19937_64& rng) {
  ASSIGN_OR_RETURN(KvSequence kv, ForkKv(parent.kv()));
  return parent.Fork(next_id_++, branch, std::move(kv), rng);
}

absl::Status ValidateGroupParams(const GenerationRequest& r) {
  const GroupParams& g = r.group;
  const SamplingParams& s = r.sampling;
  auto bad = [](const std::string& what) { return absl::InvalidArgumentError(what); };
  if (g.n < 1 || g.n > kMaxGroupWidth)
    return bad(absl::StrCat("n must be in [1, ", kMaxGroupWidth, "], got ", g.n));
  if (g.beam_width < 0 || g.beam_width > kMaxGroupWidth)
    return bad(absl::StrCat("beam_width must be in [0, ", kMaxGroupWidth, "], got ", g.beam_width));
  if (!std::isfinite(g.length_penalty)) return bad("length_penalty must be finite");
  if (g.beam_width > 0) {
    if (g.best_of != 1) return bad("best_of does not apply to beam search (use beam_width)");
    if (g.n > g.beam_width)
      return bad(absl::StrCat("n (", g.n, ") cannot exceed beam_width (", g.beam_width, ")"));
    if (s.temperature != 0.0f)
      return bad("beam search is deterministic: temperature must be 0 (or unset)");
    if (s.repetition_penalty != 1.0f || s.presence_penalty != 0.0f || s.frequency_penalty != 0.0f ||
        !s.logit_bias.empty())
      return bad("beam search does not take penalties or logit_bias");
    if (r.stopping.min_tokens > 0) return bad("beam search does not take min_tokens");
    if (!r.stopping.stop.empty())
      return bad("beam search does not take stop strings (stop token ids work)");
    if (s.logprobs) return bad("beam search returns no per-token logprobs");
    return absl::OkStatus();
  }
  if (g.best_of < g.n || g.best_of > kMaxGroupWidth)
    return bad(
        absl::StrCat("best_of must be in [n = ", g.n, ", ", kMaxGroupWidth, "], got ", g.best_of));
  if (g.best_of > 1 && s.temperature == 0.0f)
    return bad("n and best_of above 1 need sampling (temperature > 0): greedy draws are identical");
  return absl::OkStatus();
}

std::unique_ptr<Sequence> Engine::NewSequence(GenerationRequest request) {
  uint64_t seed = request.sampling.seed ? *request.sampling.seed
                                        : std::random_device{}() * 0x9E3779B97F4A7C15ull;
  return std::make_unique<Sequence>(next_id_++, std::move(request), model_->tokenizer(), seed,
                                    config().eos_token_ids);
}

int32_t Engine::MaxBlocksFor(const GenerationRequest& r) const {
  const int64_t prompt = static_cast<int64_t>(r.prompt_ids.size());
  const int64_t total = std::min<int64_t>(prompt + r.stopping.max_tokens, max_model_len_);
  // The prompt's full blocks are shared by the group's sequences; each has the rest of its own.
  const int32_t shared = static_cast<int32_t>(prompt / cache_->block_size());
  const int32_t own = cache_->BlocksFor(total) - shared;
  return shared + r.group.width() * own + (r.para != nullptr ? cache_->para_pages() : 0);
}

absl::StatusOr<std::shared_ptr<const ParaAdapter>> Engine::LoadParaAdapter(
    const std::string& dir) const {
  return ParaAdapter::Load(dir, config());
}

absl::StatusOr<std::shared_ptr<const LoraAdapter>> Engine::LoadLoraAdapter(
    const std::string& dir) const {
  return LoraAdapter::Load(dir, config(), max_lora_rank_);
}

absl::StatusOr<AdapterRef> Engine::LoadAdapter(const std::string& dir) const {
  const std::string path = dir + "/adapter_config.json";
  ASSIGN_OR_RETURN(std::string text, ReadTextFile(path));
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return absl::InvalidArgumentError(absl::StrCat(path, " is not a valid JSON object"));
  const auto type = j.is_object() ? j.find("peft_type") : j.end();
  AdapterRef ref;
  if (type != j.end() && *type == "LORA") {
    ASSIGN_OR_RETURN(ref.lora, LoadLoraAdapter(dir));
  } else if (type != j.end() && *type == "PARA") {
    ASSIGN_OR_RETURN(ref.para, LoadParaAdapter(dir));
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": peft_type ", type == j.end() ? std::string("is missing") : "is " + type->dump(),
        "; supported: \"PARA\", \"LORA\""));
  }
  return ref;
}

absl::Status Engine::CheckLoraAdapter(const LoraAdapter& a) const {
  if (a.num_layers() != config().num_hidden_layers)
    return absl::InvalidArgumentError(
        absl::StrCat("LoRA adapter ", a.dir(), " was built for another model shape"));
  return absl::OkStatus();
}

absl::Status Engine::CheckParaAdapter(const ParaAdapter& a) const {
  const ModelConfig& c = config();
  if (a.num_layers() != c.num_hidden_layers ||
      a.d_out() != c.q_dim() + c.kv_dim() + c.intermediate_size)
    return absl::InvalidArgumentError(
        absl::StrCat("PARA adapter ", a.dir(), " was built for another model shape"));
  return cache_->para_layout().status();
}

absl::Status Engine::Reserve(std::span<const ForwardItem> items) {
  // All or nothing: on failure every sequence gets back exactly what it had.
  std::vector<std::pair<size_t, size_t>> before;
  for (const auto& it : items) before.push_back({it.kv->blocks.size(), it.kv->vector_pages.size()});
  for (size_t i = 0; i < items.size(); ++i) {
    const ForwardItem& it = items[i];
    absl::Status s =
        cache_->Reserve(it.kv, it.kv->num_cached + static_cast<int64_t>(it.tokens.size()));
    if (s.ok() && it.para != nullptr) s = cache_->ReserveVectorPages(it.kv, cache_->para_pages());
    if (!s.ok()) {
      for (size_t j = 0; j <= i; ++j) {
        KvSequence* kv = items[j].kv;
        cache_->pool().Release(std::span<const int32_t>(kv->blocks).subspan(before[j].first));
        kv->blocks.resize(before[j].first);
        cache_->pool().Release(
            std::span<const int32_t>(kv->vector_pages).subspan(before[j].second));
        kv->vector_pages.resize(before[j].second);
      }
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status Engine::CheckItem(const ForwardItem& it) const {
  if (it.lora != nullptr) RETURN_IF_ERROR(CheckLoraAdapter(*it.lora));
  if (it.para == nullptr) return absl::OkStatus();
  RETURN_IF_ERROR(CheckParaAdapter(*it.para));
  if (it.lora != nullptr)
    return absl::InvalidArgumentError("an item takes one adapter, PARA or LoRA");
  if (!it.kv->vectors_ready && it.kv->num_cached != 0)
    return absl::FailedPreconditionError(
        "PARA vectors are generated on a sequence's first prefill (num_cached must be 0)");
  if (!it.kv->vectors_ready && it.prompt_len > static_cast<int32_t>(it.tokens.size()))
    return absl::InvalidArgumentError("prompt_len exceeds the tokens of the first prefill");
  return absl::OkStatus();
}

absl::Status Engine::Forward(std::span<const ForwardItem> items, std::vector<float>* logits) {
  RETURN_IF_ERROR(PrepareBatch(items));
  logits->resize(NumLogitRows(batch_) * config().vocab_size);
  RETURN_IF_ERROR(backend_->Forward(batch_, logits->data()));
  CommitBatch(items);
  return absl::OkStatus();
}

absl::Status Engine::PrepareBatch(std::span<const ForwardItem> items) {
  for (const auto& it : items) RETURN_IF_ERROR(CheckItem(it));
  RETURN_IF_ERROR(Reserve(items));
  batch_.clear();
  for (const auto& it : items) {
    ForwardSeq s{it.tokens, it.kv->num_cached, it.kv->blocks, it.all_logits};
    s.lora = it.lora;
    if (it.para != nullptr) {
      s.para = it.para;
      s.vector_pages = it.kv->vector_pages;
      s.generate_vectors = !it.kv->vectors_ready;
      s.prompt_len = it.prompt_len > 0 ? it.prompt_len : static_cast<int32_t>(it.tokens.size());
    }
    batch_.push_back(s);
  }
  return absl::OkStatus();
}

void Engine::CommitBatch(std::span<const ForwardItem> items) {
  for (const auto& it : items) {
    it.kv->num_cached += static_cast<int32_t>(it.tokens.size());
    if (it.para != nullptr) it.kv->vectors_ready = true;
  }
}

absl::Status Engine::Step(std::span<Sequence* const> seqs, std::vector<SequenceUpdate>* updates) {
  const size_t base = updates->size();
  updates->resize(base + seqs.size());
  const std::span<SequenceUpdate> out(updates->data() + base, seqs.size());
  std::vector<ForwardItem> items;
  std::vector<int64_t> first_row(seqs.size(), -1);  // first logits row of each sequence (-1: none)
  std::vector<int64_t> num_rows(seqs.size(), 0);
  std::vector<int32_t> cached_before(seqs.size(), 0);
  int64_t rows = 0;
  for (size_t i = 0; i < seqs.size(); ++i) {
    Sequence* s = seqs[i];
    out[i] = SequenceUpdate{};
    out[i].seq = s;
    if (s->kv().num_cached == 0 && s->kv().blocks.empty()) ReusePrefix(s);
    const auto& toks = s->tokens();
    const int32_t cached = s->kv().num_cached;
    const bool want_prompt_lp = s->request().sampling.prompt_logprobs && !s->prompt_logprobs_done();
    ForwardItem item{&s->kv(),        std::span<const int32_t>(toks).subspan(cached),
                     want_prompt_lp,  s->request().para.get(),
                     s->num_prompt(), s->request().lora.get()};
    if (absl::Status st = CheckItem(item); !st.ok()) {  // this sequence alone fails
      out[i].status = std::move(st);
      continue;
    }
    items.push_back(item);
    first_row[i] = rows;
    num_rows[i] = want_prompt_lp ? static_cast<int64_t>(toks.size()) - cached : 1;
    cached_before[i] = cached;
    rows += num_rows[i];
  }
  if (items.empty()) return absl::OkStatus();
  const bool on_device = samples_on_device();
  if (on_device) PlanDraws(seqs, first_row, cached_before, out);
  if (absl::Status st = on_device ? ForwardDraws(items) : Forward(items, &logits_); !st.ok()) {
    updates->resize(base);
    return st;
  }
  if (!on_device) FailNonFinite(seqs, first_row, num_rows, out);
  if (on_device) FailNonFiniteDraws(seqs, out);
  if (PrefixCache* cache = cache_->prefix_cache())  // the prompts computed in full this step
    for (size_t i = 0; i < seqs.size(); ++i) {
      const Sequence& s = *seqs[i];
      if (!out[i].status.ok() || first_row[i] < 0) continue;
      if (cached_before[i] < s.num_prompt() && s.kv().num_cached >= s.num_prompt())
        cache->Insert(std::span<const int32_t>(s.tokens()).first(s.num_prompt()), PrefixSalt(s),
                      s.kv().blocks,
                      s.request().para ? std::span<const int32_t>(s.kv().vector_pages)
                                       : std::span<const int32_t>());
    }
  if (on_device) {
    ApplyDraws(seqs, out);
  } else {
    SampleAll(seqs, first_row, cached_before, out);
  }
  return absl::OkStatus();
}

void Engine::FailNonFinite(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                           const std::vector<int64_t>& num_rows, std::span<SequenceUpdate> out) {
  const int64_t vocab = config().vocab_size;
  for (size_t i = 0; i < seqs.size(); ++i) {
    if (first_row[i] < 0) continue;
    const std::span<const float> rows(logits_.data() + first_row[i] * vocab, num_rows[i] * vocab);
    if (!AllFinite(rows)) out[i].status = NonFiniteError(*seqs[i]);
  }
}

absl::Status Engine::NonFiniteError(const Sequence& s) {
  return absl::InternalError(absl::StrCat(
      "the model computed non-finite logits (NaN or infinity) for this request at position ",
      s.tokens().size(),
      s.request().para   ? " with its PARA adapter"
      : s.request().lora ? " with its LoRA adapter"
                         : "",
      "; the request was stopped, the other requests of its batch were not affected"));
}

uint64_t Engine::PrefixSalt(const Sequence& s) {
  const GenerationRequest& r = s.request();
  return r.para ? r.para->uid() : r.lora ? r.lora->uid() : 0;
}

// A sequence about to be prefilled from scratch (new, or preempted) takes what the prefix cache
// holds of its prompt: those blocks are not computed again. Not for requests that want prompt
// logprobs (every prompt position must then be computed).
void Engine::ReusePrefix(Sequence* s) {
  PrefixCache* cache = cache_->prefix_cache();
  if (cache == nullptr || s->request().sampling.prompt_logprobs) return;
  KvSequence& kv = s->kv();
  const bool para = s->request().para != nullptr;
  PrefixCache::Hit hit = cache->Lookup(std::span<const int32_t>(s->tokens()).first(s->num_prompt()),
                                       PrefixSalt(*s), para ? cache_->para_pages() : 0);
  if (hit.blocks.empty()) return;
  kv.blocks = std::move(hit.blocks);
  kv.num_cached = hit.num_tokens;
  if (para) {
    if (kv.vectors_ready) {  // preempted: it still has its own vectors
      cache_->pool().Release(hit.vector_pages);
    } else {
      kv.vector_pages = std::move(hit.vector_pages);
      kv.vectors_ready = true;
    }
  }
}

void Engine::SampleAll(std::span<Sequence* const> seqs, const std::vector<int64_t>& first_row,
                       const std::vector<int32_t>& cached_before,
                       std::span<SequenceUpdate> updates) {
  const int64_t vocab = config().vocab_size;
  auto row = [&](int64_t r) { return std::span<const float>(logits_.data() + r * vocab, vocab); };
  pool_->RunOnAll([&](int t) {
    SamplerScratch* scratch = &scratch_[t];
    for (size_t i = t; i < seqs.size(); i += pool_->num_threads()) {
      if (first_row[i] < 0 || !updates[i].status.ok()) continue;  // failed: nothing to sample
      Sequence* s = seqs[i];
      const SamplingParams& p = s->request().sampling;
      int64_t last = first_row[i];
      if (p.prompt_logprobs && !s->prompt_logprobs_done()) {
        // Rows cover positions [0, n): row j predicts prompt token j + 1.
        // The sequence's rows cover positions [cached, size): row r predicts token r + 1.
        const int64_t cached = cached_before[i];
        const int64_t n = s->num_prompt();
        for (int64_t j = std::max<int64_t>(0, cached); j + 1 < n; ++j)
          s->AddPromptLogprobs(ComputeLogprobs(row(first_row[i] + j - cached), s->tokens()[j + 1],
                                               *p.prompt_logprobs, scratch));
        s->MarkPromptLogprobsDone();
        last = first_row[i] + static_cast<int64_t>(s->tokens().size()) - 1 - cached;
      }
      SequenceUpdate& u = updates[i];
      const std::span<const float> logits = row(last);
      if (s->beam_candidates > 0) {  // beam search: the group chooses and appends
        u.candidates = TopLogprobs(logits, s->beam_candidates, scratch);
        continue;
      }
      if (s->fanout > 1) {  // a sampling group's first step: the group forks and appends
        for (int32_t d = 0; d < s->fanout; ++d) {
          SequenceUpdate::Draw draw;
          std::mt19937_64* rng = s->rng();
          if (d > 0) {
            draw.rng.seed(s->ForkSeed(d));
            rng = &draw.rng;
          }
          draw.token = SampleToken(logits, p, s->history(), rng, scratch);
          LogprobEntry e = ComputeLogprobs(logits, draw.token, p.logprobs.value_or(0), scratch);
          draw.logprob = e.logprob;
          if (p.logprobs) draw.logprobs = std::move(e);
          u.fanout.push_back(std::move(draw));
        }
        continue;
      }
      const int32_t token = SampleToken(logits, p, s->history(), s->rng(), scratch);
      const bool ranked = s->track_cumulative_logprob;
      std::optional<LogprobEntry> entry;
      if (p.logprobs || ranked)
        entry = ComputeLogprobs(logits, token, p.logprobs.value_or(0), scratch);
      if (ranked) s->AddCumulativeLogprob(entry->logprob);
      if (p.logprobs) s->AddLogprobs(*std::move(entry));
      u.token = token;
      u.text_delta = s->AppendToken(token, config().eos_token_ids, max_model_len_);
      u.finished = s->finished();
    }
  });
}

}  // namespace para
