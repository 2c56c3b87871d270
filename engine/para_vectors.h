// Placement of a sequence's PARA scaling vectors in pages of the KV block pool.
//
// A sequence with a PARA adapter owns `pages()` pages of the pool (KvSequence::vector_pages),
// allocated with its KV blocks, counted by admission like them and released with them. Each
// (layer, segment) vector — segment 0: l_q [q_dim], 1: l_v [kv_dim], 2: l_u [intermediate] — is
// contiguous inside one page; the layout packs them in order and never splits one. Immutable
// value type; safe from any thread.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/para_adapter.h"

namespace para {

class ParaVectorLayout {
 public:
  struct Slot {
    int32_t page;    // index into the sequence's vector_pages
    int64_t offset;  // float offset inside the page
  };
  enum Segment { kQ = 0, kV = 1, kU = 2 };

  // FAILED_PRECONDITION when one segment is larger than a page (the block size is too small).
  static absl::StatusOr<ParaVectorLayout> Create(const ModelConfig& config, int64_t page_floats);

  int32_t pages() const { return pages_; }
  Slot slot(int64_t layer, int segment) const { return slots_[layer][segment]; }
  int64_t segment_size(int segment) const { return sizes_[segment]; }

 private:
  int32_t pages_ = 0;
  std::array<int64_t, 3> sizes_{};
  std::vector<std::array<Slot, 3>> slots_;
};

// The PARA vector generator of one layer for one sequence, the math every backend that runs it on
// the host shares: pools the first `prompt_len` rows of `rows` (the layer's input, `hidden`
// floats each; the last row or the mean, as the adapter says), runs the bottleneck
// act(p·W_downᵀ)·W_upᵀ + b_up and writes its three segments to out[0] (l_q), out[1] (l_v) and
// out[2] (l_u). `scratch` holds hidden + r floats. Allocates nothing; safe from any thread for
// distinct outputs.
void GenerateParaLayerVectors(const ParaAdapter& adapter, const ModelConfig& model, int64_t layer,
                              const float* rows, int32_t prompt_len, int64_t hidden, float* scratch,
                              float* const out[3]);

}  // namespace para
