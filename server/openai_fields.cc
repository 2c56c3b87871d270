#include "server/openai_fields.h"

#include <algorithm>
#include <limits>

#include "absl/strings/str_cat.h"

namespace para::server::openai {

using nlohmann::json;

absl::Status Invalid(const std::string& what) { return absl::InvalidArgumentError(what); }

absl::Status NotA(const char* field, const char* what) {
  return Invalid(absl::StrCat("'", field, "' must be ", what));
}

// Reads an optional integer field in [lo, hi]; null or absent leaves `out` unset.
absl::Status GetInt(const json& body, const char* field, int64_t lo, int64_t hi,
                    std::optional<int64_t>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return NotA(field, "an integer");
  if (it->is_number_unsigned() && it->get<uint64_t>() > static_cast<uint64_t>(hi))
    return Invalid(absl::StrCat("'", field, "' must be in [", lo, ", ", hi, "]"));
  const int64_t v = it->get<int64_t>();
  if (v < lo || v > hi)
    return Invalid(absl::StrCat("'", field, "' must be in [", lo, ", ", hi, "]"));
  *out = v;
  return absl::OkStatus();
}

// Reads an optional integer field in [0, 2^64 - 1] (para.v1's uint64 fields, e.g. seed).
absl::Status GetUint64(const json& body, const char* field, std::optional<uint64_t>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number_integer()) return NotA(field, "an integer");
  if (!it->is_number_unsigned() && it->get<int64_t>() < 0)
    return Invalid(absl::StrCat("'", field, "' must be in [0, 2^64 - 1]"));
  *out = it->get<uint64_t>();
  return absl::OkStatus();
}

absl::Status GetNumber(const json& body, const char* field, std::optional<double>* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_number()) return NotA(field, "a number");
  *out = it->get<double>();
  return absl::OkStatus();
}

absl::Status GetBool(const json& body, const char* field, bool* out) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_boolean()) return NotA(field, "true or false");
  *out = it->get<bool>();
  return absl::OkStatus();
}

bool IsTokenArray(const json& v) {
  if (!v.is_array() || v.empty()) return false;
  for (const json& e : v)
    if (!e.is_number_integer()) return false;
  return true;
}

absl::Status TokenIds(const json& v, v1::TokenIds* out, const char* field) {
  for (const json& e : v) {
    if (e.is_number_unsigned() ? e.get<uint64_t>() > std::numeric_limits<int32_t>::max()
                               : e.get<int64_t>() < 0 || e.get<int64_t>() > INT32_MAX)
      return Invalid(absl::StrCat("'", field, "' token ids must be in [0, 2^31)"));
    out->add_ids(static_cast<int32_t>(e.get<int64_t>()));
  }
  return absl::OkStatus();
}

// The prompt forms OpenAI accepts: a string, an array of strings, an array of token ids, or an

absl::StatusOr<json> ParseBody(const std::string& text, const std::set<std::string>& known) {
  json body = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (body.is_discarded()) return Invalid("the request body is not valid JSON");
  if (!body.is_object()) return Invalid("the request body must be a JSON object");
  for (const auto& [k, v] : body.items())
    if (!known.count(k))
      return Invalid(absl::StrCat("Unrecognized request argument supplied: ", k));
  return body;
}

absl::Status RequireNeutral(const json& body, const char* field, NeutralTest is_neutral) {
  auto it = body.find(field);
  if (it == body.end() || it->is_null() || is_neutral(*it)) return absl::OkStatus();
  return Invalid(absl::StrCat("'", field, "' is not supported by this server"));
}

bool IsEmpty(const json& v) {
  return (v.is_object() || v.is_string() || v.is_array()) && v.empty();
}

namespace {

absl::Status Stops(const json& body, v1::StoppingCriteria* out) {
  auto it = body.find("stop");
  if (it != body.end() && !it->is_null()) {
    if (it->is_string()) {
      out->add_stop(it->get<std::string>());
    } else if (it->is_array()) {
      for (const json& s : *it) {
        if (!s.is_string()) return NotA("stop", "a string or an array of strings");
        out->add_stop(s.get<std::string>());
      }
    } else {
      return NotA("stop", "a string or an array of strings");
    }
  }
  it = body.find("stop_token_ids");
  if (it != body.end() && !it->is_null()) {
    if (!it->is_array() || (!it->empty() && !IsTokenArray(*it)))
      return NotA("stop_token_ids", "an array of token ids");
    v1::TokenIds ids;
    if (absl::Status s = TokenIds(*it, &ids, "stop_token_ids"); !s.ok()) return s;
    out->mutable_stop_token_ids()->Add(ids.ids().begin(), ids.ids().end());
  }
  return absl::OkStatus();
}

// {"token id": bias, ...}, as OpenAI's logit_bias is written.
absl::Status LogitBias(const json& body, v1::SamplingParams* s) {
  auto it = body.find("logit_bias");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!it->is_object()) return NotA("logit_bias", "an object of token id -> bias");
  for (const auto& [key, bias] : it->items()) {
    int64_t id = -1;
    const bool digits = !key.empty() && key.size() <= 10 &&
                        key.find_first_not_of("0123456789") == std::string::npos;
    if (digits) id = std::stoll(key);
    if (!digits || id > INT32_MAX)
      return Invalid(
          absl::StrCat("'logit_bias' keys must be token ids, got '", key.substr(0, 32), "'"));
    if (!bias.is_number()) return Invalid("'logit_bias' values must be numbers");
    (*s->mutable_logit_bias())[static_cast<int32_t>(id)] = bias.get<float>();
  }
  return absl::OkStatus();
}

absl::Status Sampling(const json& body, v1::SamplingParams* s) {
  std::optional<double> temperature, top_p, repetition, presence, frequency, min_p;
  std::optional<int64_t> top_k;
  std::optional<uint64_t> seed;
  for (absl::Status st :
       {GetNumber(body, "temperature", &temperature), GetNumber(body, "top_p", &top_p),
        GetNumber(body, "repetition_penalty", &repetition),
        GetNumber(body, "presence_penalty", &presence),
        GetNumber(body, "frequency_penalty", &frequency), GetNumber(body, "min_p", &min_p),
        GetInt(body, "top_k", -1, INT32_MAX, &top_k), GetUint64(body, "seed", &seed),
        LogitBias(body, s)})
    if (!st.ok()) return st;
  if (presence) s->set_presence_penalty(static_cast<float>(*presence));
  if (frequency) s->set_frequency_penalty(static_cast<float>(*frequency));
  if (min_p) s->set_min_p(static_cast<float>(*min_p));
  if (temperature) s->set_temperature(static_cast<float>(*temperature));
  if (top_p) s->set_top_p(static_cast<float>(*top_p));
  if (repetition) s->set_repetition_penalty(static_cast<float>(*repetition));
  if (top_k) s->set_top_k(*top_k < 0 ? 0 : static_cast<int32_t>(*top_k));  // -1: no top-k
  if (seed) s->set_seed(*seed);
  return absl::OkStatus();
}

// Beam search: "beam_width" (this server's), or vLLM's "use_beam_search" (its width from best_of
// or n); "length_penalty"; "early_stopping" (true, false, or "never").
absl::Status Beam(const json& body, v1::GenerateRequest* r) {
  bool use = false;
  std::optional<int64_t> width;
  std::optional<double> length_penalty;
  for (absl::Status s :
       {GetBool(body, "use_beam_search", &use), GetInt(body, "beam_width", 1, 16, &width),
        GetNumber(body, "length_penalty", &length_penalty)})
    if (!s.ok()) return s;
  auto es = body.find("early_stopping");
  const bool has_es = es != body.end() && !es->is_null();
  if (!use && !width) {
    if (length_penalty || has_es)
      return Invalid("'length_penalty' and 'early_stopping' need beam search ('beam_width')");
    return absl::OkStatus();
  }
  v1::BeamSearch* b = r->mutable_beam();
  if (width) b->set_beam_width(static_cast<int32_t>(*width));
  if (length_penalty) b->set_length_penalty(static_cast<float>(*length_penalty));
  if (has_es) {
    if (es->is_boolean()) {
      b->set_early_stopping(es->get<bool>() ? "true" : "heuristic");
    } else if (*es == "never") {
      b->set_early_stopping("never");
    } else {
      return NotA("early_stopping", "true, false or \"never\"");
    }
  }
  return absl::OkStatus();
}

absl::Status Streaming(const json& body, CommonOptions* out) {
  if (absl::Status s = GetBool(body, "stream", &out->stream); !s.ok()) return s;
  auto it = body.find("stream_options");
  if (it == body.end() || it->is_null()) return absl::OkStatus();
  if (!out->stream) return Invalid("'stream_options' is only allowed when 'stream' is true");
  if (!it->is_object()) return NotA("stream_options", "an object");
  for (const auto& [k, v] : it->items())
    if (k != "include_usage")
      return Invalid(absl::StrCat("'stream_options.", k, "' is not supported"));
  return GetBool(*it, "include_usage", &out->include_usage);
}

}  // namespace

absl::Status ParseCommonOptions(const json& body, const std::vector<std::string>& base_names,
                                const char* max_tokens_alias, CommonOptions* out,
                                v1::GenerateRequest* common) {
  auto model = body.find("model");
  if (model == body.end() || !model->is_string() || model->get<std::string>().empty())
    return Invalid("'model' is required: the base model's name or one of your adapters' names");
  out->model = model->get<std::string>();
  if (std::find(base_names.begin(), base_names.end(), out->model) == base_names.end())
    common->set_adapter(out->model);
  if (auto u = body.find("user"); u != body.end() && !u->is_null() && !u->is_string())
    return NotA("user", "a string");
  std::optional<int64_t> max_tokens, priority, min_tokens, prompt_logprobs, n;
  bool ignore_eos = false, include_stop = false, skip_special = true;
  for (absl::Status s :
       {GetInt(body, "max_tokens", 1, INT32_MAX, &max_tokens),
        max_tokens_alias ? GetInt(body, max_tokens_alias, 1, INT32_MAX, &max_tokens)
                         : absl::OkStatus(),
        GetInt(body, "priority", INT32_MIN, INT32_MAX, &priority),
        GetInt(body, "min_tokens", 0, INT32_MAX, &min_tokens),
        GetInt(body, "prompt_logprobs", 0, 20, &prompt_logprobs), GetInt(body, "n", 1, 16, &n),
        Beam(body, common), GetBool(body, "include_stop_str_in_output", &include_stop),
        GetBool(body, "skip_special_tokens", &skip_special),
        GetBool(body, "ignore_eos", &ignore_eos), Streaming(body, out),
        Sampling(body, common->mutable_sampling()), Stops(body, common->mutable_stopping())})
    if (!s.ok()) return s;
  if (max_tokens) common->mutable_stopping()->set_max_tokens(static_cast<int32_t>(*max_tokens));
  common->mutable_stopping()->set_ignore_eos(ignore_eos);
  if (min_tokens) common->mutable_stopping()->set_min_tokens(static_cast<int32_t>(*min_tokens));
  common->mutable_stopping()->set_include_stop_str_in_output(include_stop);
  if (!skip_special) common->mutable_stopping()->set_skip_special_tokens(false);
  if (priority) common->set_priority(static_cast<int32_t>(*priority));
  if (n) {
    out->n = static_cast<int32_t>(*n);
    common->set_n(out->n);
  }
  if (common->has_beam() && common->beam().beam_width() == 0)  // use_beam_search: width n
    common->mutable_beam()->set_beam_width(out->n);
  if (prompt_logprobs) {
    out->prompt_logprobs = static_cast<int32_t>(*prompt_logprobs);
    common->mutable_logprobs()->set_prompt_top_n(*out->prompt_logprobs);
  }
  return absl::OkStatus();
}

}  // namespace para::server::openai
