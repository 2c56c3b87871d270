#include "engine/text/post_processors.h"

#include <nlohmann/json.hpp>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"

namespace para::text {
namespace {

// The ids a template produces for one sequence: a special token's ids, or (empty) the sequence.
struct TemplatePiece {
  bool is_sequence;
  std::vector<int32_t> ids;
};

class Template final : public PostProcessor {
 public:
  explicit Template(std::vector<TemplatePiece> pieces) : pieces_(std::move(pieces)) {}
  void Process(std::vector<int32_t>* ids) const override {
    std::vector<int32_t> out;
    for (const TemplatePiece& p : pieces_) {
      if (p.is_sequence) {
        out.insert(out.end(), ids->begin(), ids->end());
      } else {
        out.insert(out.end(), p.ids.begin(), p.ids.end());
      }
    }
    *ids = std::move(out);
  }

 private:
  std::vector<TemplatePiece> pieces_;
};

class Surround final : public PostProcessor {
 public:
  Surround(int32_t cls, int32_t sep) : cls_(cls), sep_(sep) {}
  void Process(std::vector<int32_t>* ids) const override {
    ids->insert(ids->begin(), cls_);
    ids->push_back(sep_);
  }

 private:
  int32_t cls_, sep_;
};

class NoChange final : public PostProcessor {
 public:
  void Process(std::vector<int32_t>*) const override {}
};

class SequencePost final : public PostProcessor {
 public:
  explicit SequencePost(std::vector<std::unique_ptr<PostProcessor>> items)
      : items_(std::move(items)) {}
  void Process(std::vector<int32_t>* ids) const override {
    for (const auto& p : items_) p->Process(ids);
  }

 private:
  std::vector<std::unique_ptr<PostProcessor>> items_;
};

// A ["token", id] pair of Roberta/Bert processing; returns the id.
absl::StatusOr<int32_t> ParseTokenPair(const Json& j, absl::string_view key,
                                       const std::string& path) {
  const Json* f = FindField(j, key);
  const std::string fpath = JsonChild(path, key);
  if (f == nullptr) return JsonError(fpath, "missing (a [\"token\", id] pair is required)");
  if (!f->is_array() || f->size() != 2 || !(*f)[0].is_string() || !(*f)[1].is_number_integer() ||
      (!(*f)[1].is_number_unsigned() && (*f)[1].get<int64_t>() < 0) ||
      (*f)[1].get<uint64_t>() > 0x7FFFFFFF) {
    return JsonError(fpath, absl::StrCat("expected [\"token\", id], got ", f->dump()));
  }
  return static_cast<int32_t>((*f)[1].get<uint64_t>());
}

absl::StatusOr<std::unique_ptr<PostProcessor>> ParseTemplate(const Json& j,
                                                             const std::string& path) {
  // special_tokens: {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, ...}
  absl::flat_hash_map<std::string, std::vector<int32_t>> specials;
  const std::string sp_path = JsonChild(path, "special_tokens");
  if (const Json* sp = FindField(j, "special_tokens"); sp != nullptr) {
    if (!sp->is_object()) return JsonError(sp_path, "expected an object");
    for (auto it = sp->begin(); it != sp->end(); ++it) {
      const std::string tpath = absl::StrCat(sp_path, "[\"", it.key(), "\"]");
      ASSIGN_OR_RETURN(const Json* ids, GetArray(*it, "ids", tpath));
      std::vector<int32_t> parsed;
      for (size_t i = 0; i < ids->size(); ++i) {
        const Json& id = (*ids)[i];
        if (!id.is_number_integer() || (!id.is_number_unsigned() && id.get<int64_t>() < 0) ||
            id.get<uint64_t>() > 0x7FFFFFFF) {
          return JsonError(JsonIndex(JsonChild(tpath, "ids"), i), "expected a non-negative id");
        }
        parsed.push_back(static_cast<int32_t>(id.get<uint64_t>()));
      }
      ASSIGN_OR_RETURN(const std::string id_name, GetString(*it, "id", tpath));
      specials[id_name] = std::move(parsed);
    }
  }
  const std::string single_path = JsonChild(path, "single");
  ASSIGN_OR_RETURN(const Json* single, GetArray(j, "single", path));
  std::vector<TemplatePiece> pieces;
  for (size_t i = 0; i < single->size(); ++i) {
    const Json& p = (*single)[i];
    const std::string ppath = JsonIndex(single_path, i);
    if (const Json* s = FindField(p, "Sequence"); s != nullptr) {
      ASSIGN_OR_RETURN(const std::string seq, GetString(*s, "id", JsonChild(ppath, "Sequence")));
      if (seq != "A") {
        return JsonError(
            JsonChild(ppath, "Sequence.id"),
            absl::StrCat("the single template can only hold sequence A, got '", seq, "'"));
      }
      pieces.push_back({true, {}});
    } else if (const Json* t = FindField(p, "SpecialToken"); t != nullptr) {
      ASSIGN_OR_RETURN(const std::string name,
                       GetString(*t, "id", JsonChild(ppath, "SpecialToken")));
      auto it = specials.find(name);
      if (it == specials.end()) {
        return JsonError(JsonChild(ppath, "SpecialToken.id"),
                         absl::StrCat("special token '", name, "' is not in special_tokens"));
      }
      pieces.push_back({false, it->second});
    } else {
      return JsonError(ppath, absl::StrCat("expected {\"Sequence\": ...} or {\"SpecialToken\": "
                                           "...}, got ",
                                           p.dump()));
    }
  }
  return std::unique_ptr<PostProcessor>(new Template(std::move(pieces)));
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& j,
                                                                  const std::string& path) {
  if (j.is_null()) return std::unique_ptr<PostProcessor>();
  ASSIGN_OR_RETURN(const std::string type, GetType(j, path));
  if (type == "TemplateProcessing") return ParseTemplate(j, path);
  if (type == "RobertaProcessing" || type == "BertProcessing") {
    ASSIGN_OR_RETURN(const int32_t cls, ParseTokenPair(j, "cls", path));
    ASSIGN_OR_RETURN(const int32_t sep, ParseTokenPair(j, "sep", path));
    return std::unique_ptr<PostProcessor>(new Surround(cls, sep));
  }
  if (type == "ByteLevel") return std::unique_ptr<PostProcessor>(new NoChange());
  if (type == "Sequence") {
    const std::string items_path = JsonChild(path, "processors");
    ASSIGN_OR_RETURN(const Json* items, GetArray(j, "processors", path));
    std::vector<std::unique_ptr<PostProcessor>> parsed;
    for (size_t i = 0; i < items->size(); ++i) {
      const std::string item_path = JsonIndex(items_path, i);
      if ((*items)[i].is_null()) return JsonError(item_path, "null post-processor in a Sequence");
      ASSIGN_OR_RETURN(auto p, ParsePostProcessor((*items)[i], item_path));
      parsed.push_back(std::move(p));
    }
    return std::unique_ptr<PostProcessor>(new SequencePost(std::move(parsed)));
  }
  return JsonError(JsonChild(path, "type"),
                   absl::StrCat("unsupported post-processor type '", type,
                                "' (supported: TemplateProcessing, RobertaProcessing, "
                                "BertProcessing, ByteLevel, Sequence)"));
}

}  // namespace para::text
