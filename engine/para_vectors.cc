#include "engine/para_vectors.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace para {

absl::StatusOr<ParaVectorLayout> ParaVectorLayout::Create(const ModelConfig& c,
                                                          int64_t page_floats) {
  ParaVectorLayout l;
  l.sizes_ = {c.q_dim(), c.kv_dim(), c.intermediate_size};
  for (int64_t s : l.sizes_) {
    if (s > page_floats)
      return absl::FailedPreconditionError(absl::StrCat(
          "KV blocks of ", page_floats, " floats are too small to hold a PARA vector of ", s,
          " floats; use a larger --block-size"));
  }
  l.slots_.resize(c.num_hidden_layers);
  int32_t page = 0;
  int64_t used = 0;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    for (int s = 0; s < 3; ++s) {
      if (used + l.sizes_[s] > page_floats) {
        ++page;
        used = 0;
      }
      l.slots_[layer][s] = {page, used};
      used += l.sizes_[s];
    }
  }
  l.pages_ = page + 1;
  return l;
}

namespace {

float DotF32(const float* a, const float* b, int64_t n) {
  float s = 0.f;
#pragma omp simd reduction(+ : s)
  for (int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// The pooled prompt representation: the last row, or the mean over rows (summed in double, in
// column chunks so that the sums stay in registers and the rows are read in order).
void Pool(ParaPooler pooler, const float* rows, int32_t n, int64_t h, float* out) {
  if (pooler == ParaPooler::kLast) {
    std::copy_n(rows + static_cast<int64_t>(n - 1) * h, h, out);
    return;
  }
  constexpr int64_t kChunk = 64;
  double sum[kChunk];
  for (int64_t j0 = 0; j0 < h; j0 += kChunk) {
    const int64_t w = std::min(kChunk, h - j0);
    std::fill_n(sum, w, 0.0);
    for (int32_t p = 0; p < n; ++p)
      for (int64_t j = 0; j < w; ++j) sum[j] += rows[p * h + j0 + j];
    for (int64_t j = 0; j < w; ++j) out[j0 + j] = static_cast<float>(sum[j] / n);
  }
}

}  // namespace

void GenerateParaLayerVectors(const ParaAdapter& a, const ModelConfig& c, int64_t layer,
                              const float* rows, int32_t prompt_len, int64_t h, float* scratch,
                              float* const out[3]) {
  const ParaLayerWeights& w = a.layer(layer);
  const int64_t r = a.config().r;
  float* pooled = scratch;
  float* t = scratch + h;
  Pool(a.config().pooler, rows, prompt_len, h, pooled);
  for (int64_t k = 0; k < r; ++k)
    t[k] = ParaActivate(a.config().activation, DotF32(w.down.data() + k * h, pooled, h));
  const int64_t sizes[3] = {c.q_dim(), c.kv_dim(), c.intermediate_size};
  int64_t o = 0;
  for (int seg = 0; seg < 3; ++seg)
    for (int64_t i = 0; i < sizes[seg]; ++i, ++o)
      out[seg][i] = DotF32(w.up.data() + o * r, t, r) + w.bias.data()[o];
}

}  // namespace para
