#include "engine/model.h"

#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/safetensors.h"
#include "engine/status_macros.h"

namespace para {
namespace {

// Copies a checkpoint tensor of `shape` into `dst` (float32), parallel over chunks.
absl::Status ReadInto(const TensorStore& store, const std::string& name,
                      const std::vector<int64_t>& shape, float* dst, ThreadPool* pool) {
  ASSIGN_OR_RETURN(const TensorView* t, store.Get(name, shape));
  const int64_t n = t->numel();
  const size_t esize = DTypeSize(t->dtype);
  auto convert = [&](int64_t b, int64_t e) {
    ConvertToF32(t->dtype, t->data + b * esize, e - b, dst + b);
  };
  if (pool != nullptr) {
    pool->ParallelFor(n, convert, 1 << 16);
  } else {
    convert(0, n);
  }
  return absl::OkStatus();
}

absl::StatusOr<AlignedBuffer> ReadTensor(const TensorStore& store, const std::string& name,
                                         const std::vector<int64_t>& shape, ThreadPool* pool) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  AlignedBuffer buf(n);
  RETURN_IF_ERROR(ReadInto(store, name, shape, buf.data(), pool));
  return buf;
}

// Reads several [rows_i, cols] tensors stacked into one [sum rows_i, cols] matrix.
absl::StatusOr<AlignedBuffer> ReadStacked(const TensorStore& store,
                                          const std::vector<std::string>& names,
                                          const std::vector<int64_t>& rows, int64_t cols,
                                          ThreadPool* pool) {
  int64_t total = 0;
  for (int64_t r : rows) total += r;
  AlignedBuffer buf(total * cols);
  int64_t offset = 0;
  for (size_t i = 0; i < names.size(); ++i) {
    RETURN_IF_ERROR(ReadInto(store, names[i], {rows[i], cols}, buf.data() + offset * cols, pool));
    offset += rows[i];
  }
  return buf;
}

absl::Status LoadLayer(const TensorStore& store, const ModelConfig& c, int64_t i, ThreadPool* pool,
                       LayerWeights* w) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t h = c.hidden_size;
  ASSIGN_OR_RETURN(w->attn_norm, ReadTensor(store, p + "input_layernorm.weight", {h}, pool));
  ASSIGN_OR_RETURN(w->wqkv,
                   ReadStacked(store,
                               {p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                                p + "self_attn.v_proj.weight"},
                               {c.q_dim(), c.kv_dim(), c.kv_dim()}, h, pool));
  ASSIGN_OR_RETURN(w->wo, ReadTensor(store, p + "self_attn.o_proj.weight", {h, c.q_dim()}, pool));
  ASSIGN_OR_RETURN(w->ffn_norm,
                   ReadTensor(store, p + "post_attention_layernorm.weight", {h}, pool));
  ASSIGN_OR_RETURN(w->w_gate_up,
                   ReadStacked(store, {p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"},
                               {c.intermediate_size, c.intermediate_size}, h, pool));
  ASSIGN_OR_RETURN(w->w_down,
                   ReadTensor(store, p + "mlp.down_proj.weight", {h, c.intermediate_size}, pool));
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadTokenizer(const std::string& dir) {
  const std::string path = (std::filesystem::path(dir) / "tokenizer.model").string();
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::unique_ptr<Tokenizer>();
  std::string error;
  auto tok = LoadSentencePieceTokenizer(path, &error);
  if (tok == nullptr) return absl::InvalidArgumentError(error);
  return tok;
}

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir, ThreadPool* pool) {
  auto m = std::unique_ptr<Model>(new Model());
  m->dir_ = dir;
  ASSIGN_OR_RETURN(m->config_, LoadModelConfig(dir));
  const ModelConfig& c = m->config_;
  ASSIGN_OR_RETURN(auto store, TensorStore::OpenDirectory(dir));
  ModelWeights& w = m->weights_;
  ASSIGN_OR_RETURN(w.embed, ReadTensor(*store, "model.embed_tokens.weight",
                                       {c.vocab_size, c.hidden_size}, pool));
  w.layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    RETURN_IF_ERROR(LoadLayer(*store, c, i, pool, &w.layers[i]));
  ASSIGN_OR_RETURN(w.final_norm, ReadTensor(*store, "model.norm.weight", {c.hidden_size}, pool));
  if (!c.tie_word_embeddings) {
    ASSIGN_OR_RETURN(w.lm_head,
                     ReadTensor(*store, "lm_head.weight", {c.vocab_size, c.hidden_size}, pool));
  }
  ASSIGN_OR_RETURN(m->tokenizer_, LoadTokenizer(dir));
  if (m->tokenizer_ && m->tokenizer_->vocab_size() > c.vocab_size)
    return absl::InvalidArgumentError(
        absl::StrCat(dir, "/tokenizer.model has ", m->tokenizer_->vocab_size(),
                     " pieces but config.json's vocab_size is ", c.vocab_size));
  return m;
}

absl::StatusOr<std::vector<int32_t>> Model::EncodePrompt(const std::string& text) const {
  if (tokenizer_ == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat("model ", dir_, " has no tokenizer.model: send token ids instead of text"));
  std::vector<int32_t> ids;
  if (config_.add_bos_token) ids.push_back(config_.bos_token_id);
  auto body = tokenizer_->Encode(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

}  // namespace para
