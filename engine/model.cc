#include "engine/model.h"

#include <algorithm>
#include <filesystem>
#include <map>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/safetensors.h"
#include "engine/text/hf_tokenizer.h"

namespace para {
namespace {

// Finds every tensor of layer `i` with the shape the config implies and a float dtype.
absl::Status FindLayer(const TensorStore& store, const ModelConfig& c, int64_t i, LayerTensors* t) {
  const std::string p = absl::StrCat("model.layers.", i, ".");
  const int64_t h = c.hidden_size, f = c.intermediate_size;
  ASSIGN_OR_RETURN(t->attn_norm, store.Get(p + "input_layernorm.weight", {h}));
  ASSIGN_OR_RETURN(t->q, store.Get(p + "self_attn.q_proj.weight", {c.q_dim(), h}));
  ASSIGN_OR_RETURN(t->k, store.Get(p + "self_attn.k_proj.weight", {c.kv_dim(), h}));
  ASSIGN_OR_RETURN(t->v, store.Get(p + "self_attn.v_proj.weight", {c.kv_dim(), h}));
  ASSIGN_OR_RETURN(t->o, store.Get(p + "self_attn.o_proj.weight", {h, c.q_dim()}));
  ASSIGN_OR_RETURN(t->ffn_norm, store.Get(p + "post_attention_layernorm.weight", {h}));
  ASSIGN_OR_RETURN(t->gate, store.Get(p + "mlp.gate_proj.weight", {f, h}));
  ASSIGN_OR_RETURN(t->up, store.Get(p + "mlp.up_proj.weight", {f, h}));
  ASSIGN_OR_RETURN(t->down, store.Get(p + "mlp.down_proj.weight", {h, f}));
  return absl::OkStatus();
}

// The dtype holding most of the bytes of the layers' matrices.
DType MostBytes(const ModelTensors& t) {
  std::map<DType, size_t> bytes;
  for (const LayerTensors& l : t.layers)
    for (const TensorView* v : {l.q, l.k, l.v, l.o, l.gate, l.up, l.down})
      bytes[v->dtype] += v->nbytes;
  bytes[t.embed->dtype] += t.embed->nbytes;
  DType best = DType::kF32;
  size_t most = 0;
  for (const auto& [d, n] : bytes)
    if (n > most) best = d, most = n;
  return best;
}

// A NaN or infinity in a weight would be served as NaN log-probs and garbage tokens: the model
// is refused at load instead, naming the tensor.
absl::Status CheckAllFinite(const ModelTensors& t) {
  std::vector<const TensorView*> all = {t.embed, t.final_norm, t.lm_head};
  for (const LayerTensors& l : t.layers)
    all.insert(all.end(), {l.attn_norm, l.q, l.k, l.v, l.o, l.ffn_norm, l.gate, l.up, l.down});
  for (const TensorView* v : all)
    if (absl::Status s = CheckFinite(*v); !s.ok())
      return absl::InvalidArgumentError(
          absl::StrCat("the model's weights are not usable: ", s.message()));
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

absl::StatusOr<std::unique_ptr<Model>> Model::Load(const std::string& dir) {
  auto m = std::unique_ptr<Model>(new Model());
  m->dir_ = dir;
  ASSIGN_OR_RETURN(m->config_, LoadModelConfig(dir));
  const ModelConfig& c = m->config_;
  ASSIGN_OR_RETURN(m->store_, TensorStore::OpenDirectory(dir));
  const TensorStore& store = *m->store_;
  ModelTensors& t = m->tensors_;
  ASSIGN_OR_RETURN(t.embed, store.Get("model.embed_tokens.weight", {c.vocab_size, c.hidden_size}));
  t.layers.resize(c.num_hidden_layers);
  for (int64_t i = 0; i < c.num_hidden_layers; ++i)
    RETURN_IF_ERROR(FindLayer(store, c, i, &t.layers[i]));
  ASSIGN_OR_RETURN(t.final_norm, store.Get("model.norm.weight", {c.hidden_size}));
  t.lm_head = t.embed;
  if (!c.tie_word_embeddings) {
    ASSIGN_OR_RETURN(t.lm_head, store.Get("lm_head.weight", {c.vocab_size, c.hidden_size}));
  }
  RETURN_IF_ERROR(CheckAllFinite(t));
  m->stored_dtype_ = MostBytes(t);
  RETURN_IF_ERROR(m->LoadText());
  return m;
}

absl::Status Model::LoadText() {
  ASSIGN_OR_RETURN(tokenizer_, LoadTokenizer(dir_));
  if (tokenizer_ && tokenizer_->vocab_size() > config_.vocab_size)
    return absl::InvalidArgumentError(
        absl::StrCat(dir_, ": the tokenizer has ", tokenizer_->vocab_size(),
                     " tokens but config.json's vocab_size is ", config_.vocab_size));
  if (tokenizer_)
    for (int32_t id = 0; id < tokenizer_->vocab_size(); ++id)
      max_token_bytes_ = std::max<int64_t>(
          {max_token_bytes_, static_cast<int64_t>(tokenizer_->TokenBytes(id).size()),
           static_cast<int64_t>(tokenizer_->IdToPiece(id).size())});
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
