#include "engine/para_vectors.h"

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

}  // namespace para
