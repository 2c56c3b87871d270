// Helpers of the engine/text unit tests: tokenizer.json documents built by hand, loaded through
// the public factory, and the pieces (token strings) a text encodes to.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/text/hf_tokenizer.h"

namespace para::text_test {

using Json = nlohmann::json;

// A BPE model of the given vocabulary (ids in order) and merges.
inline Json Bpe(const std::vector<std::string>& vocab,
                const std::vector<std::string>& merges = {}) {
  Json v = Json::object();
  for (size_t i = 0; i < vocab.size(); ++i) v[vocab[i]] = i;
  return Json{{"type", "BPE"}, {"vocab", v}, {"merges", merges}};
}

// A whole document around `model`; the other components are null unless given.
inline Json Doc(Json model, Json normalizer = nullptr, Json pre_tokenizer = nullptr,
                Json decoder = nullptr, Json post_processor = nullptr,
                Json added_tokens = Json::array()) {
  return Json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added_tokens},
              {"normalizer", normalizer},
              {"pre_tokenizer", pre_tokenizer},
              {"post_processor", post_processor},
              {"decoder", decoder},
              {"model", model}};
}

inline Json Added(int id, const std::string& content, bool special, bool normalized,
                  bool lstrip = false, bool rstrip = false, bool single_word = false) {
  return Json{{"id", id},
              {"content", content},
              {"special", special},
              {"normalized", normalized},
              {"lstrip", lstrip},
              {"rstrip", rstrip},
              {"single_word", single_word}};
}

inline std::unique_ptr<Tokenizer> Load(const Json& doc) {
  auto t = ParseHfTokenizer(doc.dump(), "test.json");
  EXPECT_TRUE(t.ok()) << t.status();
  return t.ok() ? std::move(*t) : nullptr;
}

inline std::vector<std::string> Pieces(const Tokenizer& t, const std::string& text) {
  std::vector<std::string> out;
  for (int32_t id : t.Encode(text)) out.push_back(t.IdToPiece(id));
  return out;
}

// Every character of `texts`, each once, then `extra`: a vocabulary in which any of them encodes.
inline std::vector<std::string> CharsOf(const std::vector<std::string>& texts,
                                        const std::vector<std::string>& extra = {}) {
  std::vector<std::string> vocab = {"<unk>"};
  auto add = [&](const std::string& s) {
    if (std::find(vocab.begin(), vocab.end(), s) == vocab.end()) vocab.push_back(s);
  };
  for (const std::string& t : texts) {
    for (size_t i = 0; i < t.size();) {
      size_t len = 1;
      const auto b = static_cast<unsigned char>(t[i]);
      if (b >= 0xF0)
        len = 4;
      else if (b >= 0xE0)
        len = 3;
      else if (b >= 0xC0)
        len = 2;
      add(t.substr(i, len));
      i += len;
    }
  }
  for (const std::string& e : extra) add(e);
  return vocab;
}

}  // namespace para::text_test
