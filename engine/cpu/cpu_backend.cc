#include "engine/cpu/cpu_backend.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>

#include "common/status_macros.h"
#include "engine/cpu/blas.h"
#include "engine/cpu/kernels.h"

namespace para::cpu {

constexpr int32_t kQueryTile = 16;  // prefill rows per attention task

std::vector<double> RopeInvFreq(const ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  std::vector<double> inv(half);
  for (int64_t i = 0; i < half; ++i) inv[i] = std::pow(c.rope_theta, -2.0 * i / c.head_dim);
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) {
    for (double& f : inv) f /= s.factor;
  } else if (s.type == RopeScaling::Type::kLlama3) {
    const double old_len = static_cast<double>(s.original_max_position_embeddings);
    const double low_wavelen = old_len / s.low_freq_factor;
    const double high_wavelen = old_len / s.high_freq_factor;
    for (double& f : inv) {
      const double wavelen = 2 * M_PI / f;
      if (wavelen > low_wavelen) {
        f /= s.factor;
      } else if (wavelen >= high_wavelen) {
        const double smooth =
            (old_len / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
  }
  return inv;
}

absl::StatusOr<std::unique_ptr<CpuBackend>> CpuBackend::Create(const Model* model,
                                                               const KvCache* cache,
                                                               std::optional<DType> weights_dtype,
                                                               ThreadPool* pool) {
  if (absl::Status s = InitBlas(); !s.ok()) return s;
  ASSIGN_OR_RETURN(std::unique_ptr<CpuWeights> weights,
                   CpuWeights::Build(*model, weights_dtype, pool));
  ASSIGN_OR_RETURN(std::unique_ptr<KvStorage> storage,
                   KvStorage::Create(cache->layout(), cache->pool().num_blocks()));
  return std::unique_ptr<CpuBackend>(
      new CpuBackend(model, cache, std::move(weights), std::move(storage), pool));
}

CpuBackend::CpuBackend(const Model* model, const KvCache* cache,
                       std::unique_ptr<CpuWeights> weights, std::unique_ptr<KvStorage> storage,
                       ThreadPool* pool)
    : model_(model),
      cfg_(model->config()),
      cache_(cache),
      w_(std::move(weights)),
      kv_(std::move(storage)),
      pool_(pool),
      inv_freq_(RopeInvFreq(model->config())) {}

void CpuBackend::CopyBlock(int32_t src, int32_t dst) { kv_->CopyBlock(src, dst); }

void CpuBackend::PrepareRows(std::span<const ForwardSeq> batch) {
  rows_ = 0;
  for (const auto& s : batch) rows_ += static_cast<int64_t>(s.tokens.size());
  row_info_.clear();
  seq_row_begin_.clear();
  attn_tasks_.clear();
  for (int32_t si = 0; si < static_cast<int32_t>(batch.size()); ++si) {
    const ForwardSeq& s = batch[si];
    const int32_t begin = static_cast<int32_t>(row_info_.size());
    seq_row_begin_.push_back(begin);
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    for (int32_t i = 0; i < n; ++i) row_info_.push_back({si, s.start_pos + i});
    for (int32_t g = 0; g < cfg_.num_key_value_heads; ++g)
      for (int32_t r = 0; r < n; r += kQueryTile)
        attn_tasks_.push_back({si, g, begin + r, begin + std::min(n, r + kQueryTile)});
  }
  row_lora_.clear();
  for (const auto& s : batch) row_lora_.insert(row_lora_.end(), s.tokens.size(), s.lora);
  GroupLoraRows(row_lora_, &lora_groups_);
  const int64_t h = cfg_.hidden_size, qkv = cfg_.q_dim() + 2 * cfg_.kv_dim(),
                f = cfg_.intermediate_size;
  h_.EnsureSize(rows_ * h);
  xn_.EnsureSize(rows_ * h);
  qkv_.EnsureSize(rows_ * qkv);
  attn_.EnsureSize(rows_ * cfg_.q_dim());
  gu_.EnsureSize(rows_ * 2 * f);
  act_.EnsureSize(rows_ * f);
  const int64_t half = cfg_.head_dim / 2;
  rope_cos_.EnsureSize(rows_ * half);
  rope_sin_.EnsureSize(rows_ * half);
  // Angles once per step, shared by all layers; computed in double like the reference math.
  pool_->ParallelFor(rows_, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      for (int64_t i = 0; i < half; ++i) {
        const double a = row_info_[r].pos * inv_freq_[i];
        rope_cos_.data()[r * half + i] = static_cast<float>(std::cos(a));
        rope_sin_.data()[r * half + i] = static_cast<float>(std::sin(a));
      }
    }
  });
}

absl::Status CpuBackend::Forward(std::span<const ForwardSeq> batch, float* logits) {
  PrepareRows(batch);
  if (rows_ == 0) return absl::OkStatus();
  ++stats_.forward_calls;
  PrepareParaVectors(batch);
  const int64_t h = cfg_.hidden_size;
  int64_t r = 0;
  for (const auto& s : batch) {
    for (int32_t tok : s.tokens) {
      if (tok < 0 || tok >= cfg_.vocab_size)
        return absl::InvalidArgumentError("token id " + std::to_string(tok) +
                                          " is outside the vocabulary [0, " +
                                          std::to_string(cfg_.vocab_size) + ")");
      ReadRowF32(w_->embed(), tok, h_.data() + r * h);
      ++r;
    }
  }
  for (int64_t l = 0; l < cfg_.num_hidden_layers; ++l) Layer(batch, l);
  Logits(batch, logits);
  stats_.para_generator_runs += static_cast<int64_t>(generating_.size());
  return absl::OkStatus();
}

void CpuBackend::PrepareParaVectors(std::span<const ForwardSeq> batch) {
  para_vecs_.clear();
  generating_.clear();
  bool any = false;
  for (const auto& s : batch) any |= s.para != nullptr;
  if (!any) return;
  const ParaVectorLayout& layout = *cache_->para_layout();  // the engine validated it
  const int64_t layers = cfg_.num_hidden_layers;
  para_vecs_.assign(batch.size() * layers * 3, nullptr);
  for (int32_t si = 0; si < static_cast<int32_t>(batch.size()); ++si) {
    const ForwardSeq& s = batch[si];
    if (s.para == nullptr) continue;
    if (s.generate_vectors) generating_.push_back(si);
    for (int64_t l = 0; l < layers; ++l)
      for (int seg = 0; seg < 3; ++seg) {
        const ParaVectorLayout::Slot slot = layout.slot(l, seg);
        para_vecs_[(si * layers + l) * 3 + seg] =
            kv_->Page(s.vector_pages[slot.page]) + slot.offset;
      }
  }
}

// PARA generator for one layer: every sequence generating its vectors this step pools its
// prompt rows of the layer input and writes l_q, l_v, l_u into its vector pages.
void CpuBackend::GenerateParaVectors(std::span<const ForwardSeq> batch, int64_t l) {
  const int64_t h = cfg_.hidden_size;
  int64_t max_r = 0;
  for (int32_t si : generating_) max_r = std::max(max_r, batch[si].para->config().r);
  const int64_t per_thread = h + max_r;
  para_scratch_.EnsureSize(per_thread * pool_->num_threads());
  std::atomic<int64_t> next{0};
  pool_->RunOnAll([&](int thread) {
    float* scratch = para_scratch_.data() + thread * per_thread;
    for (int64_t i = next.fetch_add(1); i < static_cast<int64_t>(generating_.size());
         i = next.fetch_add(1)) {
      const int32_t si = generating_[i];
      const ForwardSeq& s = batch[si];
      float* const out[3] = {const_cast<float*>(Vec(si, l, 0)), const_cast<float*>(Vec(si, l, 1)),
                             const_cast<float*>(Vec(si, l, 2))};
      GenerateParaLayerVectors(*s.para, cfg_, l,
                               h_.data() + static_cast<int64_t>(seq_row_begin_[si]) * h,
                               s.prompt_len, h, scratch, out);
    }
  });
}

void CpuBackend::Layer(std::span<const ForwardSeq> batch, int64_t l) {
  const CpuLayerWeights& w = w_->layers()[l];
  const int64_t h = cfg_.hidden_size, f = cfg_.intermediate_size;
  const int64_t qkv_n = cfg_.q_dim() + 2 * cfg_.kv_dim();
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  auto norm_rows = [&](const AlignedBuffer& weight) {
    pool_->ParallelFor(rows_, [&](int64_t b, int64_t e) {
      for (int64_t r = b; r < e; ++r)
        RmsNorm(h_.data() + r * h, weight.data(), eps, h, xn_.data() + r * h);
    });
  };
  if (!generating_.empty()) GenerateParaVectors(batch, l);  // from this layer's input, before use
  // Attention block.
  norm_rows(w.attn_norm);
  LinearParts(pool_, rows_, w.qkv, xn_.data(), h, 0.f, qkv_.data(), qkv_n, &linear_);
  Lora(l, LoraSite::kQkv, xn_.data(), h, qkv_.data(), qkv_n);
  RopeAndStore(batch, l);
  Attention(batch, l);
  LinearParts(pool_, rows_, {&w.o, 1}, attn_.data(), cfg_.q_dim(), 1.f, h_.data(), h, &linear_);
  Lora(l, LoraSite::kO, attn_.data(), cfg_.q_dim(), h_.data(), h);
  // MLP block.
  norm_rows(w.ffn_norm);
  LinearParts(pool_, rows_, w.gate_up, xn_.data(), h, 0.f, gu_.data(), 2 * f, &linear_);
  Lora(l, LoraSite::kGateUp, xn_.data(), h, gu_.data(), 2 * f);
  pool_->ParallelFor(rows_, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const float* row = gu_.data() + r * 2 * f;
      SwiGluRow(row, row + f, Vec(row_info_[r].seq, l, ParaVectorLayout::kU), f,
                act_.data() + r * f);
    }
  });
  LinearParts(pool_, rows_, {&w.down, 1}, act_.data(), f, 1.f, h_.data(), h, &linear_);
  Lora(l, LoraSite::kDown, act_.data(), f, h_.data(), h);
}

void CpuBackend::RopeAndStore(std::span<const ForwardSeq> batch, int64_t l) {
  const int64_t hd = cfg_.head_dim, half = hd / 2;
  const int64_t nq = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads;
  const int64_t qkv_n = cfg_.q_dim() + 2 * cfg_.kv_dim();
  const int32_t bs = cache_->block_size();
  const DType kv_type = kv_->layout().dtype;
  const int64_t row_bytes = static_cast<int64_t>(DTypeSize(kv_type)) * hd;
  pool_->ParallelFor(rows_, [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      float* q = qkv_.data() + r * qkv_n;
      float* k = q + nq * hd;
      float* v = k + nkv * hd;
      const Row& row = row_info_[r];
      QkvRowEpilogue(q, k, v, nq, nkv, hd, rope_cos_.data() + r * half, rope_sin_.data() + r * half,
                     Vec(row.seq, l, ParaVectorLayout::kQ), Vec(row.seq, l, ParaVectorLayout::kV));
      const int32_t block = batch[row.seq].blocks[row.pos / bs];
      const int64_t slot = row.pos % bs;
      for (int64_t g = 0; g < nkv; ++g) {
        StoreRow(kv_type, k + g * hd, hd,
                 static_cast<uint8_t*>(kv_->Rows(block, l, 0, g)) + slot * row_bytes);
        StoreRow(kv_type, v + g * hd, hd,
                 static_cast<uint8_t*>(kv_->Rows(block, l, 1, g)) + slot * row_bytes);
      }
    }
  });
}

void CpuBackend::Attention(std::span<const ForwardSeq> batch, int64_t l) {
  int64_t max_ctx = 0;
  for (const auto& s : batch) max_ctx = std::max<int64_t>(max_ctx, s.start_pos + s.tokens.size());
  const int64_t per_thread = max_ctx + 16;
  scores_.EnsureSize(per_thread * pool_->num_threads());
  std::atomic<int64_t> next{0};
  pool_->RunOnAll([&](int t) {
    float* scores = scores_.data() + t * per_thread;
    for (int64_t i = next.fetch_add(1); i < static_cast<int64_t>(attn_tasks_.size());
         i = next.fetch_add(1)) {
      const AttnTask& task = attn_tasks_[i];
      switch (kv_->layout().dtype) {
        case DType::kF16:
          AttendTask<KvF16>(batch[task.seq], task, l, scores);
          break;
        case DType::kBF16:
          AttendTask<KvBF16>(batch[task.seq], task, l, scores);
          break;
        default:
          AttendTask<KvF32>(batch[task.seq], task, l, scores);
      }
    }
  });
}

template <typename Kv>
void CpuBackend::AttendTask(const ForwardSeq& seq, const AttnTask& task, int64_t l, float* scores) {
  const int64_t hd = cfg_.head_dim;
  const int64_t nq = cfg_.num_attention_heads, nkv = cfg_.num_key_value_heads;
  const int64_t group = nq / nkv;
  const int64_t qkv_n = cfg_.q_dim() + 2 * cfg_.kv_dim();
  const int32_t bs = cache_->block_size();
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  for (int32_t r = task.row_begin; r < task.row_end; ++r) {
    const int32_t ctx = row_info_[r].pos + 1;  // causal: positions [0, pos]
    for (int64_t hq = task.kv_head * group; hq < (task.kv_head + 1) * group; ++hq) {
      const float* q = qkv_.data() + r * qkv_n + hq * hd;
      float max_score = -INFINITY;
      for (int32_t j0 = 0; j0 < ctx; j0 += bs) {
        const auto* kb = static_cast<const typename Kv::Element*>(
            kv_->Rows(seq.blocks[j0 / bs], l, 0, task.kv_head));
        const int32_t n = std::min(bs, ctx - j0);
        for (int32_t j = 0; j < n; ++j) {
          const float s = Kv::Dot(q, kb + j * hd, hd) * scale;
          scores[j0 + j] = s;
          max_score = std::max(max_score, s);
        }
      }
      float sum = 0.f;
      for (int32_t j = 0; j < ctx; ++j) {
        scores[j] = ExpF(scores[j] - max_score);
        sum += scores[j];
      }
      const float inv = 1.0f / sum;
      float* out = attn_.data() + r * nq * hd + hq * hd;
      std::memset(out, 0, hd * sizeof(float));
      for (int32_t j0 = 0; j0 < ctx; j0 += bs) {
        const auto* vb = static_cast<const typename Kv::Element*>(
            kv_->Rows(seq.blocks[j0 / bs], l, 1, task.kv_head));
        const int32_t n = std::min(bs, ctx - j0);
        for (int32_t j = 0; j < n; ++j) Kv::Axpy(scores[j0 + j] * inv, vb + j * hd, hd, out);
      }
    }
  }
}

void CpuBackend::Logits(std::span<const ForwardSeq> batch, float* logits) {
  const int64_t h = cfg_.hidden_size;
  std::vector<int64_t>& rows = logit_rows_;
  rows.clear();
  for (size_t si = 0; si < batch.size(); ++si) {
    const int64_t begin = seq_row_begin_[si], n = static_cast<int64_t>(batch[si].tokens.size());
    if (batch[si].all_logits) {
      for (int64_t i = 0; i < n; ++i) rows.push_back(begin + i);
    } else if (n > 0) {
      rows.push_back(begin + n - 1);
    }
  }
  const int64_t m = static_cast<int64_t>(rows.size());
  out_rows_.EnsureSize(m * h);
  const float eps = static_cast<float>(cfg_.rms_norm_eps);
  const float* norm = w_->final_norm().data();
  pool_->ParallelFor(m, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i)
      RmsNorm(h_.data() + rows[i] * h, norm, eps, h, out_rows_.data() + i * h);
  });
  LinearParts(pool_, m, {&w_->lm_head(), 1}, out_rows_.data(), h, 0.f, logits, cfg_.vocab_size,
              &linear_);
}

}  // namespace para::cpu
