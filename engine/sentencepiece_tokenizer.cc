// The only translation unit that includes sentencepiece headers. It must include no abseil
// header (see tokenizer.h). It is built into its own shared library, libpara_sentencepiece.so,
// which the engine loads privately (see sentencepiece_shim.cc): Debian's libsentencepiece
// carries its own copy of protobuf-lite and exports its symbols, which would take the place of
// the system libprotobuf's in any process that also uses gRPC.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include "engine/tokenizer.h"

namespace para {
namespace {

constexpr std::string_view kSpaceMarker = "\xE2\x96\x81";  // U+2581 LOWER ONE EIGHTH BLOCK

class SentencePieceTokenizer final : public Tokenizer {
 public:
  explicit SentencePieceTokenizer(std::unique_ptr<sentencepiece::SentencePieceProcessor> sp)
      : sp_(std::move(sp)) {
    bytes_.resize(sp_->GetPieceSize());
    for (int id = 0; id < sp_->GetPieceSize(); ++id) bytes_[id] = ComputeBytes(id);
  }

  std::vector<int32_t> Encode(std::string_view text) const override {
    std::vector<int> ids;
    sp_->Encode(std::string(text), &ids).IgnoreError();
    return std::vector<int32_t>(ids.begin(), ids.end());
  }

  std::string Decode(const std::vector<int32_t>& ids) const override {
    std::vector<int> in;
    for (int32_t id : ids)
      if (id >= 0 && id < vocab_size()) in.push_back(id);
    std::string out;
    sp_->Decode(in, &out).IgnoreError();
    return out;
  }

  std::string TokenBytes(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? bytes_[id] : std::string();
  }

  std::string IdToPiece(int32_t id) const override {
    return id >= 0 && id < vocab_size() ? sp_->IdToPiece(id) : std::string();
  }

  int32_t vocab_size() const override { return sp_->GetPieceSize(); }

 private:
  std::string ComputeBytes(int id) const {
    if (sp_->IsControl(id)) return "";
    if (sp_->IsUnknown(id)) return " \xE2\x81\x87 ";  // sentencepiece's surface for <unk>
    const std::string& piece = sp_->IdToPiece(id);
    if (sp_->IsByte(id) && piece.size() == 6) {  // "<0xAB>"
      return std::string(1, static_cast<char>(std::stoi(piece.substr(3, 2), nullptr, 16)));
    }
    std::string out;
    for (size_t i = 0; i < piece.size();) {
      if (piece.compare(i, kSpaceMarker.size(), kSpaceMarker) == 0) {
        out.push_back(' ');
        i += kSpaceMarker.size();
      } else {
        out.push_back(piece[i++]);
      }
    }
    return out;
  }

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<std::string> bytes_;
};

}  // namespace

std::unique_ptr<Tokenizer> LoadSentencePieceTokenizerImpl(const std::string& path,
                                                          std::string* error);
bool TrainSentencePieceBpeImpl(const std::string& corpus_path, const std::string& model_prefix,
                               int vocab_size, std::string* error);

}  // namespace para

// C entry points of libpara_sentencepiece.so, looked up with dlsym by sentencepiece_shim.cc.
extern "C" {

__attribute__((visibility("default"))) para::Tokenizer* para_spm_load(const std::string* path,
                                                                      std::string* error) {
  return para::LoadSentencePieceTokenizerImpl(*path, error).release();
}

__attribute__((visibility("default"))) bool para_spm_train(const std::string* corpus,
                                                           const std::string* prefix,
                                                           int vocab_size, std::string* error) {
  return para::TrainSentencePieceBpeImpl(*corpus, *prefix, vocab_size, error);
}

}  // extern "C"

namespace para {

std::unique_ptr<Tokenizer> LoadSentencePieceTokenizerImpl(const std::string& path,
                                                          std::string* error) {
  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  auto status = sp->Load(path);
  if (!status.ok()) {
    *error = "cannot load sentencepiece model " + path + ": " + status.ToString();
    return nullptr;
  }
  return std::make_unique<SentencePieceTokenizer>(std::move(sp));
}

bool TrainSentencePieceBpeImpl(const std::string& corpus_path, const std::string& model_prefix,
                               int vocab_size, std::string* error) {
  const std::string args = "--input=" + corpus_path + " --model_prefix=" + model_prefix +
                           " --vocab_size=" + std::to_string(vocab_size) +
                           " --model_type=bpe --byte_fallback=true --character_coverage=0.9995"
                           " --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 --split_digits=true"
                           " --normalization_rule_name=identity --add_dummy_prefix=true"
                           " --remove_extra_whitespaces=false --hard_vocab_limit=false"
                           " --num_threads=2 --minloglevel=2";
  auto status = sentencepiece::SentencePieceTrainer::Train(args);
  if (!status.ok()) {
    *error = "sentencepiece training failed: " + status.ToString();
    return false;
  }
  return true;
}

}  // namespace para
