// Added tokens of tokenizer.json ("added_tokens"): tokens matched in the text before the model
// runs and never split by it, as the Rust `tokenizers` library matches them: first the tokens with
// normalized=false in the raw text, then, in the normalized remainder, the tokens with
// normalized=true (in their normalized form); leftmost-longest matches, then single_word, lstrip
// and rstrip. Ids are assigned as `tokenizers` does: the model's id when the content is in the
// model's vocab, otherwise the next id after the model's vocab, in file order.
// Immutable after Build; safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "engine/text/bpe.h"
#include "engine/text/json_fields.h"
#include "engine/text/normalizers.h"
#include "engine/text/pre_tokenizers.h"

namespace para::text {

struct AddedToken {
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = true;
  bool special = false;
};

class AddedVocabulary {
 public:
  AddedVocabulary() = default;
  AddedVocabulary(AddedVocabulary&&) = default;
  AddedVocabulary& operator=(AddedVocabulary&&) = default;

  // Parses the "added_tokens" array at `path` (null or absent: none). `normalizer` may be null.
  static absl::StatusOr<AddedVocabulary> Parse(const Json* tokens, const std::string& path,
                                               const BpeModel& model, const Normalizer* normalizer);

  // Splits `text` into added tokens and normalized pieces left for the pre-tokenizer.
  std::vector<Piece> ExtractAndNormalize(std::string_view text, const Normalizer* normalizer) const;

  // The added token with this id, or nullptr.
  const AddedToken* Find(int32_t id) const;
  // The id of the added token with this content, or -1.
  int32_t IdOf(std::string_view content) const;
  // Whether some special added token has this content.
  bool IsSpecialContent(std::string_view content) const;
  // The text `tokenizers` decodes for an added token: its normalized form when it is normalized
  // and the normalizer changes it, otherwise its content.
  const std::string& DecodeForm(int32_t id) const;
  // 1 + the largest added id (0 if none).
  int32_t id_bound() const;

 private:
  // A byte trie of the patterns of one matching pass.
  struct Trie {
    struct Node {
      std::vector<std::pair<uint8_t, int32_t>> next;  // byte -> node
      int32_t token_id = -1;                          // a pattern ends here
    };
    std::vector<Node> nodes;
    bool first_byte[256] = {};
    bool empty() const { return nodes.size() <= 1; }
    absl::Status Insert(std::string_view pattern, int32_t id, const AddedVocabulary& vocab);
    // Length of the longest pattern starting at `pos`, 0 if none; *id is its token.
    size_t LongestAt(std::string_view text, size_t pos, int32_t* id) const;
  };

  // Added tokens and the text between them, as (id or -1, begin, end) triples.
  struct Found {
    int32_t id;
    size_t begin;
    size_t end;
  };
  std::vector<Found> FindMatches(std::string_view sentence, const Trie& trie) const;
  void SplitWith(std::vector<Piece>* pieces, const Trie& trie, const Normalizer* normalizer) const;

  absl::flat_hash_map<int32_t, AddedToken> by_id_;
  absl::flat_hash_map<std::string, int32_t> by_content_;
  absl::flat_hash_map<int32_t, std::string> normalized_form_;
  absl::flat_hash_set<std::string> special_;
  Trie raw_trie_;         // normalized=false tokens, matched in the raw text
  Trie normalized_trie_;  // normalized=true tokens, matched in the normalized text
};

}  // namespace para::text
