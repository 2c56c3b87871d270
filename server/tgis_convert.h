// The TGIS-compatible API's requests and responses (fmaas, proto/fmaas/generation.proto) in
// terms of para.v1: a GenerationRequest with its Parameters becomes a v1::GenerateRequest (the
// prompt tokenized here, so truncation and input tokens are known), and a finished request's
// result becomes a GenerationResponse. Options para-server cannot honour are INVALID_ARGUMENT
// naming them. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/model.h"
#include "fmaas/generation.pb.h"
#include "para/v1/generation.pb.h"
#include "scheduler/engine_loop.h"

namespace para::server::tgis {

inline constexpr uint32_t kDefaultMaxNewTokens = 20;
inline constexpr uint32_t kMaxTopNTokens = 5;

// One prompt, converted, with what the response needs to know.
struct Converted {
  v1::GenerateRequest request;
  std::string input_text;
  std::vector<int32_t> prompt_ids;
  fmaas::ResponseOptions response;
  std::vector<std::string> stop_sequences;
  bool include_stop_sequence = false;  // the client's choice
  uint32_t max_new_tokens = kDefaultMaxNewTokens;
  uint64_t seed = 0;  // sampling's seed (0 for greedy)
};

// `adapter` is the adapter_id (or prefix_id) the call named; `max_prompt_bytes` bounds the text.
// `random_seed` is used when sampling asks for no seed (so the response can report one).
// Unary requests keep stop sequences in the engine's text (so the response can name the one that
// matched) and cut them here unless asked; streamed ones (`for_stream`) let the engine cut them.
absl::StatusOr<Converted> Convert(const fmaas::GenerationRequest& request,
                                  const fmaas::Parameters& params, const std::string& adapter,
                                  const Model& model, int64_t max_prompt_bytes,
                                  uint64_t random_seed, bool for_stream);

// The adapter a call names: adapter_id, else the older prefix_id ("" = the base model).
template <typename Request>
std::string AdapterOf(const Request& r) {
  return r.has_adapter_id() ? r.adapter_id() : (r.has_prefix_id() ? r.prefix_id() : "");
}

// The whole response of a finished request.
fmaas::GenerationResponse Response(const Converted& c, const sched::RequestResult& r,
                                   const Model& model);

// Streaming: the first message (the input token count and, when asked, the input text).
fmaas::GenerationResponse StreamHead(const Converted& c);
// Streaming: the message for one generated token (`generated` = tokens so far).
fmaas::GenerationResponse StreamToken(const Converted& c, const sched::TokenEvent& e,
                                      uint32_t generated, const Model& model);
// Streaming: the last message: the stop reason, the input tokens when asked (their logprobs are
// known only at the end), and the stop sequence when the streamed text includes it (a streamed
// request passes include_stop_sequence to the engine as it is; see `for_stream` of Convert).
fmaas::GenerationResponse StreamTail(const Converted& c, const sched::RequestResult& r,
                                     const Model& model);

// Token counts and pieces of prompts, as Tokenize answers.
absl::StatusOr<fmaas::BatchedTokenizeResponse> Tokenize(const fmaas::BatchedTokenizeRequest& r,
                                                        const Model& model,
                                                        int64_t max_prompt_bytes);

}  // namespace para::server::tgis
