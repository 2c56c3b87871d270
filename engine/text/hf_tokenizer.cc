#include "engine/text/hf_tokenizer.h"

#include <algorithm>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "engine/text/added_vocabulary.h"
#include "engine/text/bpe.h"
#include "engine/text/decoders.h"
#include "engine/text/normalizers.h"
#include "engine/text/post_processors.h"
#include "engine/text/pre_tokenizers.h"
#include "engine/text/unicode.h"

namespace para {
namespace {

using text::Json;

class HfTokenizer final : public Tokenizer {
 public:
  std::vector<int32_t> Encode(std::string_view input) const override {
    std::string repaired;
    if (!text::IsValidUtf8(input)) {
      repaired = text::Utf8Lossy(input);
      input = repaired;
    }
    std::vector<text::Piece> pieces = added_.ExtractAndNormalize(input, normalizer_.get());
    if (pre_tokenizer_) pre_tokenizer_->PreTokenize(&pieces);
    std::vector<int32_t> ids;
    ids.reserve(input.size() / 3 + 1);
    for (const text::Piece& p : pieces) {
      if (p.id >= 0) {
        ids.push_back(p.id);
      } else {
        model_->Tokenize(p.normalized.get(), &ids);
      }
    }
    return ids;
  }

  std::string Decode(const std::vector<int32_t>& ids) const override { return Decode(ids, false); }

  std::string Decode(const std::vector<int32_t>& ids, bool skip_special_tokens) const override {
    std::vector<std::string> tokens;
    tokens.reserve(ids.size());
    for (int32_t id : ids) {
      const std::string* token = DecodedToken(id);
      if (token == nullptr) continue;
      if (skip_special_tokens && added_.IsSpecialContent(*token)) continue;
      tokens.push_back(*token);
    }
    return text::DecodeTokens(decoder_.get(), std::move(tokens));
  }

  std::string TokenBytes(int32_t id) const override {
    if (id < 0 || static_cast<size_t>(id) >= token_bytes_.size()) return "";
    return token_bytes_[id];
  }

  std::string IdToPiece(int32_t id) const override {
    if (const text::AddedToken* t = added_.Find(id)) return t->content;
    const std::string* token = model_->IdToToken(id);
    return token == nullptr ? std::string() : *token;
  }

  int32_t vocab_size() const override { return std::max(model_->id_bound(), added_.id_bound()); }

  bool ApplyPostProcessor(std::vector<int32_t>* ids) const override {
    if (!post_processor_) return false;
    post_processor_->Process(ids);
    return true;
  }

  bool IsSpecial(int32_t id) const override {
    const text::AddedToken* t = added_.Find(id);
    return t != nullptr && t->special;
  }

  int32_t PieceToId(std::string_view piece) const override {
    const int32_t id = added_.IdOf(piece);
    return id >= 0 ? id : model_->TokenToId(piece);
  }

  static absl::StatusOr<std::unique_ptr<HfTokenizer>> Parse(const Json& root);

 private:
  // The string `tokenizers` decodes for `id`, nullptr if no token has it.
  const std::string* DecodedToken(int32_t id) const {
    if (added_.Find(id) != nullptr) return &added_.DecodeForm(id);
    return model_->IdToToken(id);
  }

  std::unique_ptr<text::Normalizer> normalizer_;
  std::unique_ptr<text::PreTokenizer> pre_tokenizer_;
  std::unique_ptr<text::BpeModel> model_;
  std::unique_ptr<text::PostProcessor> post_processor_;
  std::unique_ptr<text::Decoder> decoder_;
  text::AddedVocabulary added_;
  std::vector<std::string> token_bytes_;  // TokenBytes of every id
};

const Json& FieldOrNull(const Json& root, absl::string_view key) {
  static const Json* null_json = new Json(nullptr);
  const Json* f = text::FindField(root, key);
  return f == nullptr ? *null_json : *f;
}

absl::StatusOr<std::unique_ptr<text::BpeModel>> ParseModel(const Json& root) {
  const Json* model = text::FindField(root, "model");
  if (model == nullptr) return text::JsonError("model", "missing (a model object is required)");
  if (!model->is_object()) {
    return text::JsonError("model", absl::StrCat("expected an object, got ", model->type_name()));
  }
  // Old files may leave out the type of a BPE model.
  std::string type = "BPE";
  if (text::FindField(*model, "type") != nullptr) {
    ASSIGN_OR_RETURN(type, text::GetType(*model, "model"));
  }
  if (type != "BPE") {
    return text::JsonError("model.type",
                           absl::StrCat("unsupported model type '", type,
                                        "' (only BPE is implemented; WordPiece, WordLevel and "
                                        "Unigram are not)"));
  }
  return text::BpeModel::Parse(*model, "model");
}

absl::StatusOr<std::unique_ptr<HfTokenizer>> HfTokenizer::Parse(const Json& root) {
  if (!root.is_object()) {
    return text::JsonError("", absl::StrCat("expected an object, got ", root.type_name()));
  }
  if (const Json* version = text::FindField(root, "version"); version != nullptr) {
    if (!version->is_string() || version->get<std::string>() != "1.0") {
      return text::JsonError("version", absl::StrCat("unknown tokenizer version ", version->dump(),
                                                     " (expected \"1.0\")"));
    }
  }
  auto t = std::make_unique<HfTokenizer>();
  ASSIGN_OR_RETURN(t->model_, ParseModel(root));
  ASSIGN_OR_RETURN(t->normalizer_,
                   text::ParseNormalizer(FieldOrNull(root, "normalizer"), "normalizer"));
  ASSIGN_OR_RETURN(t->pre_tokenizer_,
                   text::ParsePreTokenizer(FieldOrNull(root, "pre_tokenizer"), "pre_tokenizer"));
  ASSIGN_OR_RETURN(t->post_processor_,
                   text::ParsePostProcessor(FieldOrNull(root, "post_processor"), "post_processor"));
  ASSIGN_OR_RETURN(t->decoder_, text::ParseDecoder(FieldOrNull(root, "decoder"), "decoder"));
  ASSIGN_OR_RETURN(
      t->added_, text::AddedVocabulary::Parse(text::FindField(root, "added_tokens"), "added_tokens",
                                              *t->model_, t->normalizer_.get()));
  t->token_bytes_.resize(t->vocab_size());
  for (int32_t id = 0; id < t->vocab_size(); ++id) {
    const std::string* token = t->DecodedToken(id);
    if (token == nullptr || t->IsSpecial(id)) continue;
    std::string bytes = *token;
    bool fused = false;
    if (t->decoder_) t->decoder_->StreamToken(&bytes, &fused);
    t->token_bytes_[id] = std::move(bytes);
  }
  return t;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Tokenizer>> ParseHfTokenizer(std::string_view json_text,
                                                            const std::string& name) {
  Json root;
  try {
    root = Json::parse(json_text.begin(), json_text.end());
  } catch (const Json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(name, ": malformed JSON: ", e.what()));
  }
  absl::StatusOr<std::unique_ptr<HfTokenizer>> t;
  try {  // every field is type-checked before it is read; this only guards against surprises
    t = HfTokenizer::Parse(root);
  } catch (const std::exception& e) {
    return absl::InternalError(absl::StrCat(name, ": unexpected error while loading: ", e.what()));
  }
  if (!t.ok()) {
    return absl::Status(t.status().code(), absl::StrCat(name, ": ", t.status().message()));
  }
  return std::unique_ptr<Tokenizer>(std::move(*t));
}

absl::StatusOr<std::unique_ptr<Tokenizer>> LoadHfTokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat(path, ": cannot open"));
  std::ostringstream buf;
  buf << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat(path, ": read error"));
  return ParseHfTokenizer(buf.str(), path);
}

}  // namespace para
