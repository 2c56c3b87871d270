// The host side of a CUDA backend step: the batch of ForwardSeqs flattened into the per-row and
// per-sequence arrays the kernels read (kernels.h's StepRows), the rows whose logits are
// returned, the PARA generations to run and the LoRA row tiles (grouped by adapter, cut into
// tiles of kLoraTileRows; a contiguous prefill segment gives SGMV-style tiles, scattered decode
// rows of one adapter gathered BGMV-style ones). Plain C++ with no CUDA dependency, built and
// unit-tested with the CPU build. Reused from step to step (vectors keep their capacity); owned
// by the backend, used from the engine thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "absl/status/status.h"
#include "engine/backend.h"
#include "engine/cuda/kernel_math.h"

namespace para::cuda {

struct StepPlan {
  // Rows.
  std::vector<int32_t> tokens, pos, row_seq;
  // Sequences.
  std::vector<int32_t> seq_row_begin;  // [seqs + 1]
  std::vector<int32_t> seq_blocks;     // offset of each table in `blocks`
  std::vector<int32_t> blocks;
  std::vector<int32_t> seq_vp;  // offset in vector_pages, -1 without PARA
  std::vector<int32_t> vector_pages;
  int32_t max_ctx = 0;         // longest context a row attends to
  int32_t decode_max_ctx = 0;  // longest context of a decode_rows row
  // Attention: rows of single-row sequences (decode) go through the split-K kernel; the rows of
  // longer ones (prefill) through tiles of query rows.
  std::vector<int32_t> decode_rows;
  std::vector<AttnTile> prefill_tiles;
  // Rows whose logits the step returns, in output order.
  std::vector<int32_t> logit_rows;
  // Sequences generating PARA vectors this step.
  std::vector<int32_t> generating;
  // LoRA: distinct adapters of the step (a tile's `table` indexes this), row indices and tiles.
  std::vector<const LoraAdapter*> lora_adapters;
  std::vector<int32_t> lora_rows;
  std::vector<LoraTile> lora_tiles;

  int32_t rows() const { return static_cast<int32_t>(tokens.size()); }
  int32_t seqs() const { return static_cast<int32_t>(seq_vp.size()); }

  // Fills the plan from a batch; `tile_rows` is PrefillTileRows of the model's GQA group, 0 to send
  // every row through the split-K kernel. INVALID_ARGUMENT for a token outside [0, vocab) or a
  // block table too short for the sequence's positions.
  absl::Status Build(std::span<const ForwardSeq> batch, int32_t vocab, int32_t block_size,
                     int32_t tile_rows);
};

}  // namespace para::cuda
