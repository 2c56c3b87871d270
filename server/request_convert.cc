#include "server/request_convert.h"

#include <algorithm>
#include <cmath>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "engine/text/unicode.h"
#include "google/protobuf/unknown_field_set.h"
#include "nlohmann/json.hpp"

namespace para::server {
namespace {

absl::Status Invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

using text::IsValidUtf8;

}  // namespace

// Text that cannot fit in the context is refused by its length alone, before the tokenizer spends
// time and memory on it (about 1 s and 250 MB for 1 MiB).
absl::Status CheckTextFits(int64_t bytes, const char* what, const Engine& engine) {
  const int64_t per_token = engine.model().max_token_bytes();
  if (per_token <= 0) return absl::OkStatus();
  const int64_t bound = engine.max_model_len() * per_token * 2;
  if (bytes <= bound) return absl::OkStatus();
  return Invalid(absl::StrCat(what, " is ", bytes, " bytes, more than can fit in the context of ",
                              engine.max_model_len(), " tokens (at most ", bound,
                              " bytes: no token of this model stands for more than ", per_token,
                              " bytes); refused without tokenizing"));
}

namespace {

// A conversation's messages as the chat template sees them ({role, content[, name]}), and the
// template options. Sizes are bounded before anything is rendered.
absl::StatusOr<nlohmann::ordered_json> ChatMessages(const v1::ChatPrompt& chat,
                                                    const RequestLimits& limits) {
  if (chat.messages().empty()) return Invalid("the chat has no messages");
  if (chat.messages_size() > limits.max_chat_messages)
    return Invalid(absl::StrCat("the chat has ", chat.messages_size(), " messages; at most ",
                                limits.max_chat_messages));
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  int64_t bytes = 0;
  for (int i = 0; i < chat.messages_size(); ++i) {
    const v1::ChatMessage& m = chat.messages(i);
    const std::string at = absl::StrCat("chat message ", i);
    if (m.role().empty() || m.role().size() > 64)
      return Invalid(absl::StrCat(at, ": the role must be 1 to 64 bytes"));
    for (const std::string* f : {&m.role(), &m.content(), &m.name()})
      if (!IsValidUtf8(*f)) return Invalid(absl::StrCat(at, " is not valid UTF-8"));
    bytes += static_cast<int64_t>(m.role().size() + m.content().size() + m.name().size());
    nlohmann::ordered_json msg = {{"role", m.role()}, {"content", m.content()}};
    if (!m.name().empty()) msg["name"] = m.name();
    messages.push_back(std::move(msg));
  }
  if (bytes > limits.max_prompt_bytes)
    return Invalid(absl::StrCat("the chat's messages are ", bytes, " bytes; the limit is ",
                                limits.max_prompt_bytes));
  return messages;
}

absl::StatusOr<text::ChatOptions> ChatOptionsOf(const v1::ChatPrompt& chat,
                                                const RequestLimits& limits) {
  text::ChatOptions o;
  o.add_generation_prompt = chat.has_add_generation_prompt() ? chat.add_generation_prompt() : true;
  o.continue_final_message = chat.continue_final_message();
  if (o.continue_final_message && chat.has_add_generation_prompt() && o.add_generation_prompt)
    return Invalid("continue_final_message needs add_generation_prompt false");
  if (o.continue_final_message) o.add_generation_prompt = false;
  const std::string& kw = chat.template_kwargs_json();
  if (kw.empty()) return o;
  if (static_cast<int64_t>(kw.size()) > limits.max_template_kwargs_bytes)
    return Invalid(absl::StrCat("template_kwargs_json is ", kw.size(), " bytes; at most ",
                                limits.max_template_kwargs_bytes));
  o.template_kwargs = nlohmann::ordered_json::parse(kw, nullptr, /*allow_exceptions=*/false);
  if (o.template_kwargs.is_discarded() || !o.template_kwargs.is_object())
    return Invalid("template_kwargs_json must be a JSON object");
  for (const char* reserved : {"messages", "add_generation_prompt", "bos_token", "eos_token"})
    if (o.template_kwargs.contains(reserved))
      return Invalid(absl::StrCat("template_kwargs_json may not set '", reserved, "'"));
  return o;
}

absl::Status CheckChat(const v1::ChatPrompt& chat, const Engine& engine,
                       const RequestLimits& limits, GenerationRequest* out) {
  absl::StatusOr<nlohmann::ordered_json> messages = ChatMessages(chat, limits);
  if (!messages.ok()) return messages.status();
  int64_t content = 0;  // the rendered prompt holds at least the messages' contents
  for (const v1::ChatMessage& m : chat.messages())
    content += static_cast<int64_t>(m.content().size());
  if (absl::Status s = CheckTextFits(content, "the chat's message content", engine); !s.ok())
    return s;
  absl::StatusOr<text::ChatOptions> options = ChatOptionsOf(chat, limits);
  if (!options.ok()) return options.status();
  absl::StatusOr<std::vector<int32_t>> ids = engine.model().EncodeChat(*messages, *options);
  if (!ids.ok()) return Invalid(std::string(ids.status().message()));
  if (ids->empty()) return Invalid("the chat template rendered an empty prompt");
  out->prompt_ids = *std::move(ids);
  return absl::OkStatus();
}

absl::Status CheckPrompt(const v1::GenerateRequest& r, const Engine& engine,
                         const RequestLimits& limits, GenerationRequest* out) {
  switch (r.prompt_case()) {
    case v1::GenerateRequest::kText: {
      const std::string& text = r.text();
      if (text.empty()) return Invalid("prompt text is empty");
      if (static_cast<int64_t>(text.size()) > limits.max_prompt_bytes)
        return Invalid(absl::StrCat("prompt text is ", text.size(), " bytes; the limit is ",
                                    limits.max_prompt_bytes));
      if (!IsValidUtf8(text)) return Invalid("prompt text is not valid UTF-8");
      if (absl::Status s = CheckTextFits(static_cast<int64_t>(text.size()), "prompt text", engine);
          !s.ok())
        return s;
      auto ids = engine.model().EncodePrompt(text);
      if (!ids.ok()) return Invalid(std::string(ids.status().message()));
      out->prompt_ids = *std::move(ids);
      return absl::OkStatus();
    }
    case v1::GenerateRequest::kTokenIds:
      out->prompt_ids.assign(r.token_ids().ids().begin(), r.token_ids().ids().end());
      if (out->prompt_ids.empty()) return Invalid("prompt token_ids is empty");
      return absl::OkStatus();
    case v1::GenerateRequest::kChat:
      return CheckChat(r.chat(), engine, limits, out);
    default:
      return Invalid("the request has no prompt: set text, token_ids or chat");
  }
}

absl::Status CheckSampling(const v1::SamplingParams& s, const ModelConfig& c, SamplingParams* out) {
  const GenerationDefaults& g = c.generation;
  out->temperature =
      s.has_temperature() ? s.temperature() : (g.do_sample ? g.temperature.value_or(1.0f) : 0.0f);
  out->top_k = s.has_top_k() ? s.top_k() : (g.do_sample ? g.top_k.value_or(0) : 0);
  out->top_p = s.has_top_p() ? s.top_p() : (g.do_sample ? g.top_p.value_or(1.0f) : 1.0f);
  out->repetition_penalty =
      s.has_repetition_penalty() ? s.repetition_penalty() : g.repetition_penalty.value_or(1.0f);
  if (s.has_seed()) out->seed = s.seed();
  if (s.has_presence_penalty()) out->presence_penalty = s.presence_penalty();
  if (s.has_frequency_penalty()) out->frequency_penalty = s.frequency_penalty();
  if (s.has_min_p()) out->min_p = s.min_p();
  for (const auto& [id, bias] : s.logit_bias()) out->logit_bias.push_back({id, bias});
  std::sort(out->logit_bias.begin(), out->logit_bias.end());  // map order is unspecified
  return absl::OkStatus();  // value ranges are checked by the engine's validation
}

// `default_max` is the model's generation_config max_new_tokens, else the server's default.
absl::Status CheckStopping(const v1::StoppingCriteria& s, const RequestLimits& limits, int64_t room,
                           int32_t default_max, StoppingParams* out) {
  out->max_tokens = s.has_max_tokens() ? s.max_tokens() : std::min<int64_t>(default_max, room);
  if (s.has_max_tokens() && (s.max_tokens() < 1 || s.max_tokens() > room))
    return Invalid(absl::StrCat("max_tokens must be in [1, ", room,
                                "] (the context left after the prompt), got ", s.max_tokens()));
  if (s.stop_size() > limits.max_stop_strings)
    return Invalid(absl::StrCat(s.stop_size(), " stop strings; at most ", limits.max_stop_strings));
  for (const std::string& stop : s.stop()) {
    if (stop.empty()) return Invalid("a stop string is empty");
    if (static_cast<int64_t>(stop.size()) > limits.max_stop_bytes)
      return Invalid(absl::StrCat("a stop string is ", stop.size(), " bytes; at most ",
                                  limits.max_stop_bytes));
    if (!IsValidUtf8(stop)) return Invalid("a stop string is not valid UTF-8");
    out->stop.push_back(stop);
  }
  out->stop_token_ids.assign(s.stop_token_ids().begin(), s.stop_token_ids().end());
  out->ignore_eos = s.ignore_eos();
  out->min_tokens = s.min_tokens();
  out->include_stop_str_in_output = s.include_stop_str_in_output();
  out->skip_special_tokens = !s.has_skip_special_tokens() || s.skip_special_tokens();
  return absl::OkStatus();
}

// n / best_of / beam search. Beam search is deterministic: unless the request set a temperature,
// the model's sampling defaults do not apply to it.
absl::Status CheckGroup(const v1::GenerateRequest& r, GenerationRequest* g) {
  GroupParams& p = g->group;
  p.n = r.n() == 0 ? 1 : r.n();
  p.best_of = r.best_of() == 0 ? p.n : r.best_of();
  if (!r.has_beam() || r.beam().beam_width() == 0) return absl::OkStatus();
  const v1::BeamSearch& b = r.beam();
  p.beam_width = b.beam_width();
  if (r.best_of() == 0) p.best_of = 1;
  p.length_penalty = b.has_length_penalty() ? b.length_penalty() : 1.0f;
  const std::string& es = b.early_stopping();
  if (es.empty() || es == "heuristic" || es == "false") {
    p.early_stopping = GroupParams::EarlyStopping::kHeuristic;
  } else if (es == "true") {
    p.early_stopping = GroupParams::EarlyStopping::kTrue;
  } else if (es == "never") {
    p.early_stopping = GroupParams::EarlyStopping::kNever;
  } else {
    return Invalid(
        absl::StrCat("beam.early_stopping must be \"heuristic\", \"true\" or \"never\", got \"",
                     es.substr(0, 32), "\""));
  }
  if (!r.sampling().has_temperature()) {  // no sampling defaults: beam search is greedy
    SamplingParams plain;
    plain.temperature = 0.0f;
    plain.seed = g->sampling.seed;
    plain.logprobs = g->sampling.logprobs;
    plain.prompt_logprobs = g->sampling.prompt_logprobs;
    plain.logit_bias = g->sampling.logit_bias;
    plain.presence_penalty = g->sampling.presence_penalty;
    plain.frequency_penalty = g->sampling.frequency_penalty;
    plain.repetition_penalty =
        r.sampling().has_repetition_penalty() ? g->sampling.repetition_penalty : 1.0f;
    g->sampling = plain;
  }
  return absl::OkStatus();
}

// Log-probabilities make a response grow with tokens × (1 + top-n): a 600 KB prompt echoed with
// 20 alternatives per token was a 70 MB response. The most a request may ask for is bounded
// before it runs (and names what to lower).
absl::Status CheckResponseSize(const GenerationRequest& g, const RequestLimits& limits) {
  const SamplingParams& p = g.sampling;
  const int64_t sequences = std::max<int64_t>(g.group.n, g.group.width());
  int64_t entries = 0;
  if (p.logprobs) entries += sequences * g.stopping.max_tokens * (1 + int64_t{*p.logprobs});
  if (p.prompt_logprobs)
    entries += static_cast<int64_t>(g.prompt_ids.size()) * (1 + int64_t{*p.prompt_logprobs});
  if (entries <= limits.max_response_logprobs) return absl::OkStatus();
  return Invalid(absl::StrCat(
      "the response would carry ", entries, " log-probabilities (", sequences, " sequence(s) × ",
      g.stopping.max_tokens, " max_tokens × (1 + ", p.logprobs.value_or(0), ") logprobs",
      p.prompt_logprobs ? absl::StrCat(" + ", g.prompt_ids.size(), " prompt tokens × (1 + ",
                                       *p.prompt_logprobs, ") prompt logprobs")
                        : "",
      "); at most ", limits.max_response_logprobs,
      " are returned: lower max_tokens, n or logprobs, or ask for no prompt logprobs (echo)"));
}

void CollectUnknown(const google::protobuf::Message& m, const std::string& path,
                    std::vector<std::string>* out) {
  const auto* refl = m.GetReflection();
  const auto& unknown = refl->GetUnknownFields(m);
  for (int i = 0; i < unknown.field_count(); ++i)
    out->push_back(absl::StrCat(path.empty() ? "" : path + ".", "#", unknown.field(i).number()));
  std::vector<const google::protobuf::FieldDescriptor*> fields;
  refl->ListFields(m, &fields);
  for (const auto* f : fields) {
    if (f->cpp_type() != google::protobuf::FieldDescriptor::CPPTYPE_MESSAGE) continue;
    const std::string sub = path.empty() ? f->name() : path + "." + f->name();
    if (f->is_repeated()) {
      for (int i = 0; i < refl->FieldSize(m, f); ++i)
        CollectUnknown(refl->GetRepeatedMessage(m, f, i), sub, out);
    } else {
      CollectUnknown(refl->GetMessage(m, f), sub, out);
    }
  }
}

}  // namespace

absl::Status CheckNoUnknownFields(const google::protobuf::Message& message) {
  std::vector<std::string> unknown;
  CollectUnknown(message, "", &unknown);
  if (unknown.empty()) return absl::OkStatus();
  return Invalid(absl::StrCat("the request has fields this server does not know (",
                              absl::StrJoin(unknown, ", "),
                              "); the client may be built against a newer API"));
}

absl::StatusOr<sched::Submission> ToSubmission(const v1::GenerateRequest& r, const Principal& who,
                                               const AdapterRef* adapter, const Engine& engine,
                                               const RequestLimits& limits) {
  if (absl::Status s = CheckNoUnknownFields(r); !s.ok()) return s;
  if (static_cast<int32_t>(r.request_id().size()) > limits.max_request_id_bytes)
    return Invalid(
        absl::StrCat("request_id is longer than ", limits.max_request_id_bytes, " bytes"));
  if (!IsValidUtf8(r.request_id())) return Invalid("request_id is not valid UTF-8");
  if (r.priority() < -limits.max_priority || r.priority() > limits.max_priority)
    return Invalid(absl::StrCat("priority must be in [", -limits.max_priority, ", ",
                                limits.max_priority, "]"));
  sched::Submission sub;
  sub.tenant = who.tenant;
  sub.priority = r.priority();
  GenerationRequest& g = sub.request;
  if (adapter != nullptr) {
    g.para = adapter->para;
    g.lora = adapter->lora;
  }
  if (absl::Status s = CheckPrompt(r, engine, limits, &g); !s.ok()) return s;
  const int64_t room = engine.max_model_len() - static_cast<int64_t>(g.prompt_ids.size());
  if (room < 1)
    return Invalid(absl::StrCat("prompt has ", g.prompt_ids.size(),
                                " tokens; the context limit is ", engine.max_model_len()));
  if (absl::Status s = CheckSampling(r.sampling(), engine.config(), &g.sampling); !s.ok()) return s;
  const int32_t default_max =
      engine.config().generation.max_new_tokens.value_or(limits.default_max_tokens);
  if (absl::Status s = CheckStopping(r.stopping(), limits, room, default_max, &g.stopping); !s.ok())
    return s;
  if (r.has_chat() && !g.stopping.ignore_eos)  // a chat turn also ends at the template's eos
    for (int32_t id : engine.model().end_of_turn_ids()) g.stopping.stop_token_ids.push_back(id);
  if (absl::Status s = CheckGroup(r, &g); !s.ok()) return s;
  if (r.logprobs().has_top_n()) g.sampling.logprobs = r.logprobs().top_n();
  if (r.logprobs().has_prompt_top_n()) g.sampling.prompt_logprobs = r.logprobs().prompt_top_n();
  if (absl::Status s = engine.ValidateRequest(g); !s.ok()) return s;
  if (absl::Status s = CheckResponseSize(g, limits); !s.ok()) return s;
  return sub;
}

v1::FinishReason ToProto(FinishReason reason) {
  switch (reason) {
    case FinishReason::kLength:
      return v1::FINISH_REASON_LENGTH;
    case FinishReason::kStop:
      return v1::FINISH_REASON_STOP;
    case FinishReason::kEos:
      return v1::FINISH_REASON_EOS;
    case FinishReason::kCancelled:
      return v1::FINISH_REASON_CANCELLED;
    case FinishReason::kNone:
      break;
  }
  return v1::FINISH_REASON_UNSPECIFIED;
}

void FillTokenInfo(const LogprobEntry& e, v1::TokenInfo* out) {
  out->set_id(e.token);
  out->set_logprob(e.logprob);
  for (const auto& t : e.top) {
    auto* top = out->add_top();
    top->set_id(t.id);
    top->set_logprob(t.logprob);
  }
}

void FillUsage(const sched::RequestResult& r, v1::Usage* out) {
  out->set_prompt_tokens(r.prompt_tokens);
  out->set_completion_tokens(static_cast<int32_t>(r.token_ids.size()));
  out->set_time_to_first_token_seconds(r.time_to_first_token_us / 1e6);
  out->set_queue_seconds(r.queue_time_us / 1e6);
  out->set_preemptions(r.preemptions);
}

void FillChoice(const sched::RequestResult& r, v1::GenerateChoice* out) {
  out->set_index(r.index);
  out->set_text(r.text);
  for (int32_t id : r.token_ids) out->add_token_ids(id);
  for (const auto& e : r.logprobs) FillTokenInfo(e, out->add_logprobs());
  out->set_finish_reason(ToProto(r.finish_reason));
  out->set_cumulative_logprob(r.cumulative_logprob);
}

void FillResponse(const sched::DoneEvent& done, const std::string& request_id,
                  v1::GenerateResponse* out) {
  FillResponse(done.result, request_id, out);
  int32_t completion = 0;
  for (const auto& c : done.choices) {
    FillChoice(c, out->add_choices());
    completion += static_cast<int32_t>(c.token_ids.size());
  }
  if (!done.choices.empty()) out->mutable_usage()->set_completion_tokens(completion);
}

void FillResponse(const sched::RequestResult& r, const std::string& request_id,
                  v1::GenerateResponse* out) {
  out->set_request_id(request_id);
  out->set_text(r.text);
  for (int32_t id : r.token_ids) out->add_token_ids(id);
  for (const auto& e : r.logprobs) FillTokenInfo(e, out->add_logprobs());
  for (const auto& e : r.prompt_logprobs) FillTokenInfo(e, out->add_prompt_logprobs());
  out->set_finish_reason(ToProto(r.finish_reason));
  FillUsage(r, out->mutable_usage());
}

}  // namespace para::server
