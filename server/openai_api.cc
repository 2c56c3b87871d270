#include "server/openai_api.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "engine/text/detokenizer.h"
#include "server/openai_fields.h"

namespace para::server::openai {
namespace {

using nlohmann::json;

// The prompt forms OpenAI accepts: a string, an array of strings, an array of token ids, or an
// array of token-id arrays. Each becomes one GenerateRequest (with only the prompt set).
absl::StatusOr<std::vector<v1::GenerateRequest>> Prompts(const json& body) {
  auto it = body.find("prompt");
  if (it == body.end() || it->is_null()) return Invalid("'prompt' is required");
  const json& p = *it;
  std::vector<v1::GenerateRequest> out;
  if (p.is_string()) {
    out.emplace_back().set_text(p.get<std::string>());
    return out;
  }
  const char* kForms =
      "a string, an array of strings, an array of token ids or an array of token-id arrays";
  if (!p.is_array() || p.empty()) return NotA("prompt", kForms);
  if (IsTokenArray(p)) {
    if (absl::Status s = TokenIds(p, out.emplace_back().mutable_token_ids()); !s.ok()) return s;
    return out;
  }
  if (p.size() > kMaxPrompts)
    return Invalid(absl::StrCat("'prompt' has ", p.size(), " prompts; at most ", kMaxPrompts));
  for (const json& e : p) {
    if (e.is_string()) {
      out.emplace_back().set_text(e.get<std::string>());
    } else if (IsTokenArray(e)) {
      if (absl::Status s = TokenIds(e, out.emplace_back().mutable_token_ids()); !s.ok()) return s;
    } else {
      return NotA("prompt", kForms);
    }
  }
  return out;
}

const std::set<std::string>& KnownFields() {
  static const auto* known = new std::set<std::string>{"model",
                                                       "prompt",
                                                       "max_tokens",
                                                       "temperature",
                                                       "top_p",
                                                       "top_k",
                                                       "seed",
                                                       "stop",
                                                       "stop_token_ids",
                                                       "ignore_eos",
                                                       "stream",
                                                       "stream_options",
                                                       "logprobs",
                                                       "echo",
                                                       "n",
                                                       "best_of",
                                                       "presence_penalty",
                                                       "frequency_penalty",
                                                       "logit_bias",
                                                       "user",
                                                       "suffix",
                                                       "priority",
                                                       "repetition_penalty",
                                                       "min_p",
                                                       "min_tokens",
                                                       "include_stop_str_in_output",
                                                       "skip_special_tokens",
                                                       "prompt_logprobs",
                                                       "use_beam_search",
                                                       "beam_width",
                                                       "length_penalty",
                                                       "early_stopping"};
  return *known;
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseCompletionRequest(
    const std::string& body_text, const std::vector<std::string>& base_names) {
  absl::StatusOr<json> parsed = ParseBody(body_text, KnownFields());
  if (!parsed.ok()) return parsed.status();
  const json& body = *parsed;
  for (absl::Status s : {RequireNeutral(body, "suffix", IsEmpty)})
    if (!s.ok()) return s;
  CompletionRequest out;
  v1::GenerateRequest common;
  CommonOptions options;
  std::optional<int64_t> logprobs;
  for (absl::Status s :
       {ParseCommonOptions(body, base_names, nullptr, &options, &common),
        GetInt(body, "logprobs", 0, kMaxLogprobs, &logprobs), GetBool(body, "echo", &out.echo)})
    if (!s.ok()) return s;
  out.model = options.model;
  out.stream = options.stream;
  out.include_usage = options.include_usage;
  out.prompt_logprobs = options.prompt_logprobs;
  out.n = options.n;
  std::optional<int64_t> best_of;
  if (absl::Status s = GetInt(body, "best_of", 1, kMaxChoices, &best_of); !s.ok()) return s;
  if (best_of) {
    if (common.has_beam()) {  // vLLM's use_beam_search takes best_of as the beam width
      common.mutable_beam()->set_beam_width(static_cast<int32_t>(*best_of));
    } else {
      if (*best_of < out.n) return Invalid("'best_of' must be >= 'n'");
      if (out.stream && *best_of > out.n)
        return Invalid("'best_of' above 'n' cannot stream: the best are known only at the end");
      common.set_best_of(static_cast<int32_t>(*best_of));
    }
  }
  if (logprobs) {
    out.logprobs = static_cast<int32_t>(*logprobs);
    common.mutable_logprobs()->set_top_n(out.logprobs.value());
    if (out.echo) {
      if (out.stream) return Invalid("'echo' with 'logprobs' is not supported when streaming");
      const int32_t n = std::max(out.logprobs.value(), out.prompt_logprobs.value_or(0));
      common.mutable_logprobs()->set_prompt_top_n(n);
    }
  }
  absl::StatusOr<std::vector<v1::GenerateRequest>> prompts = Prompts(body);
  if (!prompts.ok()) return prompts.status();
  for (v1::GenerateRequest& p : *prompts) {
    v1::GenerateRequest r = common;
    if (p.has_token_ids()) {
      *r.mutable_token_ids() = p.token_ids();
    } else {
      r.set_text(p.text());
    }
    out.prompts.push_back(std::move(r));
  }
  return out;
}

const char* OpenAiFinishReason(FinishReason reason) {
  return reason == FinishReason::kLength ? "length" : "stop";
}

std::string TokenText(const Tokenizer* tok, int32_t id) {
  if (tok == nullptr) return absl::StrCat("token_id:", id);
  std::string bytes = tok->TokenBytes(id);
  std::string complete = bytes;
  // Control tokens and bytes of a partial UTF-8 character show as their piece ("<0xE2>").
  if (bytes.empty() || TakeCompleteUtf8(&complete) != bytes || !complete.empty())
    return tok->IdToPiece(id);
  return bytes;
}

size_t TokenByteCount(const Tokenizer* tok, int32_t id) {
  return tok == nullptr ? 0 : tok->TokenBytes(id).size();
}

nlohmann::json LogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries,
                            size_t offset) {
  json tokens = json::array(), token_logprobs = json::array(), top = json::array(),
       offsets = json::array();
  for (const LogprobEntry& e : entries) {
    const std::string text = TokenText(tok, e.token);
    tokens.push_back(text);
    token_logprobs.push_back(e.logprob);
    json alternatives = json::object();
    for (const TokenLogprob& t : e.top)  // highest first; equal texts keep the first
      alternatives.emplace(TokenText(tok, t.id), t.logprob);
    top.push_back(std::move(alternatives));
    offsets.push_back(offset);
    offset += TokenByteCount(tok, e.token);
  }
  return {{"tokens", tokens},
          {"token_logprobs", token_logprobs},
          {"top_logprobs", top},
          {"text_offset", offsets}};
}

namespace {

// Echo with logprobs: the prompt's tokens first (the first has no logprob), then the completion's.
// Where each prompt token starts in the decoded prompt (bytes). A whole decode may drop what a
// streamed first token adds (Metaspace's and sentencepiece's leading space), so the running sum of
// token bytes is shifted back by that difference and clamped at 0: "Hello world" puts "▁Hello" at
// 0 and "▁world" at 5. Special tokens add no bytes to the stream, so the whole decode skips them
// too (a tokenizer.json decode would otherwise count BOS's "<s>" and shift nothing).
std::vector<size_t> PromptOffsets(const Tokenizer* tok, const std::vector<int32_t>& ids) {
  std::vector<size_t> out;
  out.reserve(ids.size());
  if (tok == nullptr) return std::vector<size_t>(ids.size(), 0);
  std::vector<size_t> sums;
  size_t streamed = 0;
  for (int32_t id : ids) {
    sums.push_back(streamed);
    streamed += tok->TokenBytes(id).size();
  }
  const size_t decoded = tok->Decode(ids, /*skip_special_tokens=*/true).size();
  const size_t shift = streamed > decoded ? streamed - decoded : 0;
  for (size_t s : sums) out.push_back(s > shift ? s - shift : 0);
  return out;
}

json EchoLogprobs(const Tokenizer* tok, const ChoiceResult& c) {
  json out = LogprobsJson(tok, c.result.prompt_logprobs, 0);
  if (!c.prompt_ids.empty()) {
    const std::vector<size_t> offsets = PromptOffsets(tok, c.prompt_ids);
    json& text_offset = out["text_offset"];  // entry i is prompt token i + 1
    for (size_t i = 0; i < text_offset.size() && i + 1 < offsets.size(); ++i)
      text_offset[i] = offsets[i + 1];
    const std::string first = TokenText(tok, c.prompt_ids[0]);
    out["tokens"].insert(out["tokens"].begin(), first);
    out["token_logprobs"].insert(out["token_logprobs"].begin(), nullptr);
    out["top_logprobs"].insert(out["top_logprobs"].begin(), nullptr);
    out["text_offset"].insert(out["text_offset"].begin(), 0);
  }
  size_t end = c.prompt_text.size();
  json completion = LogprobsJson(tok, c.result.logprobs, end);
  for (const char* k : {"tokens", "token_logprobs", "top_logprobs", "text_offset"})
    for (json& v : completion[k]) out[k].push_back(std::move(v));
  return out;
}

}  // namespace

nlohmann::json PromptLogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries) {
  json out = json::array({nullptr});
  for (const LogprobEntry& e : entries) {
    json tokens = json::object();
    auto add = [&](int32_t id, float logprob, int32_t rank) {
      tokens.emplace(
          std::to_string(id),
          json{{"logprob", logprob}, {"rank", rank}, {"decoded_token", TokenText(tok, id)}});
    };
    add(e.token, e.logprob, e.rank);
    for (size_t i = 0; i < e.top.size(); ++i)
      add(e.top[i].id, e.top[i].logprob, static_cast<int32_t>(i + 1));
    out.push_back(std::move(tokens));
  }
  return out;
}

nlohmann::json CompletionJson(const Tokenizer* tok, const CompletionRequest& req,
                              const std::string& id, int64_t created,
                              const std::vector<ChoiceResult>& choices) {
  json list = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    json logprobs = nullptr;
    if (req.logprobs)
      logprobs = req.echo ? EchoLogprobs(tok, c) : LogprobsJson(tok, c.result.logprobs, 0);
    json choice = {{"index", i},
                   {"text", req.echo ? c.prompt_text + c.result.text : c.result.text},
                   {"logprobs", std::move(logprobs)},
                   {"finish_reason", OpenAiFinishReason(c.result.finish_reason)}};
    if (req.prompt_logprobs)
      choice["prompt_logprobs"] = PromptLogprobsJson(tok, c.result.prompt_logprobs);
    list.push_back(std::move(choice));
    if (i % static_cast<size_t>(req.n) == 0) prompt_tokens += c.result.prompt_tokens;
    completion_tokens += static_cast<int64_t>(c.result.token_ids.size());
  }
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", req.model},
          {"choices", std::move(list)},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

nlohmann::json ChunkJson(const std::string& id, int64_t created, const std::string& model,
                         size_t index, const std::string& text, const nlohmann::json& logprobs,
                         const char* finish_reason, bool include_usage) {
  json chunk = {{"id", id},
                {"object", "text_completion"},
                {"created", created},
                {"model", model},
                {"choices",
                 json::array({{{"index", index},
                               {"text", text},
                               {"logprobs", logprobs},
                               {"finish_reason", finish_reason ? json(finish_reason) : json()}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

nlohmann::json UsageChunkJson(const std::string& id, int64_t created, const std::string& model,
                              int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"id", id},
          {"object", "text_completion"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage",
           {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}}}};
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition:
      return 400;
    case absl::StatusCode::kUnauthenticated:
      return 401;
    case absl::StatusCode::kPermissionDenied:
      return 403;
    case absl::StatusCode::kNotFound:
      return 404;
    case absl::StatusCode::kResourceExhausted:
      return 429;
    case absl::StatusCode::kCancelled:
      return 499;
    case absl::StatusCode::kUnavailable:
      return 503;
    case absl::StatusCode::kDeadlineExceeded:
      return 504;
    case absl::StatusCode::kUnimplemented:
      return 501;
    default:
      return 500;
  }
}

namespace {

const char* ErrorType(int http_status) {
  switch (http_status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 429:
      return "rate_limit_error";
    case 503:
      return "service_unavailable";
    case 405:
    case 408:
    case 413:
    case 431:
      return "invalid_request_error";
    default:
      return "server_error";
  }
}

}  // namespace

nlohmann::json ErrorJson(int http_status, const std::string& message) {
  return {{"error",
           {{"message", message},
            {"type", ErrorType(http_status)},
            {"param", nullptr},
            {"code", http_status}}}};
}

nlohmann::json ErrorJson(const absl::Status& status) {
  return ErrorJson(HttpStatusOf(status.code()), std::string(status.message()));
}

std::string Dump(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace para::server::openai
