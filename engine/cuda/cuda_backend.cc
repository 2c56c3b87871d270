#include "engine/cuda/cuda_backend.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/cpu/cpu_backend.h"  // RopeInvFreq

namespace para::cuda {
namespace {

constexpr int64_t kLogitChunkRows = 512;       // LM head rows per GEMM (logits scratch size)
constexpr int64_t kWorkspaceBytes = 32 << 20;  // cuBLASLt workspace
constexpr int32_t kMinSplitChunk = 64;         // attention positions per split, at least

KvType KvTypeOf(DType t) {
  return t == DType::kF16 ? KvType::kF16 : t == DType::kBF16 ? KvType::kBF16 : KvType::kF32;
}

// Appends arrays to a pinned host buffer and gives their addresses in its device twin.
class MetaWriter {
 public:
  MetaWriter(uint8_t* host, uint8_t* dev, size_t cap) : host_(host), dev_(dev), cap_(cap) {}
  template <typename T>
  const T* Put(const T* src, size_t n) {
    used_ = (used_ + 15) / 16 * 16;
    const size_t bytes = n * sizeof(T);
    const T* at = reinterpret_cast<const T*>(dev_ + used_);
    if (used_ + bytes <= cap_ && bytes > 0) std::memcpy(host_ + used_, src, bytes);
    used_ += bytes;
    return at;
  }
  template <typename T>
  const T* Put(const std::vector<T>& v) {
    return Put(v.data(), v.size());
  }
  size_t used() const { return used_; }
  bool fits() const { return used_ <= cap_; }

 private:
  uint8_t* host_;
  uint8_t* dev_;
  size_t cap_;
  size_t used_ = 0;
};

}  // namespace

CudaBackend::CudaBackend(const Model* model, const KvCache* cache,
                         const CudaBackendOptions& options)
    : model_(model),
      cfg_(model->config()),
      cache_(cache),
      options_(options),
      adapters_(options.adapter_bytes) {}

CudaBackend::~CudaBackend() {
  if (stream_ != nullptr) {
    cudaStreamSynchronize(stream_);
    cudaStreamDestroy(stream_);
  }
}

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(const Model* model,
                                                                 const KvCache* cache,
                                                                 const CudaBackendOptions& options,
                                                                 ThreadPool* pool) {
  const ModelConfig& c = model->config();
  if (c.head_dim > kMaxHeadDim || c.head_dim % 2 != 0)
    return absl::InvalidArgumentError(absl::StrCat("the CUDA backend supports even head_dim up to ",
                                                   kMaxHeadDim, ", the model has ", c.head_dim));
  auto b = std::unique_ptr<CudaBackend>(new CudaBackend(model, cache, options));
  RETURN_IF_ERROR(CudaCheck(cudaSetDevice(0), "cudaSetDevice"));
  RETURN_IF_ERROR(CudaCheck(cudaDeviceGetAttribute(&b->num_sms_, cudaDevAttrMultiProcessorCount, 0),
                            "cudaDeviceGetAttribute"));
  RETURN_IF_ERROR(CudaCheck(cudaStreamCreate(&b->stream_), "cudaStreamCreate"));
  ASSIGN_OR_RETURN(b->w_, CudaWeights::Upload(*model, pool));
  ASSIGN_OR_RETURN(b->gemm_, LtGemm::Create(kWorkspaceBytes));

  // The block pool: KV rows and PARA pages, one allocation, zeroed.
  const KvLayout& kl = cache->layout();
  const size_t pool_bytes = static_cast<size_t>(cache->pool().num_blocks()) * kl.block_bytes();
  RETURN_IF_ERROR(b->pool_mem_.Allocate(pool_bytes, "the KV cache"));
  RETURN_IF_ERROR(CudaCheck(cudaMemset(b->pool_mem_.data(), 0, pool_bytes), "cudaMemset"));
  b->pool_.base = b->pool_mem_.data();
  b->pool_.geo = {static_cast<int32_t>(kl.layers), static_cast<int32_t>(kl.kv_heads),
                  static_cast<int32_t>(kl.head_dim), kl.block_size};
  b->pool_.type = KvTypeOf(kl.dtype);
  b->pool_.page_floats = kl.block_bytes() / static_cast<int64_t>(sizeof(float));

  // Constants: RoPE frequencies and the PARA slot table.
  const std::vector<double> inv = cpu::RopeInvFreq(c);
  std::vector<int32_t> slot_page(c.num_hidden_layers * 3, 0);
  std::vector<int64_t> slot_offset(c.num_hidden_layers * 3, 0);
  if (cache->para_layout().ok()) {
    for (int64_t l = 0; l < c.num_hidden_layers; ++l)
      for (int s = 0; s < 3; ++s) {
        const ParaVectorLayout::Slot slot = cache->para_layout()->slot(l, s);
        slot_page[l * 3 + s] = slot.page;
        slot_offset[l * 3 + s] = slot.offset;
      }
  }
  Carve count;
  count.Take<double>(inv.size());
  count.Take<int32_t>(slot_page.size());
  count.Take<int64_t>(slot_offset.size());
  RETURN_IF_ERROR(b->constants_.Allocate(count.used(), "constants"));
  Carve cv(b->constants_.data());
  double* inv_dev = cv.Take<double>(inv.size());
  int32_t* page_dev = cv.Take<int32_t>(slot_page.size());
  int64_t* off_dev = cv.Take<int64_t>(slot_offset.size());
  RETURN_IF_ERROR(CudaCheck(
      cudaMemcpy(inv_dev, inv.data(), inv.size() * sizeof(double), cudaMemcpyHostToDevice),
      "uploading constants"));
  RETURN_IF_ERROR(CudaCheck(cudaMemcpy(page_dev, slot_page.data(),
                                       slot_page.size() * sizeof(int32_t), cudaMemcpyHostToDevice),
                            "uploading constants"));
  RETURN_IF_ERROR(
      CudaCheck(cudaMemcpy(off_dev, slot_offset.data(), slot_offset.size() * sizeof(int64_t),
                           cudaMemcpyHostToDevice),
                "uploading constants"));
  b->inv_freq_ = inv_dev;
  b->pool_.slot_page = page_dev;
  b->pool_.slot_offset = off_dev;
  RETURN_IF_ERROR(b->AllocateScratch(std::max<int64_t>(1, options.max_step_rows)));
  return b;
}

absl::Status CudaBackend::AllocateScratch(int64_t rows) {
  const int64_t h = cfg_.hidden_size, f = cfg_.intermediate_size, hd = cfg_.head_dim;
  const int64_t qkv_n = cfg_.q_dim() + 2 * cfg_.kv_dim();
  const int64_t logit_rows = std::min(rows, kLogitChunkRows);
  max_partials_ = std::max<int64_t>(rows * cfg_.num_attention_heads, int64_t{1} << 16);
  lora_ldt_ = 3 * options_.max_lora_rank;
  auto carve = [&](Carve& cv) {
    h_ = cv.Take<float>(rows * h);
    xn_ = cv.Take<uint16_t>(rows * std::max(h, f));
    qkv_ = cv.Take<float>(rows * qkv_n);
    attn_ = cv.Take<uint16_t>(rows * cfg_.q_dim());
    gu_ = cv.Take<float>(rows * 2 * f);
    act_ = cv.Take<uint16_t>(rows * f);
    cos_ = cv.Take<float>(rows * hd / 2);
    sin_ = cv.Take<float>(rows * hd / 2);
    partials_ = cv.Take<float>(max_partials_ * (hd + 2));
    lora_t_ = cv.Take<float>(rows * lora_ldt_);
    para_pooled_ = cv.Take<float>(rows * h);
    para_t_ = cv.Take<float>(rows * h);
    logits_dev_ = cv.Take<float>(logit_rows * cfg_.vocab_size);
  };
  if (stream_ != nullptr) RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(stream_), "sync"));
  Carve sizing;
  carve(sizing);
  RETURN_IF_ERROR(scratch_.Allocate(sizing.used(), "the step scratch"));
  Carve real(scratch_.data());
  carve(real);
  RETURN_IF_ERROR(
      logits_host_.Allocate(logit_rows * cfg_.vocab_size * sizeof(float), "the logits copy"));
  scratch_rows_ = rows;
  return absl::OkStatus();
}

void CudaBackend::CopyBlock(int32_t src, int32_t dst) {
  const int64_t bytes = cache_->layout().block_bytes();
  cudaMemcpyAsync(pool_mem_.data() + dst * bytes, pool_mem_.data() + src * bytes, bytes,
                  cudaMemcpyDeviceToDevice, stream_);
}

absl::Status CudaBackend::UploadStep(std::span<const ForwardSeq> batch) {
  const int32_t layers = static_cast<int32_t>(cfg_.num_hidden_layers);
  adapters_.BeginStep(stream_);  // device tier: frees and side-stream uploads
  // Adapters on the device.
  std::vector<const LoraSiteDesc*> tables;
  for (const LoraAdapter* a : plan_.lora_adapters) {
    ASSIGN_OR_RETURN(const LoraSiteDesc* t, adapters_.Lora(*a));
    tables.push_back(t);
  }
  for (int s = 0; s < kNumLoraSites; ++s) {
    lora_max_rank_[s] = 0;
    for (const LoraAdapter* a : plan_.lora_adapters)
      for (int64_t l = 0; l < a->num_layers(); ++l)
        lora_max_rank_[s] = std::max<int32_t>(
            lora_max_rank_[s], static_cast<int32_t>(a->layer(l).sites[s].total_rank));
    if (lora_max_rank_[s] > lora_ldt_)
      return absl::InvalidArgumentError(absl::StrCat("a LoRA site has total rank ",
                                                     lora_max_rank_[s], ", more than 3 x the ",
                                                     "maximum LoRA rank ", options_.max_lora_rank));
  }
  std::vector<ParaGenItem> items;
  para_max_r_ = 0;
  const int32_t gen = static_cast<int32_t>(plan_.generating.size());
  if (gen > 0) {
    items.resize(static_cast<size_t>(layers) * gen);
    for (int32_t g = 0; g < gen; ++g) {
      const int32_t si = plan_.generating[g];
      const ParaAdapter& a = *batch[si].para;
      if (a.config().r > cfg_.hidden_size)
        return absl::InvalidArgumentError("PARA adapter rank exceeds the model's hidden size");
      para_max_r_ = std::max<int32_t>(para_max_r_, static_cast<int32_t>(a.config().r));
      ASSIGN_OR_RETURN(const std::vector<DeviceParaLayer>* dl, adapters_.Para(a));
      for (int32_t l = 0; l < layers; ++l)
        items[static_cast<size_t>(l) * gen + g] = {(*dl)[l].down,
                                                   (*dl)[l].up,
                                                   (*dl)[l].bias,
                                                   static_cast<int32_t>(a.config().r),
                                                   a.config().pooler == ParaPooler::kMean ? 1 : 0,
                                                   static_cast<int32_t>(a.config().activation),
                                                   plan_.seq_row_begin[si],
                                                   batch[si].prompt_len,
                                                   si};
    }
  }
  // Metadata: size it, grow the buffers when needed, then write and copy once.
  for (int pass = 0; pass < 2; ++pass) {
    MetaWriter mw(meta_host_.data(), meta_dev_.data(), meta_host_.size());
    rows_.tokens = mw.Put(plan_.tokens);
    rows_.pos = mw.Put(plan_.pos);
    rows_.row_seq = mw.Put(plan_.row_seq);
    rows_.seq_blocks = mw.Put(plan_.seq_blocks);
    rows_.blocks = mw.Put(plan_.blocks);
    rows_.seq_vp = mw.Put(plan_.seq_vp);
    rows_.vector_pages = mw.Put(plan_.vector_pages);
    rows_.rows = plan_.rows();
    logit_rows_dev_ = mw.Put(plan_.logit_rows);
    decode_rows_ = mw.Put(plan_.decode_rows);
    prefill_tiles_ = mw.Put(plan_.prefill_tiles);
    para_items_ = mw.Put(items);
    lora_tiles_ = mw.Put(plan_.lora_tiles);
    lora_rows_ = mw.Put(plan_.lora_rows);
    lora_tables_ = mw.Put(tables);
    if (mw.fits()) {
      if (mw.used() == 0) return absl::OkStatus();
      return CudaCheck(cudaMemcpyAsync(meta_dev_.data(), meta_host_.data(), mw.used(),
                                       cudaMemcpyHostToDevice, stream_),
                       "uploading step metadata");
    }
    // Grow (rare: a step larger than any before).
    RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(stream_), "sync"));
    const size_t cap = mw.used() * 2;
    RETURN_IF_ERROR(meta_host_.Allocate(cap, "step metadata"));
    RETURN_IF_ERROR(meta_dev_.Allocate(cap, "step metadata"));
  }
  return absl::InternalError("step metadata does not fit after growing");
}

absl::Status CudaBackend::Forward(std::span<const ForwardSeq> batch, float* logits) {
  return Run(batch, logits, {}, {});
}

absl::Status CudaBackend::Run(std::span<const ForwardSeq> batch, float* logits,
                              std::span<const DeviceDraw> draws,
                              std::span<DeviceDrawResult> results) {
  const int32_t group = static_cast<int32_t>(cfg_.num_attention_heads / cfg_.num_key_value_heads);
  RETURN_IF_ERROR(plan_.Build(batch, static_cast<int32_t>(cfg_.vocab_size), cache_->block_size(),
                              PrefillTilesFit(group) ? PrefillTileRows(group) : 0));
  const int32_t rows = plan_.rows();
  if (rows == 0) return absl::OkStatus();
  ++stats_.forward_calls;
  if (rows > scratch_rows_) RETURN_IF_ERROR(AllocateScratch(rows));
  if (meta_host_.size() == 0) {
    RETURN_IF_ERROR(meta_host_.Allocate(1 << 20, "step metadata"));
    RETURN_IF_ERROR(meta_dev_.Allocate(1 << 20, "step metadata"));
  }
  RETURN_IF_ERROR(UploadStep(batch));
  split_ = PlanSplits(static_cast<int64_t>(plan_.decode_rows.size()) * cfg_.num_attention_heads,
                      plan_.decode_max_ctx, int64_t{num_sms_} * 32, max_partials_, kMinSplitChunk);
  LaunchEmbed(w_->embed(), cfg_.hidden_size, rows_.tokens, rows, h_, stream_);
  LaunchRopeTable(rows_.pos, rows, inv_freq_, static_cast<int32_t>(cfg_.head_dim / 2), cos_, sin_,
                  stream_);
  for (int32_t l = 0; l < cfg_.num_hidden_layers; ++l) RETURN_IF_ERROR(Layer(l));
  RETURN_IF_ERROR(logits != nullptr ? Logits(logits) : SampleLogits(draws, results));
  stats_.para_generator_runs += static_cast<int64_t>(plan_.generating.size());
  return absl::OkStatus();
}

void CudaBackend::Lora(int32_t layer, LoraSite site, const uint16_t* x, int64_t ldx, float* y,
                       int64_t ncols) {
  if (plan_.lora_tiles.empty()) return;
  const int s = static_cast<int>(site);
  const int32_t tiles = static_cast<int32_t>(plan_.lora_tiles.size());
  const int32_t index = layer * kNumLoraSites + s;
  LaunchLoraShrink(x, ldx, lora_tiles_, tiles, lora_rows_, lora_tables_, index, lora_max_rank_[s],
                   lora_t_, lora_ldt_, stream_);
  LaunchLoraExpand(lora_t_, lora_ldt_, lora_tiles_, tiles, lora_rows_, lora_tables_, index,
                   static_cast<int32_t>(ncols), y, ncols, stream_);
}

absl::Status CudaBackend::Layer(int32_t l) {
  const DeviceLayerWeights& w = w_->layers()[l];
  const int32_t rows = plan_.rows();
  const int64_t h = cfg_.hidden_size, f = cfg_.intermediate_size, q_dim = cfg_.q_dim();
  const int64_t qkv_n = q_dim + 2 * cfg_.kv_dim();
  const int32_t nq = static_cast<int32_t>(cfg_.num_attention_heads);
  const int32_t nkv = static_cast<int32_t>(cfg_.num_key_value_heads);
  const int32_t hd = static_cast<int32_t>(cfg_.head_dim);
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const int32_t gen = static_cast<int32_t>(plan_.generating.size());
  if (gen > 0)
    LaunchParaGenerate(para_items_ + static_cast<int64_t>(l) * gen, gen, para_max_r_, h_, h, q_dim,
                       cfg_.kv_dim(), f, rows_, pool_, l, para_pooled_, para_t_, stream_);
  // Attention block.
  LaunchRmsNorm(h_, w.attn_norm, eps, h, nullptr, rows, xn_, stream_);
  RETURN_IF_ERROR(Gemm(rows, qkv_n, h, xn_, w.qkv, 0.f, qkv_));
  Lora(l, LoraSite::kQkv, xn_, h, qkv_, qkv_n);
  LaunchQkvEpilogue(qkv_, nq, nkv, hd, cos_, sin_, rows_, pool_, l, stream_);
  LaunchAttention(qkv_, nq, nkv, hd, rows_, decode_rows_,
                  static_cast<int32_t>(plan_.decode_rows.size()), pool_, l, split_, partials_,
                  attn_, stream_);
  LaunchPrefillAttention(qkv_, nq, nkv, hd, rows_, prefill_tiles_,
                         static_cast<int32_t>(plan_.prefill_tiles.size()), pool_, l, attn_,
                         stream_);
  RETURN_IF_ERROR(Gemm(rows, h, q_dim, attn_, w.o, 1.f, h_));
  Lora(l, LoraSite::kO, attn_, q_dim, h_, h);
  // MLP block.
  LaunchRmsNorm(h_, w.ffn_norm, eps, h, nullptr, rows, xn_, stream_);
  RETURN_IF_ERROR(Gemm(rows, 2 * f, h, xn_, w.gate_up, 0.f, gu_));
  Lora(l, LoraSite::kGateUp, xn_, h, gu_, 2 * f);
  LaunchSwiGlu(gu_, f, rows_, pool_, l, act_, stream_);
  RETURN_IF_ERROR(Gemm(rows, h, f, act_, w.down, 1.f, h_));
  Lora(l, LoraSite::kDown, act_, f, h_, h);
  return CudaCheck(cudaGetLastError(), "a CUDA kernel launch");
}

absl::Status CudaBackend::Logits(float* logits) {
  const int64_t vocab = cfg_.vocab_size;
  const int64_t m = static_cast<int64_t>(plan_.logit_rows.size());
  const int64_t chunk = LogitChunkRows();
  for (int64_t begin = 0; begin < m; begin += chunk) {
    const int64_t n = std::min(chunk, m - begin);
    RETURN_IF_ERROR(LmHeadChunk(begin, n));
    const size_t bytes = static_cast<size_t>(n * vocab) * sizeof(float);
    RETURN_IF_ERROR(CudaCheck(
        cudaMemcpyAsync(logits_host_.data(), logits_dev_, bytes, cudaMemcpyDeviceToHost, stream_),
        "copying logits"));
    RETURN_IF_ERROR(CudaCheck(cudaStreamSynchronize(stream_), "the forward pass"));
    std::memcpy(logits + begin * vocab, logits_host_.data(), bytes);
  }
  return absl::OkStatus();
}

int64_t CudaBackend::LogitChunkRows() const { return std::min(scratch_rows_, kLogitChunkRows); }

absl::Status CudaBackend::LmHeadChunk(int64_t begin, int64_t n) {
  const int64_t h = cfg_.hidden_size;
  LaunchRmsNorm(h_, w_->final_norm(), static_cast<float>(cfg_.rms_norm_eps), h,
                logit_rows_dev_ + begin, static_cast<int32_t>(n), xn_, stream_);
  return gemm_->Run(n, cfg_.vocab_size, h, xn_, h, w_->lm_head(), 0.f, logits_dev_, cfg_.vocab_size,
                    stream_);
}

}  // namespace para::cuda
