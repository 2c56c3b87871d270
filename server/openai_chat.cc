#include "server/openai_chat.h"

#include <set>

#include "absl/strings/str_cat.h"
#include "server/openai_fields.h"

namespace para::server::openai {
namespace {

using nlohmann::json;

const std::set<std::string>& KnownFields() {
  static const auto* known = new std::set<std::string>{"model",
                                                       "messages",
                                                       "max_tokens",
                                                       "max_completion_tokens",
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
                                                       "top_logprobs",
                                                       "n",
                                                       "user",
                                                       "presence_penalty",
                                                       "frequency_penalty",
                                                       "logit_bias",
                                                       "priority",
                                                       "repetition_penalty",
                                                       "tools",
                                                       "tool_choice",
                                                       "response_format",
                                                       "parallel_tool_calls",
                                                       "add_generation_prompt",
                                                       "continue_final_message",
                                                       "chat_template_kwargs"};
  return *known;
}

// Roles the OpenAI chat protocol defines and a chat template can render without tools.
const std::set<std::string>& Roles() {
  static const auto* roles = new std::set<std::string>{"system", "developer", "user", "assistant"};
  return *roles;
}

bool IsNoToolChoice(const json& v) { return v == "none" || v == "auto"; }
bool IsTextFormat(const json& v) {
  return v.is_object() && v.size() == 1 && v.value("type", "") == "text";
}

// A message's content: a string, or an array of {"type": "text", "text": ...} parts, joined by
// newlines as vLLM does. Other part types (images, audio) are refused.
absl::StatusOr<std::string> Content(const json& content, const std::string& where) {
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array())
    return Invalid(
        absl::StrCat("'", where, ".content' must be a string or an array of text parts"));
  std::string out;
  for (size_t i = 0; i < content.size(); ++i) {
    const json& part = content[i];
    const std::string at = absl::StrCat(where, ".content[", i, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      return Invalid(absl::StrCat("'", at, "' must be an object with a 'type'"));
    if (part["type"] != "text")
      return Invalid(absl::StrCat("'", at, "' has type '", part["type"].get<std::string>(),
                                  "'; only text content is supported"));
    if (!part.contains("text") || !part["text"].is_string())
      return Invalid(absl::StrCat("'", at, ".text' must be a string"));
    if (i > 0) out += '\n';
    out += part["text"].get<std::string>();
  }
  return out;
}

absl::Status Message(const json& m, size_t index, v1::ChatMessage* out) {
  const std::string where = absl::StrCat("messages[", index, "]");
  if (!m.is_object()) return Invalid(absl::StrCat("'", where, "' must be an object"));
  for (const auto& [k, v] : m.items()) {
    if (k == "role" || k == "content" || k == "name") continue;
    if ((k == "tool_calls" && (v.is_null() || IsEmpty(v))) || (k == "refusal" && v.is_null()))
      continue;
    return Invalid(absl::StrCat("'", where, ".", k, "' is not supported by this server"));
  }
  auto role = m.find("role");
  if (role == m.end() || !role->is_string())
    return Invalid(absl::StrCat("'", where, ".role' is required"));
  if (!Roles().count(role->get<std::string>()))
    return Invalid(absl::StrCat("'", where, ".role' is '", role->get<std::string>().substr(0, 64),
                                "'; it must be system, developer, user or assistant"));
  out->set_role(role->get<std::string>());
  auto content = m.find("content");
  if (content == m.end() || content->is_null())
    return Invalid(absl::StrCat("'", where, ".content' is required"));
  absl::StatusOr<std::string> text = Content(*content, where);
  if (!text.ok()) return text.status();
  out->set_content(*std::move(text));
  if (auto name = m.find("name"); name != m.end() && !name->is_null()) {
    if (!name->is_string()) return Invalid(absl::StrCat("'", where, ".name' must be a string"));
    out->set_name(name->get<std::string>());
  }
  return absl::OkStatus();
}

absl::Status Conversation(const json& body, v1::ChatPrompt* out) {
  auto it = body.find("messages");
  if (it == body.end() || !it->is_array() || it->empty())
    return Invalid("'messages' is required: a non-empty array of {role, content} objects");
  if (it->size() > kMaxChatMessages)
    return Invalid(
        absl::StrCat("'messages' has ", it->size(), " messages; at most ", kMaxChatMessages));
  for (size_t i = 0; i < it->size(); ++i)
    if (absl::Status s = Message((*it)[i], i, out->add_messages()); !s.ok()) return s;
  bool add_generation_prompt = true, continue_final = false;
  for (absl::Status s : {GetBool(body, "add_generation_prompt", &add_generation_prompt),
                         GetBool(body, "continue_final_message", &continue_final)})
    if (!s.ok()) return s;
  out->set_add_generation_prompt(add_generation_prompt);
  out->set_continue_final_message(continue_final);
  if (auto kw = body.find("chat_template_kwargs"); kw != body.end() && !kw->is_null()) {
    if (!kw->is_object()) return NotA("chat_template_kwargs", "an object");
    out->set_template_kwargs_json(kw->dump());
  }
  return absl::OkStatus();
}

absl::Status Logprobs(const json& body, CompletionRequest* out, v1::GenerateRequest* r) {
  bool logprobs = false;
  std::optional<int64_t> top;
  for (absl::Status s :
       {GetBool(body, "logprobs", &logprobs), GetInt(body, "top_logprobs", 0, kMaxLogprobs, &top)})
    if (!s.ok()) return s;
  if (top && !logprobs) return Invalid("'top_logprobs' needs 'logprobs': true");
  if (!logprobs) return absl::OkStatus();
  out->logprobs = static_cast<int32_t>(top.value_or(0));
  r->mutable_logprobs()->set_top_n(*out->logprobs);
  return absl::OkStatus();
}

json Bytes(const std::string& s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

json TokenEntry(const Tokenizer* tok, int32_t id, float logprob) {
  const std::string text = TokenText(tok, id);
  return {{"token", text}, {"logprob", logprob}, {"bytes", Bytes(text)}};
}

json UsageJson(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

}  // namespace

absl::StatusOr<CompletionRequest> ParseChatRequest(const std::string& body_text,
                                                   const std::vector<std::string>& base_names) {
  absl::StatusOr<json> parsed = ParseBody(body_text, KnownFields());
  if (!parsed.ok()) return parsed.status();
  const json& body = *parsed;
  for (absl::Status s :
       {RequireNeutral(body, "tools", IsEmpty), RequireNeutral(body, "tool_choice", IsNoToolChoice),
        RequireNeutral(body, "response_format", IsTextFormat)})
    if (!s.ok()) return s;
  if (auto p = body.find("parallel_tool_calls");
      p != body.end() && !p->is_null() && !p->is_boolean())
    return NotA("parallel_tool_calls", "true or false");
  CompletionRequest out;
  out.api = Api::kChat;
  v1::GenerateRequest r;
  CommonOptions options;
  for (absl::Status s :
       {ParseCommonOptions(body, base_names, "max_completion_tokens", &options, &r),
        Conversation(body, r.mutable_chat()), Logprobs(body, &out, &r)})
    if (!s.ok()) return s;
  out.model = options.model;
  out.stream = options.stream;
  out.include_usage = options.include_usage;
  out.prompt_logprobs = options.prompt_logprobs;
  out.n = options.n;
  out.prompts.push_back(std::move(r));
  return out;
}

nlohmann::json ChatLogprobsJson(const Tokenizer* tok, const std::vector<LogprobEntry>& entries) {
  json content = json::array();
  for (const LogprobEntry& e : entries) {
    json entry = TokenEntry(tok, e.token, e.logprob);
    json top = json::array();
    for (const TokenLogprob& t : e.top) top.push_back(TokenEntry(tok, t.id, t.logprob));
    entry["top_logprobs"] = std::move(top);
    content.push_back(std::move(entry));
  }
  return {{"content", std::move(content)}};
}

nlohmann::json ChatCompletionJson(const Tokenizer* tok, const CompletionRequest& req,
                                  const std::string& id, int64_t created,
                                  const std::vector<ChoiceResult>& choices) {
  json list = json::array();
  int64_t prompt_tokens = 0, completion_tokens = 0;
  for (size_t i = 0; i < choices.size(); ++i) {
    const sched::RequestResult& r = choices[i].result;
    list.push_back(json{{"index", i},
                        {"message", {{"role", "assistant"}, {"content", r.text}}},
                        {"logprobs", req.logprobs ? ChatLogprobsJson(tok, r.logprobs) : json()},
                        {"finish_reason", OpenAiFinishReason(r.finish_reason)}});
    if (i % static_cast<size_t>(req.n) == 0) prompt_tokens += r.prompt_tokens;
    completion_tokens += static_cast<int64_t>(r.token_ids.size());
  }
  json out = {{"id", id},
              {"object", "chat.completion"},
              {"created", created},
              {"model", req.model},
              {"choices", std::move(list)},
              {"usage", UsageJson(prompt_tokens, completion_tokens)}};
  if (req.prompt_logprobs && !choices.empty())  // vLLM: one list, on the response
    out["prompt_logprobs"] = PromptLogprobsJson(tok, choices[0].result.prompt_logprobs);
  return out;
}

nlohmann::json ChatChunkJson(const std::string& id, int64_t created, const std::string& model,
                             size_t index, nlohmann::json delta, const nlohmann::json& logprobs,
                             const char* finish_reason, bool include_usage) {
  json chunk = {{"id", id},
                {"object", "chat.completion.chunk"},
                {"created", created},
                {"model", model},
                {"choices",
                 json::array({{{"index", index},
                               {"delta", std::move(delta)},
                               {"logprobs", logprobs},
                               {"finish_reason", finish_reason ? json(finish_reason) : json()}}})}};
  if (include_usage) chunk["usage"] = nullptr;
  return chunk;
}

nlohmann::json ChatUsageChunkJson(const std::string& id, int64_t created, const std::string& model,
                                  int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"id", id},
          {"object", "chat.completion.chunk"},
          {"created", created},
          {"model", model},
          {"choices", json::array()},
          {"usage", UsageJson(prompt_tokens, completion_tokens)}};
}

}  // namespace para::server::openai
