// Normalizers of tokenizer.json ("normalizer"): NFC, NFD, NFKC, NFKD (ICU), Lowercase, Strip,
// Replace (string or regex pattern), Prepend and Sequence, with the semantics of the Rust
// `tokenizers` library (whose normalization forms use the data of Unicode 9.0: characters assigned
// later are left as they are). Any other type is refused at load with an error naming it.
// A Normalizer is immutable after parsing and safe to share between threads.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/text/json_fields.h"
#include "engine/text/normalized_string.h"

namespace para::text {

class Normalizer {
 public:
  virtual ~Normalizer() = default;
  virtual void Normalize(NormalizedString* s) const = 0;
};

// Parses the normalizer object at `path`; returns nullptr for JSON null.
absl::StatusOr<std::unique_ptr<Normalizer>> ParseNormalizer(const Json& j, const std::string& path);

}  // namespace para::text
