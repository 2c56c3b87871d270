// The BPE model of tokenizer.json ("model": {"type": "BPE", ...}): vocab, merges (as "a b"
// strings or ["a", "b"] pairs), unk_token, fuse_unk, byte_fallback (<0xNN> pieces),
// ignore_merges, continuing_subword_prefix and end_of_word_suffix, merged as the Rust `tokenizers`
// library does (lowest merge rank first, leftmost first among equal ranks). dropout must be null
// or 0 (random merges are refused).
//
// Thread-safety: immutable after Parse except for the word cache, which is internally locked and
// bounded; Tokenize may be called from any number of threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/text/json_fields.h"

namespace para::text {

class BpeModel {
 public:
  // Parses the model object at `path`.
  static absl::StatusOr<std::unique_ptr<BpeModel>> Parse(const Json& j, const std::string& path);

  // Appends the ids of one pre-tokenized word.
  void Tokenize(std::string_view word, std::vector<int32_t>* out) const;

  // -1 if absent.
  int32_t TokenToId(std::string_view token) const;
  // nullptr if no token has this id.
  const std::string* IdToToken(int32_t id) const;
  // Number of entries of the vocab (what `tokenizers` calls the vocab size).
  size_t vocab_entries() const { return vocab_.size(); }
  // 1 + the largest id of the vocab (0 if empty).
  int32_t id_bound() const { return static_cast<int32_t>(id_to_token_.size()); }

 private:
  struct Merge {
    uint32_t rank;
    int32_t new_id;
  };
  static uint64_t PairKey(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }
  std::vector<int32_t> MergeWord(std::string_view word) const;

  absl::flat_hash_map<std::string, int32_t> vocab_;
  std::vector<std::optional<std::string>> id_to_token_;
  absl::flat_hash_map<uint64_t, Merge> merges_;
  std::optional<std::string> unk_token_;
  int32_t unk_id_ = -1;
  std::string continuing_subword_prefix_;
  std::string end_of_word_suffix_;
  bool fuse_unk_ = false;
  bool byte_fallback_ = false;
  bool ignore_merges_ = false;
  std::vector<int32_t> byte_ids_;  // id of "<0xNN>" for each byte, -1 if absent

  // Word cache: a fixed number of shards, each cleared when it reaches its share of the capacity.
  static constexpr size_t kCacheShards = 16;
  static constexpr size_t kCacheCapacity = 16384;
  static constexpr size_t kMaxCachedWordBytes = 256;
  struct CacheShard {
    absl::Mutex mu;
    absl::flat_hash_map<std::string, std::vector<int32_t>> words ABSL_GUARDED_BY(mu);
  };
  mutable std::unique_ptr<CacheShard[]> cache_ = std::make_unique<CacheShard[]>(kCacheShards);
};

}  // namespace para::text
