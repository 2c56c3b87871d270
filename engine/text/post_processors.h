// Post-processors of tokenizer.json ("post_processor"), for one sequence: TemplateProcessing
// (its "single" template), RobertaProcessing and BertProcessing (<cls> A <sep>), ByteLevel (no id
// change) and Sequence. They run only when the caller asks for special tokens (what
// `encode(text, add_special_tokens=True)` does). Any other type is refused at load.
// A PostProcessor is immutable after parsing and safe to share between threads.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/text/json_fields.h"

namespace para::text {

class PostProcessor {
 public:
  virtual ~PostProcessor() = default;
  // Adds the special tokens around the ids of one sequence.
  virtual void Process(std::vector<int32_t>* ids) const = 0;
};

// Parses the post-processor object at `path`; returns nullptr for JSON null.
absl::StatusOr<std::unique_ptr<PostProcessor>> ParsePostProcessor(const Json& j,
                                                                  const std::string& path);

}  // namespace para::text
