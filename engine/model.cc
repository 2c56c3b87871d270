#include "engine/model.h"

#include <algorithm>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "engine/safetensors.h"
#include "common/status_macros.h"
#include "engine/text/hf_tokenizer.h"

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
  std::error_code ec;
  const std::string hf = (std::filesystem::path(dir) / "tokenizer.json").string();
  if (std::filesystem::exists(hf, ec)) return LoadHfTokenizer(hf);
  const std::string path = (std::filesystem::path(dir) / "tokenizer.model").string();
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
  RETURN_IF_ERROR(m->LoadText());
  return m;
}

absl::Status Model::LoadText() {
  ASSIGN_OR_RETURN(tokenizer_, LoadTokenizer(dir_));
  if (tokenizer_ && tokenizer_->vocab_size() > config_.vocab_size)
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": the tokenizer has ", tokenizer_->vocab_size(),
                     " tokens but config.json's vocab_size is ", config_.vocab_size));
  ASSIGN_OR_RETURN(chat_, text::ChatFormat::Load(dir_));
  if (chat_ && tokenizer_ && !chat_->eos_token().empty()) {
    const int32_t id = tokenizer_->PieceToId(chat_->eos_token());
    const auto& eos = config_.eos_token_ids;
    if (id >= 0 && std::find(eos.begin(), eos.end(), id) == eos.end())
      end_of_turn_ids_.push_back(id);
  }
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> Model::EncodePrompt(const std::string& text) const {
  if (tokenizer_ == nullptr)
    return absl::FailedPreconditionError(
        absl::StrCat("model ", dir_,
                     " has no tokenizer (tokenizer.json or tokenizer.model): send token ids "
                     "instead of text"));
  std::vector<int32_t> ids = tokenizer_->Encode(text);
  if (!tokenizer_->ApplyPostProcessor(&ids) && config_.add_bos_token)
    ids.insert(ids.begin(), config_.bos_token_id);
  return ids;
}

absl::StatusOr<std::vector<int32_t>> Model::EncodeChat(const nlohmann::ordered_json& messages,
                                                       const text::ChatOptions& options) const {
  if (!chat_)
    return absl::FailedPreconditionError(absl::StrCat(
        "model ", dir_,
        " has no chat template (chat_template.jinja or tokenizer_config.json's chat_template)"));
  if (tokenizer_ == nullptr)
    return absl::FailedPreconditionError(absl::StrCat("model ", dir_, " has no tokenizer"));
  ASSIGN_OR_RETURN(std::string prompt, chat_->Render(messages, options));
  return tokenizer_->Encode(prompt);
}

}  // namespace para
