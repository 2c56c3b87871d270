#include "tools/request_json.h"

#include <set>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace para::tools {
namespace {

using json = nlohmann::json;

absl::Status Fill(const json& j, const Model& model, const AdapterResolver& adapters,
                  sched::Submission* sub) {
  GenerationRequest* r = &sub->request;
  if (j.contains("tenant")) sub->tenant = j["tenant"].get<std::string>();
  if (j.contains("priority")) sub->priority = j["priority"].get<int32_t>();
  static const std::set<std::string> kKnown = {"prompt",
                                               "prompt_ids",
                                               "max_tokens",
                                               "temperature",
                                               "top_k",
                                               "top_p",
                                               "seed",
                                               "repetition_penalty",
                                               "stop",
                                               "stop_token_ids",
                                               "ignore_eos",
                                               "logprobs",
                                               "prompt_logprobs",
                                               "adapter",
                                               "tenant",
                                               "priority",
                                               "messages",
                                               "add_generation_prompt",
                                               "presence_penalty",
                                               "frequency_penalty",
                                               "min_p",
                                               "logit_bias",
                                               "min_tokens",
                                               "include_stop_str_in_output",
                                               "skip_special_tokens",
                                               "n",
                                               "best_of",
                                               "beam_width",
                                               "length_penalty",
                                               "early_stopping"};
  for (const auto& [k, _] : j.items())
    if (!kKnown.count(k))
      return absl::InvalidArgumentError(absl::StrCat("unknown request field '", k, "'"));
  if (j.contains("adapter")) {
    const json& a = j["adapter"];
    if (!a.is_null() && !a.is_string())
      return absl::InvalidArgumentError("'adapter' must be a directory path, \"\" or null");
    r->para = nullptr;
    r->lora = nullptr;
    if (a.is_string() && !a.get<std::string>().empty()) {
      auto loaded = adapters(a.get<std::string>());
      if (!loaded.ok()) return loaded.status();
      r->para = loaded->para;
      r->lora = loaded->lora;
    }
  }
  const bool has_text = j.contains("prompt"), has_ids = j.contains("prompt_ids"),
             has_chat = j.contains("messages");
  if (has_text + has_ids + has_chat != 1)
    return absl::InvalidArgumentError("give exactly one of 'prompt', 'prompt_ids' and 'messages'");
  if (has_chat) {  // a conversation for the model's chat template
    text::ChatOptions options;
    options.add_generation_prompt = j.value("add_generation_prompt", true);
    auto ids = model.EncodeChat(nlohmann::ordered_json(j["messages"]), options);
    if (!ids.ok()) return ids.status();
    r->prompt_ids = *std::move(ids);
  } else if (has_text) {
    if (!j["prompt"].is_string()) return absl::InvalidArgumentError("'prompt' must be a string");
    auto ids = model.EncodePrompt(j["prompt"].get<std::string>());
    if (!ids.ok()) return ids.status();
    r->prompt_ids = *std::move(ids);
  } else {
    r->prompt_ids = j["prompt_ids"].get<std::vector<int32_t>>();
  }
  SamplingParams& s = r->sampling;
  StoppingParams& st = r->stopping;
  if (j.contains("max_tokens")) st.max_tokens = j["max_tokens"].get<int32_t>();
  if (j.contains("temperature")) s.temperature = j["temperature"].get<float>();
  if (j.contains("top_k")) s.top_k = j["top_k"].get<int32_t>();
  if (j.contains("top_p")) s.top_p = j["top_p"].get<float>();
  if (j.contains("repetition_penalty")) s.repetition_penalty = j["repetition_penalty"].get<float>();
  if (j.contains("seed")) s.seed = j["seed"].get<uint64_t>();
  if (j.contains("presence_penalty")) s.presence_penalty = j["presence_penalty"].get<float>();
  if (j.contains("frequency_penalty")) s.frequency_penalty = j["frequency_penalty"].get<float>();
  if (j.contains("min_p")) s.min_p = j["min_p"].get<float>();
  if (j.contains("logit_bias")) {  // {"token id": bias}, as OpenAI writes it
    s.logit_bias.clear();
    for (const auto& [id, bias] : j["logit_bias"].items()) {
      int32_t token = 0;
      if (!absl::SimpleAtoi(id, &token))
        return absl::InvalidArgumentError(
            absl::StrCat("'logit_bias' keys must be token ids, got '", id, "'"));
      s.logit_bias.push_back({token, bias.get<float>()});
    }
  }
  if (j.contains("min_tokens")) st.min_tokens = j["min_tokens"].get<int32_t>();
  if (j.contains("include_stop_str_in_output"))
    st.include_stop_str_in_output = j["include_stop_str_in_output"].get<bool>();
  if (j.contains("skip_special_tokens"))
    st.skip_special_tokens = j["skip_special_tokens"].get<bool>();
  if (j.contains("logprobs") && !j["logprobs"].is_null()) s.logprobs = j["logprobs"].get<int32_t>();
  if (j.contains("prompt_logprobs") && !j["prompt_logprobs"].is_null())
    s.prompt_logprobs = j["prompt_logprobs"].get<int32_t>();
  if (j.contains("stop")) {
    st.stop = j["stop"].is_string() ? std::vector<std::string>{j["stop"].get<std::string>()}
                                    : j["stop"].get<std::vector<std::string>>();
  }
  if (j.contains("stop_token_ids"))
    st.stop_token_ids = j["stop_token_ids"].get<std::vector<int32_t>>();
  if (j.contains("ignore_eos")) st.ignore_eos = j["ignore_eos"].get<bool>();
  GroupParams& g = r->group;
  if (j.contains("n")) g.n = j["n"].get<int32_t>();
  g.best_of = j.contains("best_of") ? j["best_of"].get<int32_t>() : g.n;
  if (j.contains("beam_width")) {
    g.beam_width = j["beam_width"].get<int32_t>();
    if (!j.contains("best_of")) g.best_of = 1;
    if (!j.contains("temperature")) s.temperature = 0.0f;  // beam search is deterministic
  }
  if (j.contains("length_penalty")) g.length_penalty = j["length_penalty"].get<float>();
  if (j.contains("early_stopping")) {
    const json& es = j["early_stopping"];
    if (es.is_boolean()) {
      g.early_stopping = es.get<bool>() ? GroupParams::EarlyStopping::kTrue
                                        : GroupParams::EarlyStopping::kHeuristic;
    } else if (es == "never") {
      g.early_stopping = GroupParams::EarlyStopping::kNever;
    } else {
      return absl::InvalidArgumentError("'early_stopping' must be true, false or \"never\"");
    }
  }
  if (has_chat && !st.ignore_eos)  // a chat turn also ends at the template's end-of-turn token
    for (int32_t id : model.end_of_turn_ids()) st.stop_token_ids.push_back(id);
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<sched::Submission> ParseRequestJson(const json& j, const Model& model,
                                                   const sched::Submission& defaults,
                                                   const AdapterResolver& adapters) {
  if (!j.is_object()) return absl::InvalidArgumentError("request is not a JSON object");
  sched::Submission r = defaults;
  r.request.prompt_ids.clear();
  try {
    if (absl::Status s = Fill(j, model, adapters, &r); !s.ok()) return s;
  } catch (const json::exception& e) {  // a field of the wrong type
    return absl::InvalidArgumentError(absl::StrCat("bad request field: ", e.what()));
  }
  return r;
}

json LogprobsToJson(const std::vector<LogprobEntry>& entries) {
  json out = json::array();
  for (const auto& e : entries) {
    json top = json::array();
    for (const auto& t : e.top) top.push_back({{"id", t.id}, {"logprob", t.logprob}});
    out.push_back({{"id", e.token}, {"logprob", e.logprob}, {"top", top}});
  }
  return out;
}

json ResultToJson(const sched::RequestResult& r) {
  json j = {{"prompt_tokens", r.prompt_tokens},
            {"token_ids", r.token_ids},
            {"text", r.text},
            {"finish_reason", FinishReasonName(r.finish_reason)}};
  if (!r.logprobs.empty()) j["logprobs"] = LogprobsToJson(r.logprobs);
  if (!r.prompt_logprobs.empty()) j["prompt_logprobs"] = LogprobsToJson(r.prompt_logprobs);
  if (!r.choices.empty()) {  // n > 1: every result, best first
    json choices = json::array();
    for (const sched::RequestResult& c : r.choices) {
      json cj = {{"index", c.index},
                 {"token_ids", c.token_ids},
                 {"text", c.text},
                 {"finish_reason", FinishReasonName(c.finish_reason)},
                 {"cumulative_logprob", c.cumulative_logprob}};
      if (!c.logprobs.empty()) cj["logprobs"] = LogprobsToJson(c.logprobs);
      choices.push_back(std::move(cj));
    }
    j["choices"] = std::move(choices);
  }
  return j;
}

}  // namespace para::tools
