#include "engine/cuda/step_plan.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "engine/cuda/kernels.h"

namespace para::cuda {
namespace {

void Clear(StepPlan* p) {
  for (auto* v :
       {&p->tokens, &p->pos, &p->row_seq, &p->seq_row_begin, &p->seq_blocks, &p->blocks, &p->seq_vp,
        &p->vector_pages, &p->logit_rows, &p->generating, &p->lora_rows, &p->decode_rows})
    v->clear();
  p->lora_adapters.clear();
  p->lora_tiles.clear();
  p->prefill_tiles.clear();
  p->max_ctx = 0;
  p->decode_max_ctx = 0;
}

// Groups the LoRA rows by adapter (first appearance order) and tiles each group.
void PlanLora(std::span<const ForwardSeq> batch, StepPlan* p) {
  std::vector<std::vector<int32_t>> groups;
  for (int32_t si = 0; si < static_cast<int32_t>(batch.size()); ++si) {
    const LoraAdapter* a = batch[si].lora;
    if (a == nullptr) continue;
    auto it = std::find(p->lora_adapters.begin(), p->lora_adapters.end(), a);
    const size_t g = static_cast<size_t>(it - p->lora_adapters.begin());
    if (it == p->lora_adapters.end()) {
      p->lora_adapters.push_back(a);
      groups.emplace_back();
    }
    for (int32_t r = p->seq_row_begin[si]; r < p->seq_row_begin[si + 1]; ++r)
      groups[g].push_back(r);
  }
  for (size_t g = 0; g < groups.size(); ++g) {
    const int32_t first = static_cast<int32_t>(p->lora_rows.size());
    const int32_t n = static_cast<int32_t>(groups[g].size());
    p->lora_rows.insert(p->lora_rows.end(), groups[g].begin(), groups[g].end());
    const size_t at = p->lora_tiles.size();
    p->lora_tiles.resize(at + static_cast<size_t>(CeilDiv(n, kLoraTileRows)));
    TileGroup(static_cast<int32_t>(g), first, n, kLoraTileRows, p->lora_tiles.data() + at);
  }
}

}  // namespace

absl::Status StepPlan::Build(std::span<const ForwardSeq> batch, int32_t vocab, int32_t block_size,
                             int32_t tile_rows) {
  Clear(this);
  for (int32_t si = 0; si < static_cast<int32_t>(batch.size()); ++si) {
    const ForwardSeq& s = batch[si];
    const int32_t n = static_cast<int32_t>(s.tokens.size());
    const int64_t ctx = static_cast<int64_t>(s.start_pos) + n;
    if (static_cast<int64_t>(s.blocks.size()) * block_size < ctx)
      return absl::InvalidArgumentError(absl::StrCat("sequence ", si, " has ", s.blocks.size(),
                                                     " blocks for ", ctx, " positions"));
    seq_row_begin.push_back(rows());
    seq_blocks.push_back(static_cast<int32_t>(blocks.size()));
    blocks.insert(blocks.end(), s.blocks.begin(), s.blocks.end());
    if (s.para != nullptr) {
      seq_vp.push_back(static_cast<int32_t>(vector_pages.size()));
      vector_pages.insert(vector_pages.end(), s.vector_pages.begin(), s.vector_pages.end());
      if (s.generate_vectors) generating.push_back(si);
    } else {
      seq_vp.push_back(-1);
    }
    for (int32_t i = 0; i < n; ++i) {
      const int32_t tok = s.tokens[i];
      if (tok < 0 || tok >= vocab)
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", tok, " is outside the vocabulary [0, ", vocab, ")"));
      tokens.push_back(tok);
      pos.push_back(s.start_pos + i);
      row_seq.push_back(si);
    }
    max_ctx = std::max<int32_t>(max_ctx, static_cast<int32_t>(ctx));
    const int32_t begin = seq_row_begin.back();
    if (n == 1 || tile_rows == 0) {
      for (int32_t i = 0; i < n; ++i) decode_rows.push_back(begin + i);
      if (n > 0) decode_max_ctx = std::max<int32_t>(decode_max_ctx, static_cast<int32_t>(ctx));
    } else {
      for (int32_t i = 0; i < n; i += tile_rows)
        prefill_tiles.push_back({begin + i, std::min(tile_rows, n - i)});
    }
    if (s.all_logits) {
      for (int32_t i = 0; i < n; ++i) logit_rows.push_back(begin + i);
    } else if (n > 0) {
      logit_rows.push_back(begin + n - 1);
    }
  }
  seq_row_begin.push_back(rows());
  PlanLora(batch, this);
  return absl::OkStatus();
}

}  // namespace para::cuda
