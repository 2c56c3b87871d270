// libFuzzer target: the OpenAI-compatible JSON request parsers (/v1/completions and
// /v1/chat/completions bodies) on arbitrary text. Each must return a request or an
// INVALID_ARGUMENT naming the problem, never crash; an accepted request must respect the limits
// the parsers promise.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "server/openai_api.h"
#include "server/openai_chat.h"

namespace openai = para::server::openai;

static void Check(const absl::StatusOr<openai::CompletionRequest>& r) {
  if (!r.ok()) {
    if (r.status().code() != absl::StatusCode::kInvalidArgument || r.status().message().empty())
      std::abort();  // every refusal is INVALID_ARGUMENT with a message
    return;
  }
  if (r->prompts.empty() || r->prompts.size() > openai::kMaxPrompts) std::abort();
  if (r->n < 1 || r->n > openai::kMaxChoices) std::abort();
  if (r->logprobs && (*r->logprobs < 0 || *r->logprobs > openai::kMaxLogprobs)) std::abort();
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string body(reinterpret_cast<const char*>(data), size);
  Check(openai::ParseCompletionRequest(body, "base"));
  Check(openai::ParseChatRequest(body, "base"));
  return 0;
}
