#include "server/tgis_convert.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "server/openai_api.h"

namespace para::server::tgis {
namespace {

absl::Status Unsupported(const std::string& what) {
  return absl::InvalidArgumentError(
      absl::StrCat(what, " is not supported by para-server's TGIS-compatible API"));
}

// The prompt's token ids (BOS as the model adds it), truncated to the last `keep` (0 = all).
absl::StatusOr<std::vector<int32_t>> PromptIds(const std::string& text, uint32_t keep,
                                               const Model& model, int64_t max_prompt_bytes) {
  if (static_cast<int64_t>(text.size()) > max_prompt_bytes)
    return absl::InvalidArgumentError(
        absl::StrCat("text is ", text.size(), " bytes; the limit is ", max_prompt_bytes));
  if (model.tokenizer() == nullptr)
    return absl::FailedPreconditionError("this model has no tokenizer; text prompts need one");
  absl::StatusOr<std::vector<int32_t>> ids = model.EncodePrompt(text);
  if (!ids.ok()) return ids.status();
  if (keep > 0 && ids->size() > keep) ids->erase(ids->begin(), ids->end() - keep);
  if (ids->empty()) return absl::InvalidArgumentError("text is empty");
  return ids;
}

absl::Status CheckUnsupported(const fmaas::Parameters& p) {
  if (p.sampling().typical_p() != 0) return Unsupported("sampling.typical_p");
  if (p.stopping().time_limit_millis() != 0)
    return Unsupported("stopping.time_limit_millis (use the call's deadline)");
  if (p.decoding().has_length_penalty()) return Unsupported("decoding.length_penalty");
  if (p.decoding().guided_case() != fmaas::DecodingParameters::GUIDED_NOT_SET)
    return Unsupported("guided decoding (decoding.format/json_schema/regex/choice/grammar)");
  if (p.response().top_n_tokens() > kMaxTopNTokens)
    return absl::InvalidArgumentError(absl::StrCat(
        "response.top_n_tokens is ", p.response().top_n_tokens(), "; at most ", kMaxTopNTokens));
  return absl::OkStatus();
}

void SetSampling(const fmaas::Parameters& p, uint64_t random_seed, Converted* c) {
  v1::SamplingParams* s = c->request.mutable_sampling();
  if (p.method() != fmaas::SAMPLE) {
    s->set_temperature(0);
  } else {
    const fmaas::SamplingParameters& in = p.sampling();
    s->set_temperature(in.has_temperature() ? in.temperature() : 1.0f);
    if (in.top_k() > 0) s->set_top_k(static_cast<int32_t>(in.top_k()));
    if (in.top_p() > 0) s->set_top_p(in.top_p());
    c->seed = in.has_seed() ? in.seed() : random_seed;
    s->set_seed(c->seed);
  }
  if (p.decoding().repetition_penalty() > 0)
    s->set_repetition_penalty(p.decoding().repetition_penalty());
}

void SetStopping(const fmaas::Parameters& p, bool for_stream, Converted* c) {
  const fmaas::StoppingCriteria& in = p.stopping();
  v1::StoppingCriteria* out = c->request.mutable_stopping();
  c->max_new_tokens = in.max_new_tokens() > 0 ? in.max_new_tokens() : kDefaultMaxNewTokens;
  out->set_max_tokens(static_cast<int32_t>(std::min<uint32_t>(c->max_new_tokens, INT32_MAX)));
  out->set_min_tokens(static_cast<int32_t>(std::min<uint32_t>(in.min_new_tokens(), INT32_MAX)));
  for (const std::string& s : in.stop_sequences()) {
    out->add_stop(s);
    c->stop_sequences.push_back(s);
  }
  c->include_stop_sequence = in.include_stop_sequence();
  out->set_include_stop_str_in_output(for_stream ? c->include_stop_sequence : true);
}

void SetLogprobs(const fmaas::ResponseOptions& r, v1::GenerateRequest* out) {
  const bool details = r.token_logprobs() || r.token_ranks() || r.top_n_tokens() > 0;
  if (r.generated_tokens() && details)
    out->mutable_logprobs()->set_top_n(static_cast<int32_t>(r.top_n_tokens()));
  if (r.input_tokens() && details)
    out->mutable_logprobs()->set_prompt_top_n(static_cast<int32_t>(r.top_n_tokens()));
}

// A token's details as TGIS gives them: text always, logprob/rank/top tokens when asked.
fmaas::TokenInfo Token(const Tokenizer* tok, int32_t id, const LogprobEntry* e,
                       const fmaas::ResponseOptions& r) {
  fmaas::TokenInfo out;
  out.set_text(openai::TokenText(tok, id));
  if (e == nullptr) return out;
  if (r.token_logprobs()) out.set_logprob(e->logprob);
  if (r.token_ranks()) out.set_rank(static_cast<uint32_t>(std::max(1, e->rank)));
  for (size_t i = 0; i < e->top.size() && i < r.top_n_tokens(); ++i) {
    auto* t = out.add_top_tokens();
    t->set_text(openai::TokenText(tok, e->top[i].id));
    t->set_logprob(e->top[i].logprob);
  }
  return out;
}

void AddInputTokens(const Converted& c, const sched::RequestResult& r, const Model& model,
                    fmaas::GenerationResponse* out) {
  if (!c.response.input_tokens()) return;
  for (size_t i = 0; i < c.prompt_ids.size(); ++i) {
    // prompt_logprobs has an entry per prompt token after the first.
    const LogprobEntry* e =
        i > 0 && i - 1 < r.prompt_logprobs.size() ? &r.prompt_logprobs[i - 1] : nullptr;
    *out->add_input_tokens() = Token(model.tokenizer(), c.prompt_ids[i], e, c.response);
  }
}

// The stop sequence `text` ends with (the longest), if any.
std::string MatchedStop(const Converted& c, const std::string& text) {
  std::string best;
  for (const std::string& s : c.stop_sequences)
    if (s.size() > best.size() && text.size() >= s.size() &&
        text.compare(text.size() - s.size(), s.size(), s) == 0)
      best = s;
  return best;
}

fmaas::StopReason StopReasonOf(const Converted& c, const sched::RequestResult& r,
                               const std::string& matched) {
  switch (r.finish_reason) {
    case FinishReason::kEos:
      return fmaas::EOS_TOKEN;
    case FinishReason::kStop:
      return matched.empty() ? fmaas::EOS_TOKEN : fmaas::STOP_SEQUENCE;  // a stop token id
    case FinishReason::kLength:
      return r.token_ids.size() >= c.max_new_tokens ? fmaas::MAX_TOKENS : fmaas::TOKEN_LIMIT;
    case FinishReason::kCancelled:
      return fmaas::CANCELLED;
    case FinishReason::kNone:
      break;
  }
  return fmaas::NOT_FINISHED;
}

}  // namespace

absl::StatusOr<Converted> Convert(const fmaas::GenerationRequest& request,
                                  const fmaas::Parameters& params, const std::string& adapter,
                                  const Model& model, int64_t max_prompt_bytes,
                                  uint64_t random_seed, bool for_stream) {
  if (absl::Status s = CheckUnsupported(params); !s.ok()) return s;
  Converted c;
  absl::StatusOr<std::vector<int32_t>> ids =
      PromptIds(request.text(), params.truncate_input_tokens(), model, max_prompt_bytes);
  if (!ids.ok()) return ids.status();
  c.prompt_ids = *std::move(ids);
  c.input_text = request.text();
  c.response = params.response();
  c.request.set_adapter(adapter);
  c.request.mutable_token_ids()->mutable_ids()->Add(c.prompt_ids.begin(), c.prompt_ids.end());
  SetSampling(params, random_seed, &c);
  SetStopping(params, for_stream, &c);
  SetLogprobs(params.response(), &c.request);
  return c;
}

fmaas::GenerationResponse Response(const Converted& c, const sched::RequestResult& r,
                                   const Model& model) {
  fmaas::GenerationResponse out;
  out.set_input_token_count(static_cast<uint32_t>(c.prompt_ids.size()));
  out.set_generated_token_count(static_cast<uint32_t>(r.token_ids.size()));
  std::string text = r.text;
  const std::string matched =
      r.finish_reason == FinishReason::kStop ? MatchedStop(c, text) : std::string();
  if (!matched.empty() && !c.include_stop_sequence) text.resize(text.size() - matched.size());
  out.set_text(c.response.input_text() ? c.input_text + text : text);
  out.set_stop_reason(StopReasonOf(c, r, matched));
  out.set_stop_sequence(matched);
  out.set_seed(c.seed);
  if (c.response.generated_tokens())
    for (size_t i = 0; i < r.token_ids.size(); ++i)
      *out.add_tokens() = Token(model.tokenizer(), r.token_ids[i],
                                i < r.logprobs.size() ? &r.logprobs[i] : nullptr, c.response);
  AddInputTokens(c, r, model, &out);
  return out;
}

fmaas::GenerationResponse StreamHead(const Converted& c) {
  fmaas::GenerationResponse out;
  out.set_input_token_count(static_cast<uint32_t>(c.prompt_ids.size()));
  if (c.response.input_text()) out.set_text(c.input_text);
  out.set_seed(c.seed);
  return out;
}

fmaas::GenerationResponse StreamToken(const Converted& c, const sched::TokenEvent& e,
                                      uint32_t generated, const Model& model) {
  fmaas::GenerationResponse out;
  out.set_generated_token_count(generated);
  out.set_text(e.text_delta);
  if (c.response.generated_tokens())
    *out.add_tokens() = Token(model.tokenizer(), e.token, e.logprobs, c.response);
  return out;
}

fmaas::GenerationResponse StreamTail(const Converted& c, const sched::RequestResult& r,
                                     const Model& model) {
  fmaas::GenerationResponse out;
  out.set_input_token_count(static_cast<uint32_t>(c.prompt_ids.size()));
  out.set_generated_token_count(static_cast<uint32_t>(r.token_ids.size()));
  const std::string matched =
      r.finish_reason == FinishReason::kStop ? MatchedStop(c, r.text) : std::string();
  out.set_stop_reason(r.finish_reason == FinishReason::kStop && !c.stop_sequences.empty()
                          ? fmaas::STOP_SEQUENCE
                          : StopReasonOf(c, r, matched));
  out.set_stop_sequence(matched);
  out.set_seed(c.seed);
  AddInputTokens(c, r, model, &out);
  return out;
}

absl::StatusOr<fmaas::BatchedTokenizeResponse> Tokenize(const fmaas::BatchedTokenizeRequest& r,
                                                        const Model& model,
                                                        int64_t max_prompt_bytes) {
  if (r.return_offsets()) return Unsupported("return_offsets");
  fmaas::BatchedTokenizeResponse out;
  for (const fmaas::TokenizeRequest& one : r.requests()) {
    absl::StatusOr<std::vector<int32_t>> ids =
        PromptIds(one.text(), r.truncate_input_tokens(), model, max_prompt_bytes);
    if (!ids.ok()) return ids.status();
    fmaas::TokenizeResponse* res = out.add_responses();
    res->set_token_count(static_cast<uint32_t>(ids->size()));
    if (r.return_tokens())
      for (int32_t id : *ids) res->add_tokens(model.tokenizer()->IdToPiece(id));
  }
  return out;
}

}  // namespace para::server::tgis
